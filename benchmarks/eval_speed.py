"""How fast is evaluation? Full ranking on ml-100k's valid split and KG link prediction.

    python benchmarks/eval_speed.py [--repeats 5] [--device cpu] [--configs soft-l1,hard-l2]

Reference (docs/PROTOCOLS.md): RecBole 1.2.1 needs 1.25–1.30 s for one full evaluation of KTUP
on this split (943 users × 1,599 items, d = 64, K = 24 relations), scoring pairs through
``predict``. Target: ≥ 20× faster. For each model configuration the script reports the time of
``evaluate_recommendation`` split into scoring and the evaluator's own work (masking, top-K,
metrics), the floating-point work counted per pair and the GFLOP/s achieved, next to a plain
``torch.matmul`` of the same (943 × 64) @ (64 × 1,599) size and of a large square size.

Uses the real ``ktup.models.KTUP`` (random weights: speed does not depend on training) and
``ktup.data.load_dataset`` when available, else a small reader of the RecBole split files.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch


def shared_datasets() -> Path:
    env = os.environ.get("KTUP_SHARED_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def load_ml100k():
    """ml-100k with RecBole's exact split; the KG split 90/5/5 (seed 2020) for link prediction."""
    path = shared_datasets() / "ml-100k-recbole-split"
    if not path.exists():
        sys.exit(f"eval_speed: {path} not found (set KTUP_SHARED_DATASETS)")
    try:
        from ktup.config import DataConfig
        from ktup.data import load_dataset

        return load_dataset(DataConfig(dataset=str(path), split="given")), "ktup.data.load_dataset"
    except Exception as e:  # the loader is not there yet, or cannot read it: a faithful stand-in
        print(f"(ktup.data.load_dataset unavailable: {type(e).__name__}: {str(e)[:80]}; using the stand-in reader)")
    import pandas as pd

    from ktup.data.dataset import IdMap, Interactions, KGDataset

    read = lambda name: pd.read_csv(path / name, sep="\t", dtype=str)  # noqa: E731
    splits = {s: read(f"ml-100k.{s}.inter") for s in ("train", "valid", "test")}
    link, kg = read("ml-100k.link"), read("ml-100k.kg")
    allp = pd.concat(splits.values())
    users = IdMap(sorted(allp.iloc[:, 0].unique(), key=int), "user")
    items = IdMap(sorted(allp.iloc[:, 1].unique(), key=int), "item")
    ents = IdMap(pd.unique(pd.concat([link.iloc[:, 1], kg.iloc[:, 0], kg.iloc[:, 2]])), "entity")
    rels = IdMap(pd.unique(kg.iloc[:, 1]), "relation")
    item_entity = np.full(len(items), -1, dtype=np.int64)
    known = link[link.iloc[:, 0].isin(set(items.tokens))]
    item_entity[items.lookup(known.iloc[:, 0].tolist())] = ents.lookup(known.iloc[:, 1].tolist())

    def inter(df):
        return Interactions(users.lookup(df.iloc[:, 0].tolist()), items.lookup(df.iloc[:, 1].tolist()), len(users), len(items))

    triples = np.stack([ents.lookup(kg.iloc[:, 0].tolist()), rels.lookup(kg.iloc[:, 1].tolist()),
                        ents.lookup(kg.iloc[:, 2].tolist())], 1)
    triples = np.unique(triples, axis=0)
    perm = np.random.default_rng(2020).permutation(len(triples))
    n_tr, n_va = int(0.9 * len(triples)), int(0.05 * len(triples))
    ds = KGDataset(name="ml-100k", users=users, items=items, entities=ents, relations=rels, item_entity=item_entity,
                   train=inter(splits["train"]), valid=inter(splits["valid"]), test=inter(splits["test"]),
                   kg_train=triples[perm[:n_tr]], kg_valid=triples[perm[n_tr:n_tr + n_va]],
                   kg_test=triples[perm[n_tr + n_va:]])
    return ds, "stand-in reader (benchmarks/eval_speed.py)"


def flops_per_pair(induction: str, norm: str, K: int, d: int, inference: str = "induced") -> int:
    """Floating-point operations per (user, item) pair of the decomposed scorer (docs/MODEL.md).

    Counted as the work the formula needs, not what an implementation happens to do: the
    (B × N × d) user·item product (2d), the logit add and its argmax/softmax (K or ~4K), and
    per norm: squared L2 gathers/mixes per-k tables (hard ~10; soft: quadratic forms over 3
    K × K Gram matrices ~ 3·2K² + ~10K); L1 builds and sums one d-vector (hard ~3d; soft: the
    mixed p*, w* (2·2Kd) plus ~6d).
    """
    if induction == "hard" and inference == "expected":
        # l2: the weighted mean factorises into four (B × K) @ (K × N) products (scoring.py);
        # l1: softmax over K plus K projected d-differences
        return 2 * d + 8 * K if norm == "l2" else 4 * K + 3 * K * d
    if norm == "l2":
        return 2 * d + (K + 10 if induction == "hard" else 4 * K + 6 * K * K + 10 * K)
    return (K + 3 * d) if induction == "hard" else (4 * K + 4 * K * d + 6 * d + 8 * K)


