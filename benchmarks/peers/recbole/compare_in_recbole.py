"""RecBole's built-in KTUP next to ours (ktup.integrations.recbole.KTUP), in one process, inside
the same RecBole pipeline (data loaders, KGTrainer, evaluator) on RecBole's exact ml-100k split.
Prints test metrics, seconds per train epoch and seconds per full evaluation side by side and
writes benchmarks/results/recbole-compare-<date>[-<tag>].json.

Runs INSIDE benchmarks/peers/recbole/.venv (setup.sh installs ktup there, editable):

    benchmarks/peers/recbole/.venv/bin/python benchmarks/peers/recbole/compare_in_recbole.py --epochs 20

Variants: ``recbole`` (RecBole's KTUP), ``ours`` (our KTUP with RecBole's KTUP settings:
hard induction, squared L2 — only the fixes of docs/MODEL.md differ), ``ours-spec`` (our KTUP
with our defaults: soft induction, L1).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

VARIANTS = {
    "recbole": ("KTUP", {}),
    "ours": ("ktup", {}),
    "ours-spec": ("ktup", {"ktup_induction": "soft", "ktup_norm": "l1"}),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", default=["recbole", "ours"], choices=sorted(VARIANTS))
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-batch-size", type=int, default=4096,
                    help="RecBole's eval_batch_size (4096 = 2 users per full-sort call, RecBole's default)")
    ap.add_argument("--speed", type=int, default=0, metavar="ROUNDS",
                    help="instead of training to the end: interleaved timing of one rec epoch, one KG epoch and "
                         "one full evaluation per variant, ROUNDS rounds (min reported)")
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from ktup.integrations.recbole import KTUP as KtupKTUP

    work = common.WORK
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)
    data_path = common.prepare_data(work)
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or common.REPO / "benchmarks" / "results" / f"recbole-compare-{date}{'-' + args.tag if args.tag else ''}.json"
    if args.speed:
        return speed(args, data_path, work, out, KtupKTUP)
    runs = []
    for variant in args.variants:
        which, extra = VARIANTS[variant]
        cfg = {**common.protocol_config(data_path, args.epochs, args.seed, work),
               "eval_batch_size": args.eval_batch_size, **extra}
        model = "KTUP" if which == "KTUP" else KtupKTUP
        run = common.train_and_test(model, cfg, model_name=f"KTUP[{variant}]")
        run["variant"], run["overrides"] = variant, extra
        runs.append(run)
        common.write_json({"benchmark": "recbole-compare", "command": common.command_line(),
                           "versions": common.versions(), "max_epochs": args.epochs,
                           "eval_batch_size": args.eval_batch_size, "runs": runs}, out)
    print_table(runs)
    print(f"wrote {out}")
    return 0


def speed(args, data_path, work, out, ktup_cls) -> int:
    entries = {}
    for variant in args.variants:
        which, extra = VARIANTS[variant]
        cfg = {**common.protocol_config(data_path, args.epochs, args.seed, work),
               "eval_batch_size": args.eval_batch_size, **extra}
        entries[f"KTUP[{variant}]"] = common.build("KTUP" if which == "KTUP" else ktup_cls, cfg)
    res = common.speed_probe(entries, args.speed)
    print(f"{'model':<20}{'rec epoch s':>12}{'KG epoch s':>12}{'full eval s':>12}{'score all s':>12}")
    for name, t in res.items():
        print(f"{name:<20}{t['rec_epoch_s']:>12.3f}{t['kg_epoch_s']:>12.3f}{t['full_eval_s']:>12.3f}{t['score_all_s']:>12.3f}")
    common.write_json({"benchmark": "recbole-compare-speed", "command": common.command_line(),
                       "versions": common.versions(), "rounds": args.speed, "eval_batch_size": args.eval_batch_size,
                       "threads": args.threads, "min_seconds": res}, out)
    print(f"wrote {out}")
    return 0


def print_table(runs) -> None:
    keys = ["recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10"]
    head = f"{'model':<20}" + "".join(f"{k:>13}" for k in keys) + f"{'s/epoch':>10}{'s/eval':>9}{'epochs':>8}{'best':>6}"
    print(head)
    print("-" * len(head))
    for r in runs:
        t = r["timing"]
        print(f"{r['model']:<20}" + "".join(f"{r['test'][k]:>13.4f}" for k in keys)
              + f"{t['s_per_train_epoch']:>10.3f}{t['s_per_full_eval']:>9.3f}{t['epochs_run']:>8}{r['best_epoch']:>6}")


if __name__ == "__main__":
    raise SystemExit(main())
