"""PyKEEN as a peer for KG completion: TransH trained by PyKEEN and by ktup on a dataset that
ships inside the pykeen package (Kinships or UMLS: no download), each evaluated by PyKEEN's
RankBasedEvaluator and by ours (ktup.evaluation.evaluate_link_prediction), filtered, realistic
ranks. For PyKEEN's trained embeddings the per-triple filtered ranks of both evaluators are
compared (they must be equal). Writes benchmarks/results/pykeen-<dataset>-<date>.json.

Runs INSIDE benchmarks/peers/pykeen/.venv (setup.sh installs torch==2.13.0, pykeen and ktup):

    benchmarks/peers/pykeen/.venv/bin/python benchmarks/peers/pykeen/run_pykeen.py --epochs 200

Settings shared by both trainers: embedding 64, L1 score, margin ranking loss (γ = 1) against
one uniformly corrupted head or tail, Adam, same lr, batch and epochs, seed. Each keeps its
own soft-constraint defaults (PyKEEN: norm-limit + orthogonality regularisers, weight 0.05;
ktup: weight 0.01) and its own hyperplane-normal convention (PyKEEN 1.11's TransH uses the
normal as stored, ktup normalises it: see ``ours_adapter``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
WORK = HERE / "work"


# ------------------------------------------------------------------ data
def load_pykeen_dataset(name: str):
    from pykeen.datasets import UMLS, Kinships, Nations

    cls = {"kinships": Kinships, "umls": UMLS, "nations": Nations}[name]
    return cls()   # bundled in the pykeen wheel: reads files next to the module, no download


def ktup_dataset(ds, name: str):
    """A ktup KGDataset with PyKEEN's ids (entities/relations in PyKEEN's order), no interactions."""
    from ktup.data.dataset import IdMap, Interactions, KGDataset

    tf = ds.training
    ents = [None] * tf.num_entities
    for label, i in tf.entity_to_id.items():
        ents[i] = label
    rels = [None] * tf.num_relations
    for label, i in tf.relation_to_id.items():
        rels[i] = label
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64), 0, 0)
    return KGDataset(
        name=f"pykeen-{name}", users=IdMap([], "user"), items=IdMap([], "item"), entities=IdMap(ents, "entity"),
        relations=IdMap(rels, "relation"), item_entity=np.zeros(0, np.int64), train=empty, valid=empty, test=empty,
        kg_train=ds.training.mapped_triples.numpy().astype(np.int64),
        kg_valid=ds.validation.mapped_triples.numpy().astype(np.int64),
        kg_test=ds.testing.mapped_triples.numpy().astype(np.int64),
        meta={"format": "pykeen", "source": f"pykeen.datasets.{type(ds).__name__}"},
    )


# ------------------------------------------------------------------ PyKEEN evaluation
def pykeen_evaluate(model, ds, batch_size: int = 256):
    """PyKEEN's RankBasedEvaluator on the test triples, filtered by train+valid(+test), plus the
    realistic rank of every (triple, side) as PyKEEN computed it."""
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.evaluation.ranks import Ranks

    class Recording(RankBasedEvaluator):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.records: dict[str, list] = {"head": [], "tail": []}

        def process_scores_(self, hrt_batch, target, scores, true_scores=None, dense_positive_mask=None):
            super().process_scores_(hrt_batch, target, scores, true_scores, dense_positive_mask)
            r = Ranks.from_scores(true_score=true_scores, all_scores=scores).realistic
            self.records[target].append((hrt_batch.detach().cpu().numpy(), r.detach().cpu().numpy().reshape(-1)))

    ev = Recording(filtered=True, clear_on_finalize=True)
    t0 = time.perf_counter()
    res = ev.evaluate(model, ds.testing.mapped_triples, batch_size=batch_size, use_tqdm=False,
                      additional_filter_triples=[ds.training.mapped_triples, ds.validation.mapped_triples])
    seconds = time.perf_counter() - t0
    ranks = {}
    for side, recs in ev.records.items():
        trip = np.concatenate([t for t, _ in recs])
        rk = np.concatenate([r for _, r in recs])
        ranks[side] = {tuple(map(int, k)): float(v) for k, v in zip(trip, rk)}
    summary = {
        "mr": float(res.get_metric("both.realistic.arithmetic_mean_rank")),
        "mrr": float(res.get_metric("both.realistic.inverse_harmonic_mean_rank")),
        "hits@1": float(res.get_metric("both.realistic.hits_at_1")),
        "hits@3": float(res.get_metric("both.realistic.hits_at_3")),
        "hits@10": float(res.get_metric("both.realistic.hits_at_10")),
        "seconds": round(seconds, 3),
    }
    return summary, ranks


def ours_evaluate(model, dataset):
    from ktup.evaluation import evaluate_link_prediction

    res = evaluate_link_prediction(model, dataset, split="test", filtered=True)
    summary = {k: float(res.summary[k]) for k in ("mr", "mrr", "hits@1", "hits@3", "hits@10")}
    summary["seconds"] = round(res.seconds, 3)
    ranks = {"head": {tuple(map(int, t)): float(r) for t, r in zip(res.triples, res.head_ranks)},
             "tail": {tuple(map(int, t)): float(r) for t, r in zip(res.triples, res.tail_ranks)}}
    return summary, ranks


def compare_ranks(a: dict, b: dict) -> dict:
    """Per-triple equality of two evaluators' realistic ranks (both sides)."""
    out = {}
    for side in ("head", "tail"):
        keys = sorted(a[side])
        if sorted(b[side]) != keys:
            out[side] = {"same_triples": False}
            continue
        x = np.array([a[side][k] for k in keys])
        y = np.array([b[side][k] for k in keys])
        out[side] = {"same_triples": True, "n": len(keys), "equal": int((x == y).sum()),
                     "max_abs_diff": float(np.abs(x - y).max()) if len(keys) else 0.0}
    out["all_equal"] = all(v.get("same_triples") and v["equal"] == v["n"] for v in out.values() if isinstance(v, dict))
    return out


