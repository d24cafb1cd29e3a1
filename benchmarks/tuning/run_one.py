"""Run one tuning trial and append its result to a JSONL log.

Usage: python benchmarks/tuning/run_one.py LOG.jsonl TAG key=value [key=value ...]

Trains on ml-100k-recbole-split (protocol recbole), selects on valid NDCG@10 (the trainer's
early stopping), and records best valid and the test metrics of the best checkpoint. Test
figures are recorded for the report only; choices are made on valid.

Settings are applied on top of the *current* defaults of src/ktup/config.py: to replay a trial
of RESULTS.md made before the defaults changed, pass the old values too (RESULTS.md lists them).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import torch

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

from ktup.config import Config  # noqa: E402
from ktup.training import train  # noqa: E402


def main() -> None:
    log, tag, *sets = sys.argv[1:]
    cfg = Config()
    cfg.apply_overrides(["dataset=ml-100k-recbole-split", "kg_eval=false", *sets])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        run = train(cfg, out=os.path.join(d, "run"), progress="quiet")
        rows = [json.loads(line) for line in open(os.path.join(d, "run", "metrics.jsonl"))]
    epochs = [r for r in rows if not r.get("final")]
    f = run.final
    rec = {"tag": tag, "sets": sets, "best_valid": f.get("best_valid"), "best_epoch": f.get("best_epoch"),
           "epochs": f.get("epochs"), "test": f.get("test"),
           "sec_per_epoch": sum(r.get("train_seconds", 0) for r in epochs) / max(len(epochs), 1),
           "wall": time.perf_counter() - t0,
           "valid_curve": [(r["epoch"], round(r["valid"]["ndcg@10"], 4)) for r in epochs if "valid" in r]}
    with open(log, "a") as fh:
        fh.write(json.dumps(rec) + "\n")
    print(tag, "valid", round(rec["best_valid"] or 0, 4), "test ndcg", round((rec["test"] or {}).get("ndcg@10", 0), 4),
          "best_ep", rec["best_epoch"], "/", rec["epochs"], "s/ep", round(rec["sec_per_epoch"], 2), "wall", round(rec["wall"]))


if __name__ == "__main__":
    main()
