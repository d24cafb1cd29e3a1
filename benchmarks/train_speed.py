"""Per-epoch training time of KTUP on RecBole's ml-100k split (vs RecBole's 1.6–1.9 s / epoch).

    python benchmarks/train_speed.py [--epochs 3] [--threads N] [--device cpu|cuda] [--schedule step|epoch|sum]

The figure is the time of the training steps of one epoch (78,836 interactions in batches of
2,048 plus KG batches interleaved by λ = 0.7, embedding 64), without validation. RecBole's
1.6–1.9 s (docs/PROTOCOLS.md) is its rec epoch on the same data; its KG epochs are extra.
Also prints the time of one full validation pass for reference (RecBole: 1.25–1.30 s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch


def shared_split() -> Path:
    root = Path(os.environ.get("KTUP_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
    return root / "ml-100k-recbole-split"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--schedule", default="step")
    ap.add_argument("--model", default="ktup")
    ap.add_argument("--dataset", default=str(shared_split()))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from ktup.config import Config
    from ktup.data import load_dataset
    from ktup.training.trainer import Trainer

    cfg = Config.from_dict({"data": {"dataset": args.dataset, "split": "given"},
                            "model": {"model": args.model, "embedding_size": 64},
                            "train": {"epochs": args.epochs, "batch_size": 2048, "kg_batch_size": 2048,
                                      "schedule": args.schedule, "device": args.device}})
    t0 = time.perf_counter()
    ds = load_dataset(cfg.data)
    print(f"data: {len(ds.train)} train interactions, {len(ds.kg_train)} train triples "
          f"(load {time.perf_counter() - t0:.2f} s)")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer.for_new_run(cfg, ds, tmp + "/run", "quiet")
        tr.model.train()
        times, cpu = [], []
        for _ in range(args.epochs):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            rec = tr._run_epoch()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            tr.epoch += 1
            times.append(rec["train_seconds"])
            cpu.append(rec["train_cpu_seconds"])
            losses = ", ".join(f"{k} {rec[k]:.4f}" for k in ("rec_loss", "kg_loss") if rec[k] is not None)
            print(f"epoch {tr.epoch}: {rec['train_seconds']:.3f} s wall, {rec['train_cpu_seconds']:.3f} s CPU  "
                  f"({rec['rec_steps']} rec + {rec['kg_steps']} KG steps; {losses})")
        t, c = time.perf_counter(), time.process_time()
        res = tr._evaluate("valid", "rec") if tr.uses_rec else None
        t_eval, c_eval = time.perf_counter() - t, time.process_time() - c
    med, med_cpu = statistics.median(times), statistics.median(cpu)
    print(f"{args.model} ({args.schedule}) on {args.device}, {torch.get_num_threads()} threads: "
          f"median {med:.3f} s wall / {med_cpu:.3f} s CPU per epoch (RecBole KTUP: 1.6–1.9 s) "
          f"-> {1.75 / med:.1f}x by wall time")
    if res is not None:
        print(f"one full validation pass: {t_eval:.3f} s wall, {c_eval:.3f} s CPU (RecBole: 1.25–1.30 s); valid ndcg@10 {res.summary['ndcg@10']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
