"""``ktup evaluate RUN_DIR``: re-evaluate a trained run under a named protocol."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ktup.errors import KtupError
from ktup.registry import PROTOCOLS

#: KG triples evaluated by default (a seeded sample; the full test split takes ~5x longer).
DEFAULT_KG_SAMPLE = 1000


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained run (full ranking; KG link prediction for KG models)",
        description="Full-ranking evaluation of a run's checkpoint on its exact split. KG models also get "
                    "filtered link prediction (realistic ranks) on the KG split of the same name.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by `ktup train`")
    p.add_argument("--split", choices=("valid", "test"), default="test", help="split to evaluate (default: test)")
    p.add_argument("--k", default=None, help="cut-offs, comma separated (default: the run's eval.ks)")
    p.add_argument("--protocol", default=None, help=f"{PROTOCOLS.help()} (default: the run's eval.protocol)")
    p.add_argument("--checkpoint", default="best", help="best | last | a .pt file (default: best)")
    p.add_argument("--no-kg", action="store_true", help="skip KG link prediction")
    kg = p.add_mutually_exclusive_group()
    kg.add_argument("--kg-max-triples", type=int, default=None, metavar="N",
                    help=f"KG link prediction on a seeded sample of N triples (default: the run's "
                         f"eval.kg_eval_max_triples, or {DEFAULT_KG_SAMPLE} when that is 0; 0 = all)")
    kg.add_argument("--kg-all", action="store_true", help="KG link prediction on every triple of the split (slow)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=run)


def parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise KtupError(f"--k {text!r}: expected comma-separated positive integers, e.g. 10,20,50") from None
    if not ks or any(k <= 0 for k in ks):
        raise KtupError(f"--k {text!r}: expected comma-separated positive integers, e.g. 10,20,50")
    return ks


def _finite(x):
    """JSON has no NaN/Infinity: an undefined figure is null (``note`` says why)."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def run(args: argparse.Namespace) -> int:
    from ktup.evaluation import evaluate_link_prediction, evaluate_recommendation, get_protocol
    from ktup.runs import load_run

    ks_arg = parse_ks(args.k) if args.k is not None else None
    protocol_name = args.protocol
    if protocol_name is not None:
        get_protocol(protocol_name)          # fail before the (slow) load on a typo
    folder = Path(args.run_dir)
    if folder.is_dir() and not (folder / "run.json").exists():
        from ktup.cli.runs import format_runs, list_runs

        rows = list_runs(folder)
        if rows:  # a folder of runs: say which ones it holds
            print(f"ktup: error: {folder} is a folder of {len(rows)} runs, not a run; evaluate one of them:\n"
                  + format_runs(rows), file=sys.stderr)
            return 2
    loaded = load_run(args.run_dir, checkpoint=args.checkpoint, device=args.device)
    cfg, model, dataset = loaded.config, loaded.model, loaded.dataset
    from ktup.training.threads import apply_threads

    apply_threads(cfg.train, cfg.model)   # one thread for small models / busy machines, as training does
    protocol = get_protocol(protocol_name or cfg.eval.protocol)
    ks = ks_arg or tuple(int(k) for k in cfg.eval.ks)

    out: dict = {}
    rec = None
    if getattr(model, "uses_rec", True) and hasattr(model, "score_all_items"):
        rec = evaluate_recommendation(model, dataset, split=args.split, ks=ks, protocol=protocol,
                                      user_batch_size=cfg.eval.user_batch_size,
                                      memory_budget_mb=cfg.eval.memory_budget_mb)
        rec.warnings += [f"the run's data settings differ from protocol {protocol.name}: {m}"
                         for m in protocol.mismatches(cfg.data)]
        out = rec.to_dict()
    else:
        out = {"protocol": protocol.parameters(), "split": args.split, "users": 0, "metrics": {}}
    kg = None
    if getattr(model, "uses_kg", False) and not args.no_kg:
        if args.kg_all:
            max_triples = 0
        elif args.kg_max_triples is not None:
            max_triples = args.kg_max_triples
        else:
            max_triples = cfg.eval.kg_eval_max_triples or DEFAULT_KG_SAMPLE
        n_all = len(getattr(dataset, f"kg_{args.split}"))
        if n_all > 0:
            if not args.json:
                which = (f"a seeded sample of {max_triples} of {n_all} {args.split} triples (--kg-all for all)"
                         if 0 < max_triples < n_all else f"all {n_all} {args.split} triples")
                print(f"KG link prediction on {which} ...", file=sys.stderr, flush=True)
            kg = evaluate_link_prediction(model, dataset, split=args.split, filtered=True, max_triples=max_triples,
                                          memory_budget_mb=cfg.eval.memory_budget_mb, progress=not args.json)
            d = kg.to_dict()
            out["kg"] = {k: d[k] for k in ("mr", "mrr", "hits@1", "hits@3", "hits@10")}
            out["kg"].update({"setting": "filtered", "ranks": "realistic", "triples": kg.n_triples,
                              "triples_available": kg.n_available, "sample_seed": kg.sample_seed,
                              "head": d["head"], "tail": d["tail"]})

    if args.json:
        out["run"] = str(loaded.path)
        out["checkpoint"] = args.checkpoint
        print(json.dumps(_finite(out), indent=2, allow_nan=False))
        return 0
    model_name = loaded.info.get("model", getattr(model, "name", "model"))
    print(f"run: {loaded.path}   model: {model_name}   checkpoint: {args.checkpoint}")
    if rec is not None:
        print(rec.format_table())
    if kg is not None:
        print()
        print(kg.format_table())
    return 0
