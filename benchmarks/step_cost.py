"""CPU time per training step of one model, and a fingerprint of the weights it ends with.

    python benchmarks/step_cost.py ktup 200 [KEY=VALUE ...]      # e.g. joint_lambda=1.0 (rec steps only)

Runs the first N steps of epoch 1 (the trainer's own ``_run_epoch``, one thread) on
``dataset`` (default ml1m-dbpedia) and prints ms of CPU per step (wall time on a shared machine
mostly measures the neighbours) and the sha256 of the final weights: two code versions that
print the same fingerprint computed the same numbers, bit for bit.
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time

import torch


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    from ktup.config import Config
    from ktup.data import load_dataset
    from ktup.training.trainer import Trainer

    model, steps = argv[0], int(argv[1])
    cfg = Config().apply_overrides(["dataset=ml1m-dbpedia", "threads=1", f"model={model}"] + argv[2:])
    ds = load_dataset(cfg.data)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer.for_new_run(cfg, ds, tmp + "/run", "quiet")
        tr.model.train()
        t, c = time.perf_counter(), time.process_time()
        rec = tr._run_epoch(max_steps=steps)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        h = hashlib.sha256()
        for _, v in sorted(tr.model.state_dict().items()):
            h.update(v.detach().cpu().numpy().tobytes())
    n = rec["rec_steps"] + rec["kg_steps"]
    print(f"{model} {' '.join(argv[2:])}: {n} steps ({rec['rec_steps']} rec + {rec['kg_steps']} KG), "
          f"{1000 * cpu / n:.2f} ms CPU/step ({1000 * wall / n:.2f} ms wall), weights sha256 {h.hexdigest()[:16]}, "
          f"rec_loss {rec['rec_loss']!r}, kg_loss {rec['kg_loss']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