# ------------------------------------------------------------------ adapters
class PykeenScorer:
    """``score_tails`` / ``score_heads`` (ktup's evaluator contract) from PyKEEN's own scoring
    functions, so the rank comparison tests the evaluators alone, on identical scores."""

    def __init__(self, model, n_entities: int):
        self.model, self.n_entities = model, n_entities

    def parameters(self):
        return self.model.parameters()

    def eval(self):
        self.model.eval()
        return self

    def train(self, mode: bool = True):
        self.model.train(mode)
        return self

    def score_tails(self, h, r, entities=None):
        s = self.model.score_t(torch.stack([h, r], 1))          # (B, E)
        return s if entities is None else s[:, entities]

    def score_heads(self, r, t, entities=None):
        s = self.model.score_h(torch.stack([r, t], 1))          # (B, E)
        return s if entities is None else s[:, entities]


def pykeen_tables(model) -> dict[str, torch.Tensor]:
    """PyKEEN TransH's trained tables. Its interaction unpacks the relation representations as
    ``(w_r, d_r)`` in list order: [0] is the hyperplane normal (unconstrained), [1] the
    translation (renormalised to unit length after each step by its constrainer)."""
    return {"entity": model.entity_representations[0](indices=None).detach().clone(),
            "normal": model.relation_representations[0](indices=None).detach().clone(),
            "relation": model.relation_representations[1](indices=None).detach().clone()}


def ours_adapter(tables, unit_normals: bool):
    """ktup's TransH holding the given tables (its own scoring code)."""
    from ktup.models import TransH

    n_e, d = tables["entity"].shape
    m = TransH(n_e, tables["relation"].shape[0], d, norm="l1", unit_normals=unit_normals)
    with torch.no_grad():
        m.entity.weight.copy_(tables["entity"])
        m.relation.weight.copy_(tables["relation"])
        m.relation_norm.weight.copy_(tables["normal"])
    return m.eval()


