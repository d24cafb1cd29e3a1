"""One table of our figures next to the peers' (RecBole, PyKEEN), read from the result JSONs.

    python benchmarks/peers/table.py                          # newest result files
    python benchmarks/peers/table.py --ktup-run runs/ktup-…   # add runs of our own trainer (final.json)

Sources: ``benchmarks/results/recbole-*.json`` (run_recbole.py: RecBole's KTUP, BPR),
``recbole-compare-*.json`` (compare_in_recbole.py: RecBole's KTUP and ours inside one RecBole
pipeline), ``pykeen-*.json`` (run_pykeen.py), the reference figures of docs/PROTOCOLS.md, and
optionally ktup run directories. Plain Python: runs in any environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"   # benchmarks/results
KEYS = ["recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10"]

# docs/PROTOCOLS.md, "Reference figures", ml-100k: RecBole 1.2.1 measured here on the same split.
REFERENCE = [
    ("BPR", "RecBole (PROTOCOLS.md)", [0.2287, 0.2668, 0.4344, 0.7338, 0.1844], 0.20, 0.12, None),
    ("KTUP", "RecBole (PROTOCOLS.md)", [0.2070, 0.2386, 0.4030, 0.7169, 0.1660], 1.75, 1.28, None),
    ("KTUP, 300 ep.", "RecBole (PROTOCOLS.md)", [0.2250, 0.2544, 0.4274, 0.7444, 0.1738], 1.75, 1.28, 300),
]


def newest(pattern: str, exclude: tuple[str, ...] = ()) -> Optional[Path]:
    files = [p for p in RESULTS.glob(pattern) if not any(x in p.name for x in exclude)]
    return max(files, key=lambda p: (p.stat().st_mtime, p.name)) if files else None


def load(path: Optional[Path]) -> Optional[dict[str, Any]]:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"table: skipping {path}: {e}", file=sys.stderr)
        return None


def rec_rows(recbole: Optional[dict], compares: list[dict], ktup_runs: list[Path]) -> list[tuple]:
    rows: list[tuple] = [(m, src, vals, spe, spv, ep) for m, src, vals, spe, spv, ep in REFERENCE]
    sources = [(recbole, "RecBole (measured)")] + [(c, f"in RecBole, max {c.get('max_epochs', '?')} ep.") for c in compares]
    for rep, label in sources:
        for r in (rep or {}).get("runs", []):
            t = r["timing"]
            rows.append((r["model"], label, [r["test"].get(k) for k in KEYS], t.get("s_per_train_epoch"),
                         t.get("s_per_full_eval"), t.get("epochs_run")))
    for run in ktup_runs:
        final = load(run / "final.json")
        if not final or "test" not in final:
            continue
        rows.append((f"{final.get('model', '?')} ({run.name})", "ktup trainer", [final["test"].get(k) for k in KEYS],
                     None, None, final.get("epochs")))
    return rows


def fmt(x, spec: str) -> str:
    return format(x, spec) if isinstance(x, (int, float)) else "—"


def print_rec(rows: list[tuple]) -> None:
    print("Recommendation, ml-100k (RecBole's exact split), full ranking, test @10")
    head = f"{'model':<22}{'source':<26}" + "".join(f"{k.split('@')[0]:>10}" for k in KEYS) + f"{'s/epoch':>9}{'s/eval':>8}{'epochs':>8}"
    print(head)
    print("-" * len(head))
    for model, src, vals, spe, spv, ep in rows:
        print(f"{model:<22}{src:<26}" + "".join(f"{fmt(v, '.4f'):>10}" for v in vals)
              + f"{fmt(spe, '.3f'):>9}{fmt(spv, '.3f'):>8}{fmt(ep, 'd'):>8}")


def print_speed(speed: Optional[dict]) -> None:
    if not speed:
        return
    print(f"\nSpeed inside one RecBole pipeline, interleaved in one process, min of {speed['rounds']} rounds "
          f"(eval_batch_size {speed['eval_batch_size']}, {speed.get('threads') or 'default'} torch threads)")
    head = f"{'model':<22}{'rec epoch s':>13}{'KG epoch s':>12}{'full eval s':>13}{'score all s':>13}"
    print(head)
    print("-" * len(head))
    for name, t in speed["min_seconds"].items():
        print(f"{name:<22}{fmt(t.get('rec_epoch_s'), '.3f'):>13}{fmt(t.get('kg_epoch_s'), '.3f'):>12}"
              f"{fmt(t.get('full_eval_s'), '.3f'):>13}{fmt(t.get('score_all_s'), '.3f'):>13}")


def print_kg(pykeen: Optional[dict]) -> None:
    if not pykeen:
        return
    r, d = pykeen["results"], pykeen["dataset"]
    print(f"\nKG completion, {d['name']} (PyKEEN's bundled split), TransH, test, filtered, realistic ranks")
    head = f"{'model':<16}{'evaluated by':<20}{'MRR':>8}{'Hits@10':>9}{'Hits@1':>8}{'MR':>8}{'train s':>9}"
    print(head)
    print("-" * len(head))
    for model, ev, s, ts in (("PyKEEN TransH", "PyKEEN", r["pykeen_transh"]["by_pykeen"], r["pykeen_transh"]["train_s"]),
                             ("PyKEEN TransH", "ktup", r["pykeen_transh"]["by_ours_pykeen_scores"], None),
                             ("ktup TransH", "ktup", r["ktup_transh"]["by_ours"], r["ktup_transh"]["train_s"]),
                             ("ktup TransH", "PyKEEN", r["ktup_transh"]["by_pykeen"], None)):
        print(f"{model:<16}{ev:<20}{s['mrr']:>8.4f}{s['hits@10']:>9.4f}{s['hits@1']:>8.4f}{s['mr']:>8.2f}{fmt(ts, '.1f'):>9}")
    c = pykeen["rank_check"]["evaluator_same_scores"]
    print(f"per-triple filtered ranks, PyKEEN vs ktup evaluator: all equal = {c['all_equal']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recbole", type=Path, default=None, help="run_recbole.py JSON (default: newest)")
    ap.add_argument("--compare", type=Path, action="append", default=[],
                    help="compare_in_recbole.py JSON, repeatable (default: every recbole-compare-*.json but smoke runs)")
    ap.add_argument("--pykeen", type=Path, default=None, help="run_pykeen.py JSON (default: newest)")
    ap.add_argument("--ktup-run", type=Path, action="append", default=[], help="a ktup run directory (repeatable)")
    args = ap.parse_args(argv)
    recbole = load(args.recbole or newest("recbole-20*.json", exclude=("smoke",)))
    compare_files = args.compare or sorted(p for p in RESULTS.glob("recbole-compare-*.json") if "smoke" not in p.name)
    loaded = [c for c in map(load, compare_files) if c]
    compares = [c for c in loaded if "runs" in c]
    speeds = [c for c in loaded if "min_seconds" in c]
    pykeen = load(args.pykeen or newest("pykeen-*.json"))
    print_rec(rec_rows(recbole, compares, args.ktup_run))
    print("Timings across rows were taken under different loads of a shared machine; the speed table below "
          "is the like-for-like one.")
    for c in compares:
        if c.get("eval_batch_size", 4096) != 4096:
            print(f"  'max {c.get('max_epochs')} ep.' runs of {', '.join(r['model'] for r in c['runs'])}: "
                  f"eval_batch_size {c['eval_batch_size']} (same metrics, faster evaluation than RecBole's 4096)")
    print_speed(speeds[-1] if speeds else None)
    print_kg(pykeen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
