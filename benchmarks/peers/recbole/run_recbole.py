"""Run RecBole 1.2.1's own models (KTUP, BPR, ...) on RecBole's exact ml-100k split and record
test metrics and timings as JSON (benchmarks/results/recbole-<date>.json).

Runs INSIDE benchmarks/peers/recbole/.venv (see setup.sh / run.sh):

    benchmarks/peers/recbole/.venv/bin/python benchmarks/peers/recbole/run_recbole.py --epochs 20

Protocol (docs/PROTOCOLS.md reference table): the pre-split files (benchmark_filename
train/valid/test), embedding 64, Adam lr 1e-3, train batch 2048, 1 uniform negative, full
ranking, early stopping on valid MRR@10 with patience 10, test on the best-valid checkpoint,
seed 2020.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["KTUP", "BPR"], help="RecBole model names")
    ap.add_argument("--epochs", type=int, default=300, help="max epochs (early stopping may end sooner)")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default benchmarks/results/recbole-<date>[-<tag>].json)")
    ap.add_argument("--tag", default="", help="suffix for the default output name")
    args = ap.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    work = common.WORK
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)   # RecBole writes log/ and log_tensorboard/ into the working directory
    data_path = common.prepare_data(work)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or common.REPO / "benchmarks" / "results" / f"recbole-{date}{'-' + args.tag if args.tag else ''}.json"
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    runs = []
    for name in args.models:
        cfg = common.protocol_config(data_path, args.epochs, args.seed, work)
        runs.append(common.train_and_test(name, cfg))
        report = {
            "benchmark": "recbole-peer",
            "command": common.command_line(),
            "started_utc": started,
            "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "complete": len(runs) == len(args.models),
            "versions": common.versions(),
            "protocol": {"name": "recbole", "split": "ml-100k-recbole-split (RecBole's exact 8:1:1 split, seed 2020)",
                         "max_epochs": args.epochs, "early_stopping": "valid MRR@10, patience 10",
                         "embedding_size": 64, "optimizer": "adam", "lr": 1e-3, "train_batch_size": 2048,
                         "negatives": "1 uniform", "ranking": "full", "seed": args.seed,
                         "test_checkpoint": "best valid"},
            "runs": runs,
        }
        common.write_json(report, out)   # after each model, so a long run leaves partial results
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