def load_into_pykeen(pk_model, ours) -> None:
    """Put ktup TransH's tables into a PyKEEN TransH (normals pre-normalised: PyKEEN uses them as stored)."""
    from ktup.models import functional as fn

    with torch.no_grad():
        pk_model.entity_representations[0]._embeddings.weight.copy_(ours.entity.weight[: ours.n_entities])
        pk_model.relation_representations[0]._embeddings.weight.copy_(
            fn.normal(ours.relation_norm.weight, ours.unit_normals))
        pk_model.relation_representations[1]._embeddings.weight.copy_(ours.relation.weight)


# ------------------------------------------------------------------ training
def train_pykeen(ds, args):
    from pykeen.pipeline import pipeline

    t0 = time.perf_counter()
    result = pipeline(
        dataset=ds, model="TransH", model_kwargs=dict(embedding_dim=args.dim, scoring_fct_norm=1),
        loss="marginranking", loss_kwargs=dict(margin=1.0), optimizer="adam", optimizer_kwargs=dict(lr=args.lr),
        training_loop="slcwa", negative_sampler="basic", negative_sampler_kwargs=dict(num_negs_per_pos=1),
        training_kwargs=dict(num_epochs=args.epochs, batch_size=args.batch_size, use_tqdm=False),
        evaluation_kwargs=dict(batch_size=256, use_tqdm=False), random_seed=args.seed, device="cpu",
        use_testing_data=True, filter_validation_when_testing=True, use_tqdm=False,
    )
    return result.model, time.perf_counter() - t0, result