def timeit(fn, repeats: int) -> float:
    """Best of ``repeats`` (after a warm-up): on a shared machine the minimum is the least noisy."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_rates(B: int, N: int, d: int, repeats: int, device) -> tuple[float, float]:
    a, b = torch.randn(B, d, device=device), torch.randn(d, N, device=device)
    t_same = timeit(lambda: _sync(a @ b, device), repeats)
    n = 1024
    x, y = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    t_big = timeit(lambda: _sync(x @ y, device), repeats)
    return 2 * B * N * d / t_same / 1e9, 2 * n ** 3 / t_big / 1e9


def _sync(x, device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--configs", default="soft-l1,hard-l1,soft-l2,hard-l2,hard-l2-expected",
                    help="INDUCTION-NORM[-expected]: hard models score by argmax α unless -expected (the shipped default)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch intra-op threads (0 = torch's default); 1 is steadier on a shared machine")
    ap.add_argument("--kg-triples", type=int, default=0, help="link-prediction triples (0 = all KG test triples)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {device}, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    if load > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("warning: the machine is oversubscribed; torch's thread pool thrashes (10x slower is common): "
              "rerun with --threads 1 for steadier figures")

    from ktup.config import ModelConfig
    from ktup.evaluation import evaluate_link_prediction, evaluate_recommendation

    ds, source = load_ml100k()
    valid_users = int((np.diff(ds.valid.csr()[0]) > 0).sum())
    N, K, d = ds.n_items, ds.n_relations, 64
    print(f"dataset: {source}; valid users {valid_users}, items {N}, relations {K}, entities {ds.n_entities}, "
          f"KG test triples {len(ds.kg_test)}")
    try:
        from ktup.models import build_model
        model_source = "the real ktup.models.KTUP"
    except ImportError:
        sys.exit("eval_speed: ktup.models is not importable")
    mm_same, mm_big = matmul_rates(valid_users, N, d, args.repeats, device)
    print(f"torch.matmul ({valid_users}x{d})@({d}x{N}): {mm_same:.1f} GFLOP/s; 1024^3: {mm_big:.1f} GFLOP/s "
          f"(plain matmul of the same size takes {2 * valid_users * N * d / mm_same / 1e6:.2f} ms)")
    recbole_s = 1.275
    users = torch.from_numpy(np.flatnonzero(np.diff(ds.valid.csr()[0]) > 0)).to(device)
    print(f"\nfull-ranking evaluation, valid split ({model_source}, random weights; RecBole: {recbole_s:.2f} s)")
    print("  score = one score_all_items call for all users; eval = evaluate_recommendation end to end")
    print(f"{'config':18}{'score ms':>10}{'eval ms':>10}{'vs RecBole':>12}{'GFLOP':>8}{'GFLOP/s':>9}{'x matmul time':>15}")
    t_mm = 2 * valid_users * N * d / mm_same / 1e9
    # the evaluator alone: a scorer that returns a precomputed matrix (one gather per call)
    table = torch.randn(ds.n_users, N, device=device)

    class Precomputed:
        def score_all_items(self, u, items=None):
            return table[u] if items is None else table[u][:, items]

    t_eval = timeit(lambda: evaluate_recommendation(Precomputed(), ds, "valid", ks=(10,)), args.repeats)
    print(f"{'(evaluator)':18}{'-':>10}{t_eval * 1e3:10.1f}{recbole_s / t_eval:11.1f}x")
    for name in args.configs.split(","):
        induction, norm, *rest = name.split("-")
        inference = rest[0] if rest else "induced"
        torch.manual_seed(0)
        model = build_model(ModelConfig(model="ktup", induction=induction, norm=norm, inference=inference),
                            ds).to(device).eval()
        with torch.no_grad():
            t_score = timeit(lambda: _sync(model.score_all_items(users), device), args.repeats)
        t_eval = timeit(lambda: evaluate_recommendation(model, ds, "valid", ks=(10,)), args.repeats)
        gflop = flops_per_pair(induction, norm, K, d, inference) * valid_users * N / 1e9
        print(f"{name:18}{t_score * 1e3:10.1f}{t_eval * 1e3:10.1f}{recbole_s / t_eval:11.1f}x"
              f"{gflop:8.2f}{gflop / t_score:9.1f}{t_score / t_mm:15.1f}")
    r = evaluate_recommendation(model, ds, "valid", ks=(10,))
    r2 = evaluate_recommendation(model, ds, "valid", ks=(10,), user_batch_size=100, memory_budget_mb=8)
    print(f"(last config: deterministic and chunk-independent: {r.summary == r2.summary}; "
          f"ndcg@10 of random weights {r.summary['ndcg@10']:.4f})")

    n = len(ds.kg_test) if args.kg_triples <= 0 else min(args.kg_triples, len(ds.kg_test))
    ent_table = torch.randn(ds.n_relations, ds.n_entities, device=device)

    class Cheap:  # the link-prediction evaluator alone: a scorer that costs one row gather
        memory_budget_mb = 1   # "bounds its own temporaries": scored over all entities at once

        def score_tails(self, h, r, entities=None):
            return ent_table[r] if entities is None else ent_table[r][:, entities]

        def score_heads(self, r, t, entities=None):
            return self.score_tails(t, r, entities)

    t_lp = timeit(lambda: evaluate_link_prediction(Cheap(), ds, "test", max_triples=n), max(1, args.repeats // 2))
    print(f"\nKG link prediction, evaluator alone (filter, ranks; gather-only scorer): {n} triples in {t_lp:.2f} s "
          f"= {n / t_lp:,.0f} triples/s")
    torch.manual_seed(0)
    model = build_model(ModelConfig(model="ktup"), ds).to(device).eval()
    t_lp = timeit(lambda: evaluate_link_prediction(model, ds, "test", max_triples=n), max(1, args.repeats // 2))
    lp = evaluate_link_prediction(model, ds, "test", max_triples=n)
    print(f"KG link prediction (filtered, realistic ranks, head + tail, ktup soft-l1 model, "
          f"{ds.n_entities} entities): {n} triples in {t_lp:.2f} s = {n / t_lp:,.0f} triples/s "
          f"({2 * n / t_lp:,.0f} rankings/s); MRR of random weights {lp.summary['mrr']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
