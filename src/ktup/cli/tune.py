"""``ktup tune``: hyperparameter search on Optuna (see :mod:`ktup.tuning`)."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser(
        "tune", help="search hyperparameters (Optuna), resumable and parallel",
        description="Search a model's hyperparameters on the validation split (train.valid_metric; the test split "
                    "is never evaluated during the search). Every trial is a normal run directory under "
                    "<study folder>/trials; the study lives in an SQLite file in the study folder (or any "
                    "SQLAlchemy URL shared by several processes). Run the same command again to resume a killed "
                    "study. Writes best.yaml (for ktup train --config), trials.csv, plots/*.png, summary.json.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ktup tune --model bpr --dataset ml-100k --trials 20 --set epochs=50 --set threads=1\n"
               "  ktup tune --model ktup --trials 30 --jobs 2 --pruner halving --seeds 3\n"
               "  ktup tune --model ktup --space my-space.yaml --storage postgresql://host/db --study shared\n"
               "space file (overrides the model's default space key by key):\n"
               "  train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}\n"
               "  model.norm: {choices: [l1, l2]}\n"
               "  train.weight_decay: null     # drop it from the search\n")
    p.add_argument("--model", default="ktup", help="ktup | tup | transh | transe | bpr (default: ktup)")
    p.add_argument("--dataset", help="dataset name or path (default: the config's, ml-100k)")
    p.add_argument("--data-dir", help="directory holding the dataset files instead of the cache")
    p.add_argument("--config", metavar="FILE", help="base YAML config (the search varies it)")
    p.add_argument("--trials", type=int, required=True, metavar="N",
                   help="budget: finished trials in the study (complete, pruned or failed), all processes together")
    p.add_argument("--timeout", type=float, metavar="S", help="start no new trial after S seconds")
    p.add_argument("--jobs", type=int, default=1, metavar="J", help="worker processes on this machine (default 1)")
    p.add_argument("--storage", metavar="URL",
                   help="SQLAlchemy URL of the study database (default: sqlite:///<study folder>/study.db)")
    p.add_argument("--study", metavar="NAME", help="study name (default: <model>-<dataset>)")
    p.add_argument("--dir", metavar="FOLDER", help="study folder (default: tuning/<study>)")
    p.add_argument("--space", metavar="FILE", help="YAML search space overriding the model's default")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="fixed setting for every trial (removed from the space), e.g. --set epochs=30 (repeatable)")
    p.add_argument("--seeds", type=int, default=0, metavar="K",
                   help="retrain the best configuration with K seeds and report test mean ± std")
    p.add_argument("--keep", choices=("best", "all"), default="all",
                   help="trial run directories kept: all (default) or only the best trial's")
    p.add_argument("--pruner", choices=("median", "halving", "none"), default="median",
                   help="stop unpromising trials at an evaluation epoch (default: median)")
    p.add_argument("--startup-trials", type=int, default=3, metavar="N",
                   help="median pruner: trials finished before any pruning (default 3)")
    p.add_argument("--warmup-epochs", type=int, default=0, metavar="E",
                   help="median pruner: epochs of each trial before it may be pruned (default 0)")
    p.add_argument("--sampler-seed", type=int, default=0, metavar="S",
                   help="seed of the TPE sampler (default 0; give separate processes different seeds)")
    p.add_argument("--heartbeat", type=int, default=30, metavar="S",
                   help="seconds between a worker's heartbeats; a trial silent for 4x this is failed and retried")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=run)


def options(args):
    from ktup.tuning import TuneOptions

    return TuneOptions(model=args.model, dataset=args.dataset, data_dir=args.data_dir, trials=args.trials,
                       timeout=args.timeout, jobs=args.jobs, storage=args.storage, study=args.study,
                       folder=args.dir, space=args.space, config=args.config, overrides=list(args.overrides),
                       seeds=args.seeds, keep=args.keep, pruner=args.pruner, startup_trials=args.startup_trials,
                       warmup_epochs=args.warmup_epochs, sampler_seed=args.sampler_seed, heartbeat=args.heartbeat,
                       quiet=args.quiet)


def run(args) -> int:
    from ktup.tuning import tune

    opts = options(args)
    if opts.base_config().train.threads > 0:
        import torch

        torch.set_num_threads(opts.base_config().train.threads)
    tune(opts)
    return 0