def train_ours(dataset, args):
    from ktup.config import Config
    from ktup.training import train

    cfg = Config.from_dict({
        "model": {"model": "transh", "embedding_size": args.dim, "norm": "l1", "margin": 1.0},
        "train": {"epochs": args.epochs, "lr": args.lr, "kg_batch_size": args.batch_size, "kg_sampling": "uniform",
                  "optimizer": "adam", "seed": args.seed, "patience": 0, "eval_every": max(1, args.epochs // 5)},
        "eval": {"kg_eval": False},
    })
    t0 = time.perf_counter()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = WORK / f"ktup-transh-{args.dataset}-{args.epochs}ep-{stamp}"     # a fresh run directory each time
    run = train(cfg, dataset=dataset, out=str(out), progress="quiet")
    return run.model.eval(), time.perf_counter() - t0


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="kinships", choices=["kinships", "umls", "nations"])
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    WORK.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSTOW_HOME", str(WORK / "pystow"))   # keep PyKEEN's cache out of $HOME

    import pykeen

    import ktup
    ds = load_pykeen_dataset(args.dataset)
    dataset = ktup_dataset(ds, args.dataset)
    print(f"{args.dataset}: {dataset.n_entities} entities, {dataset.n_relations} relations, "
          f"{len(dataset.kg_train)}/{len(dataset.kg_valid)}/{len(dataset.kg_test)} triples")

    # 1. PyKEEN's TransH, both evaluators; per-triple rank check
    pk_model, pk_train_s, _ = train_pykeen(ds, args)
    pk_model.eval()
    pk_by_pk, pk_ranks = pykeen_evaluate(pk_model, ds)
    pk_by_ours_exact, ours_ranks_exact = ours_evaluate(PykeenScorer(pk_model, dataset.n_entities), dataset)
    check_evaluator = compare_ranks(pk_ranks, ours_ranks_exact)
    tables = pykeen_tables(pk_model)
    adapter = ours_adapter(tables, unit_normals=False)
    hr = torch.as_tensor(dataset.kg_test[:64, :2])
    with torch.no_grad():
        score_diff = float((adapter.score_tails(hr[:, 0], hr[:, 1]) - pk_model.score_t(hr)).abs().max())
    pk_by_ours_transh, ours_ranks_transh = ours_evaluate(adapter, dataset)
    check_scoring = compare_ranks(pk_ranks, ours_ranks_transh)
    check_scoring["max_abs_score_diff"] = score_diff

    # 2. our TransH, both evaluators
    our_model, our_train_s = train_ours(dataset, args)
    ours_by_ours, _ = ours_evaluate(our_model, dataset)
    from pykeen.models import TransH as PkTransH
    shell = PkTransH(triples_factory=ds.training, embedding_dim=args.dim, scoring_fct_norm=1, random_seed=args.seed)
    load_into_pykeen(shell, our_model)
    ours_by_pk, _ = pykeen_evaluate(shell.eval(), ds)

    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    out = args.out or REPO / "benchmarks" / "results" / f"pykeen-{args.dataset}-{date}.json"
    report = {
        "benchmark": "pykeen-peer", "command": " ".join([os.path.relpath(sys.executable, REPO)] + sys.argv),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "pykeen": pykeen.get_version(), "ktup": ktup.__version__, "numpy": np.__version__},
        "dataset": {"name": args.dataset, "entities": dataset.n_entities, "relations": dataset.n_relations,
                    "train": len(dataset.kg_train), "valid": len(dataset.kg_valid), "test": len(dataset.kg_test)},
        "settings": {"model": "TransH", "embedding": args.dim, "norm": "L1", "margin": 1.0, "negatives": "1 uniform head/tail",
                     "optimizer": "adam", "lr": args.lr, "batch_size": args.batch_size, "epochs": args.epochs,
                     "seed": args.seed, "eval": "test, filtered by train+valid+test, realistic ranks, both sides",
                     "threads": args.threads},
        "results": {
            "pykeen_transh": {"train_s": round(pk_train_s, 2), "by_pykeen": pk_by_pk,
                              "by_ours_pykeen_scores": pk_by_ours_exact, "by_ours_ktup_transh_scoring": pk_by_ours_transh},
            "ktup_transh": {"train_s": round(our_train_s, 2), "by_ours": ours_by_ours, "by_pykeen": ours_by_pk},
        },
        "rank_check": {"evaluator_same_scores": check_evaluator, "ktup_scoring_of_pykeen_embeddings": check_scoring},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {out}")
    return 0 if check_evaluator["all_equal"] else 1


def print_table(rep) -> None:
    r = rep["results"]
    rows = [("PyKEEN TransH", "PyKEEN evaluator", r["pykeen_transh"]["by_pykeen"]),
            ("PyKEEN TransH", "ktup evaluator", r["pykeen_transh"]["by_ours_pykeen_scores"]),
            ("PyKEEN TransH", "ktup eval+scoring", r["pykeen_transh"]["by_ours_ktup_transh_scoring"]),
            ("ktup TransH", "ktup evaluator", r["ktup_transh"]["by_ours"]),
            ("ktup TransH", "PyKEEN evaluator", r["ktup_transh"]["by_pykeen"])]
    print(f"\n{rep['dataset']['name']} test, filtered, realistic ranks")
    print(f"{'model':<15}{'evaluated by':<20}{'MRR':>8}{'Hits@10':>9}{'Hits@1':>8}{'MR':>8}{'eval s':>8}")
    for m, e, s in rows:
        print(f"{m:<15}{e:<20}{s['mrr']:>8.4f}{s['hits@10']:>9.4f}{s['hits@1']:>8.4f}{s['mr']:>8.2f}{s['seconds']:>8.2f}")
    for name, c in rep["rank_check"].items():
        print(f"rank check [{name}]: all equal = {c['all_equal']}; "
              + "; ".join(f"{side}: {c[side].get('equal')}/{c[side].get('n')} equal, max |diff| {c[side].get('max_abs_diff')}"
                          for side in ("head", "tail")))
    print(f"train seconds: PyKEEN {r['pykeen_transh']['train_s']}, ktup {r['ktup_transh']['train_s']}")


if __name__ == "__main__":
    raise SystemExit(main())
