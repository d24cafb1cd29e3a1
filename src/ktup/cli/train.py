"""``ktup train``: train a model (ktup on ml-100k by default), or resume / extend a run."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ktup.config import Config
from ktup.errors import ConfigError
from ktup.recbole_config import load_config_file
from ktup.registry import MODELS


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model and write a run directory",
        description="Train a model (default: ktup on ml-100k) and write a run directory with checkpoints, "
                    "metrics and the exact split. Resume a killed run with --resume RUN_DIR; extend a finished "
                    "one with --resume RUN_DIR --set epochs=N.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ktup train\n  ktup train --model tup --set epochs=20 --set lr=0.002\n"
               "  ktup train --resume runs/ktup-ml-100k-20250101-120000\n"
               "  ktup train --init-from runs/tup-... runs/transh-...")
    p.add_argument("--dataset", help="dataset name or path (default: ml-100k)")
    p.add_argument("--data-dir", help="directory holding the dataset files instead of the cache")
    p.add_argument("--model", help=f"{MODELS.help()} (default: ktup)")
    p.add_argument("--config", metavar="FILE", help="YAML config file: ktup's keys, or a RecBole config (its shared "
                                                     "settings mapped, the others listed as ignored)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set epochs=20 --set train.lr=0.002 (repeatable); RecBole's names "
                        "for shared settings work too (learning_rate, train_batch_size, stopping_step, topk, ...)")
    p.add_argument("--seed", type=int, help="random seed (train.seed)")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/<model>-<dataset>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--device", help="cpu | cuda")
    p.add_argument("--init-from", nargs="+", metavar="RUN", help="start from trained tup / transh runs")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="data-parallel training in N processes on this machine (runs torchrun; gloo on CPU, "
                        "NCCL on GPUs; train.nproc). On several machines launch torchrun yourself: docs/SCALING.md")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quiet", action="store_true", help="print only the final result")
    mode.add_argument("--jsonl", action="store_true", help="one JSON line per epoch and a final one on stdout")
    p.set_defaults(func=run)


def build_config(args) -> Config:
    """The config the flags describe (file, then named flags, then --set)."""
    if args.resume:
        from pathlib import Path

        from ktup.runs import check_run_dir, read_config

        for flag in ("config", "dataset", "data_dir", "model", "seed", "init_from", "out"):
            if getattr(args, flag):
                raise ConfigError(f"--{flag.replace('_', '-')} cannot be combined with --resume "
                                  "(the run keeps its own; use --set for epochs/patience)")
        cfg = read_config(check_run_dir(Path(args.resume)))
    else:
        cfg = load_config_file(args.config) if args.config else Config()
        if args.dataset:
            cfg.set("data.dataset", args.dataset, source="--dataset")
        if args.data_dir:
            cfg.set("data.data_dir", args.data_dir, source="--data-dir")
        if args.model:
            cfg.set("model.model", args.model, source="--model")
        if args.seed is not None:
            cfg.set("train.seed", args.seed, source="--seed")
        if args.init_from:
            cfg.set("train.init_from", tuple(args.init_from), source="--init-from")
    if args.device:
        cfg.set("train.device", args.device, source="--device")
    if getattr(args, "nproc", None) is not None:
        cfg.set("train.nproc", args.nproc, source="--nproc")
    cfg.apply_overrides(args.overrides)
    cfg.validate()
    return cfg


def format_final(final: dict[str, Any], path) -> str:
    lines = []
    if final.get("stopped_early"):
        stop = " (converged: early stopping on valid)"
    elif "stop_reason" in final:
        stop = " (epoch cap reached before convergence)"
    else:
        stop = ""
    head = f"{final.get('model')} on {final.get('dataset')}: best epoch {final.get('best_epoch')} of {final.get('epochs')}{stop}"
    lines.append(head)
    if "test" in final:
        proto = final.get("protocol") or {}
        name = proto.get("name", "?") if isinstance(proto, dict) else str(proto)
        desc = proto.get("description", "") if isinstance(proto, dict) else ""
        lines.append(f"test metrics, protocol {name}" + (f" ({desc})" if desc else "") + ":")
        lines.append("  " + "  ".join(f"{k} {v:.4f}" for k, v in final["test"].items()))
    if "kg_test" in final:
        kp = final.get("kg_protocol") or {}
        n, avail = kp.get("triples"), kp.get("triples_available")
        which = (f"a seeded sample of {n} of {avail} test triples" if n and avail and n < avail
                 else f"{n} test triples" if n else "test triples")
        lines.append(f"KG link prediction on {which} (filtered, realistic ties):")
        lines.append("  " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                     for k, v in final["kg_test"].items()))
    lines.append(f"run directory: {path}")
    return "\n".join(lines)


def run(args) -> int:
    cfg = build_config(args)  # before torch is imported: a typo fails in well under a second
    from ktup.training import distributed, train

    if cfg.train.nproc > 1 and not distributed.launched_by_torchrun():
        # Re-run this very command in N processes; each one sees RANK/WORLD_SIZE and trains its shard.
        return distributed.launch_torchrun(cfg.train.nproc, _argv(args))
    progress = "quiet" if args.quiet else "jsonl" if args.jsonl else "bar"
    try:
        result = train(cfg, out=args.out, resume=args.resume, progress=progress)
    except KeyboardInterrupt:
        where = args.resume or args.out
        hint = f"; continue with: ktup train --resume {where}" if where else "; continue with ktup train --resume RUN_DIR"
        print(f"ktup: interrupted{hint}", file=sys.stderr)
        return 130
    if progress != "jsonl" and os.environ.get("RANK", "0") == "0":  # one report, from rank 0
        print(format_final(result.final or {}, result.path), file=sys.stdout, flush=True)
    return 0


def _argv(args) -> list[str]:
    """The flags of ``args`` as a ``ktup train`` command line (when called through ``main(argv)``)."""
    out = ["train"]
    for flag in ("dataset", "data_dir", "model", "config", "seed", "out", "resume", "device"):
        v = getattr(args, flag, None)
        if v is not None:
            out += [f"--{flag.replace('_', '-')}", str(v)]
    if args.init_from:
        out += ["--init-from", *args.init_from]
    for o in args.overrides:
        out += ["--set", o]
    # no --nproc: torchrun's own parser would take it for an abbreviation of --nproc-per-node,
    # and the children know they are children (RANK is set)
    out += ["--quiet"] if args.quiet else ["--jsonl"] if args.jsonl else []
    return out
