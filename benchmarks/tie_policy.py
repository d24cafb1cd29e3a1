"""Does the top-K tie policy reward a scorer that knows nothing? Constant vs random scorers.

    python benchmarks/tie_policy.py [--seeds 3] [--split test]

A constant scorer ties every item. If ties went to the lower item id (ids follow first
appearance, which tracks popularity), it would recommend the most popular items and score far
above chance; under a fair policy it scores what a random scorer scores in expectation. Full
ranking on ml-100k (RecBole's split, or ``--data default``: ktup's default config), K = 10; the random scorer is
averaged over ``--seeds`` draws, and the constant scorer is evaluated under as many tie seeds
(when the evaluator takes one).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def shared_datasets() -> Path:
    env = os.environ.get("KTUP_SHARED_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def main(argv=None) -> int:
    from ktup.config import DataConfig
    from ktup.data import load_dataset
    from ktup.evaluation import evaluate_recommendation

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--split", default="test")
    ap.add_argument("--data", choices=("recbole-split", "default"), default="recbole-split",
                    help="RecBole's given split of ml-100k, or ktup's default ml-100k config (random 8:1:1, seed 2020)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.data == "default":
        ds = load_dataset(DataConfig())
    else:
        path = shared_datasets() / "ml-100k-recbole-split"
        if not path.exists():
            sys.exit(f"tie_policy: {path} not found (set KTUP_SHARED_DATASETS)")
        ds = load_dataset(DataConfig(dataset=str(path), split="given"))
    takes_seed = "tie_seed" in inspect.signature(evaluate_recommendation).parameters
    names = ("ndcg@10", "recall@10", "hit@10", "mrr@10")

    def constant(users, items=None):
        n = ds.n_items if items is None else len(items)
        return torch.zeros(len(users), n)

    def random_scorer(seed):
        table = torch.rand(ds.n_users, ds.n_items, generator=torch.Generator().manual_seed(1000 + seed))
        return lambda users, items=None: table[users] if items is None else table[users][:, items]

    rows = {"constant": [], "random": []}
    t0 = time.perf_counter()
    for s in range(a.seeds):
        kw = {"tie_seed": s} if takes_seed else {}
        rows["constant"].append(evaluate_recommendation(constant, ds, a.split, ks=(10,), **kw).summary)
        rows["random"].append(evaluate_recommendation(random_scorer(s), ds, a.split, ks=(10,)).summary)
    print(f"ml-100k ({'RecBole split' if a.data == 'recbole-split' else 'default config'}), {a.split}, protocol recbole, full ranking, {ds.n_items} items; "
          f"tie policy: {'seeded random (tie_seed 0..' + str(a.seeds - 1) + ')' if takes_seed else 'lower item id'}")
    print(f"{'scorer':10}" + "".join(f"{n:>20}" for n in names))
    for k, rs in rows.items():
        cells = []
        for n in names:
            v = np.array([r[n] for r in rs])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}".rjust(20))
        print(f"{k:10}" + "".join(cells))
    c = np.mean([r["ndcg@10"] for r in rows["constant"]])
    r = np.mean([r["ndcg@10"] for r in rows["random"]])
    print(f"constant / random ndcg@10: {c / r:.2f}x   ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
