"""Training step time with one thread against more, for small and larger steps (the basis of
``train.threads=0``, see src/ktup/training/threads.py).

    python benchmarks/threads.py [--steps 60] [--threads 1,2] [--out benchmarks/results/threads-DATE.json]

For each configuration (ml-100k; the shipped ktup defaults, then wider/bigger batches) it times
``--steps`` training steps at each thread count, alternating the counts three times so that a
change of load hits both, and prints the median seconds per step with the load average seen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = [
    ("ktup defaults (batch 512, dim 64)", {}),
    ("batch 2048, dim 128", {"train": {"batch_size": 2048, "kg_batch_size": 2048}, "model": {"embedding_size": 128}}),
    ("batch 4096, dim 256", {"train": {"batch_size": 4096, "kg_batch_size": 4096}, "model": {"embedding_size": 256}}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    import torch

    from ktup.config import Config
    from ktup.data import load_dataset
    from ktup.training.threads import step_work
    from ktup.training.trainer import Trainer

    counts = [int(x) for x in args.threads.split(",")]
    ds = load_dataset(Config().data)
    rows = []
    for label, over in CONFIGS:
        cfg = Config.from_dict(over)
        cfg.train.threads = 1
        with tempfile.TemporaryDirectory() as tmp:
            tr = Trainer.for_new_run(cfg, ds, tmp + "/run", "quiet")
            tr.model.train()
            tr._run_epoch(max_steps=3)  # warm-up
            per = {n: [] for n in counts}
            loads = []
            for _ in range(args.rounds):
                for n in counts:
                    torch.set_num_threads(n)
                    loads.append(os.getloadavg()[0])
                    t0 = time.perf_counter()
                    tr._run_epoch(max_steps=args.steps)
                    per[n].append((time.perf_counter() - t0) / args.steps)
        row = {"config": label, "step_work": step_work(cfg.train, cfg.model),
               "load_avg_1min": [round(x, 2) for x in loads],
               **{f"s_per_step_{n}_threads": round(statistics.median(v), 5) for n, v in per.items()}}
        rows.append(row)
        print(f"{label:<36} work {row['step_work']:>11,}  load {min(loads):.1f}-{max(loads):.1f}  "
              + "  ".join(f"{n} thread(s) {statistics.median(v) * 1e3:7.2f} ms/step" for n, v in per.items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"cores": os.cpu_count(), "steps": args.steps, "rows": rows,
                                              "command": " ".join(sys.argv)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
