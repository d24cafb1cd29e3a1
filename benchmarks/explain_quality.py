"""How faithful and how well-supported are KTUP's explanations? Measured, not asserted.

Part 1 — synthetic data with planted relations (``ktup.data.synthetic``, configurations in
``PLANTED``, ``--seeds``): every interaction was generated through one KG relation. Train ktup
(``--set KEY=VALUE`` model options, e.g. ``relation_alignment=0.3``) and count, over held-out
test interactions, how often the relation equals the planted one for
  * the model's own induced preference (``accuracy_ktup_top_relation``),
  * the relation explanations name (the shipped post-hoc evidence step, latent-class,
    ``accuracy_ktup_posthoc_evidence``; its variants in ``accuracy_posthoc_variants``),
against chance (1/K), the most frequent planted relation, each user's most frequent planted
relation (oracle-fed), KG overlap, KG support alone, a latent-class EM, the best additive rule
fitted on planted labels (the cap of KTUP's additive induction) and the Bayes ceiling with the
generator's true parameters (``explain_anchors.py``); with test NDCG@10 of the run.
Part 2 — a real run (ml-100k by default; ``--real-dataset ml1m-dbpedia``, or ``--run-dir`` of a
finished run): induced relations over test interactions, timing of the batch recommend, and
coverage, deletion fidelity and agreement of the named relation over top-10 lists
(``explain_fidelity.py``).

    python benchmarks/explain_quality.py --part synthetic --planted small small-noise0.2 --seeds 7 8 9
    python benchmarks/explain_quality.py --part ml-100k --run-dir RUN --fidelity-users 200 --out res.json
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # explain_fidelity.py

from ktup.config import Config
from ktup.explain import Recommender, relation_name


def induced_relations(model, users: np.ndarray, items: np.ndarray, batch: int = 8192,
                      truth: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Top preference's relation id and its softmax weight per pair (batched); with ``truth``
    (relation ids) also the weight the model puts on the true relation."""
    rel_of = np.asarray(model.preference_relation, dtype=np.int64)
    k_of = np.full(rel_of.max() + 1, -1, dtype=np.int64)
    k_of[rel_of] = np.arange(len(rel_of))
    tops, weights, on_truth = [], [], []
    with torch.no_grad():
        for s in range(0, len(users), batch):
            logits = model.preference_logits(torch.as_tensor(users[s:s + batch]), torch.as_tensor(items[s:s + batch]))
            p = torch.softmax(logits.double(), dim=1)                       # (B, K)
            w, k = p.max(dim=1)
            tops.append(rel_of[k.numpy()])
            weights.append(w.numpy())
            if truth is not None:
                kt = torch.as_tensor(k_of[truth[s:s + batch]])
                on_truth.append(p.gather(1, kt[:, None])[:, 0].numpy())
    return np.concatenate(tops), np.concatenate(weights), (np.concatenate(on_truth) if truth is not None else None)


def kg_overlap_relation(d, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Per pair: the relation through which the item shares most KG neighbours with the user's train items."""
    from ktup.explain.evidence import EvidenceIndex, expand_csr

    idx = EvidenceIndex(d.kg_all, d.item_entity, d.n_entities)
    facts = idx._by_item                                                     # (F, 3) item, rel, nb
    R, E = idx.n_relations, idx.n_entities
    # C[u, r*E + nb] = number of u's train items reaching nb through r.
    f_ptr = np.concatenate([[0], np.cumsum(np.bincount(facts[:, 0], minlength=d.n_items))])
    own, pos = expand_csr(f_ptr, d.train.items)
    cu = d.train.users[own] * (R * E) + facts[pos, 1] * E + facts[pos, 2]
    keys, counts = np.unique(cu, return_counts=True)
    own2, pos2 = expand_csr(f_ptr, items)
    q = users[own2] * (R * E) + facts[pos2, 1] * E + facts[pos2, 2]
    at = np.searchsorted(keys, q)
    at_c = np.minimum(at, len(keys) - 1)
    c = np.where(keys[at_c] == q, counts[at_c], 0)
    score = np.zeros((len(users), R))
    np.add.at(score, (own2, facts[pos2, 1]), c)
    return score.argmax(axis=1)


def posthoc_relations(model, d, users, items, hist_indptr, hist_items, batch: int = 8192,
                      model_weights=(0.5, 1.0)) -> dict:
    """The evidence step as explanations run it (:func:`ktup.explain.latent.choose_relations`),
    per pair: ``latent-class`` (shipped: largest latent-class posterior among relations with a
    KG path), ``kg-support`` (the earlier rule: weight × KG support), ``latent+w<λ>``
    (posterior × model weight^λ), and ``support-only`` (argmax KG support)."""
    from ktup.explain.evidence import EvidenceIndex, RelationSupport
    from ktup.explain.latent import LatentRelations, choose_relations

    idx = EvidenceIndex(d.kg_all, d.item_entity, d.n_entities)
    rs = RelationSupport(idx, hist_indptr, hist_items)
    lat = LatentRelations(idx, hist_indptr, hist_items)
    rel_of = np.asarray(model.preference_relation, dtype=np.int64)
    f = idx._by_item
    has_r = np.zeros((d.n_items, idx.n_relations), dtype=bool)
    has_r[f[:, 0], f[:, 1]] = True
    out = {k: [] for k in ["latent-class", "kg-support", "support-only"] + [f"latent+w{m}" for m in model_weights]}
    with torch.no_grad():
        for s in range(0, len(users), batch):
            ub, ib = users[s:s + batch], items[s:s + batch]
            logp = torch.log_softmax(model.preference_logits(torch.as_tensor(ub), torch.as_tensor(ib)).double(), 1).numpy()
            sup = rs.support(ub, ib)[:, rel_of]                          # (B, K) in preference order
            has = has_r[ib][:, rel_of]
            post = lat.posterior(ub, ib)[:, rel_of]
            out["latent-class"].append(rel_of[choose_relations(logp, sup, has, post)[0]])
            out["kg-support"].append(rel_of[choose_relations(logp, sup, has)[0]])
            out["support-only"].append(rel_of[sup.argmax(1)])
            for m in model_weights:
                out[f"latent+w{m}"].append(rel_of[choose_relations(logp, sup, has, post, model_weight=m)[0]])
    return {k: np.concatenate(v) for k, v in out.items()}


#: Planted configurations (ktup.data.synthetic.generate arguments) measured by part 1.
PLANTED = {
    "small": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=6, values_per_relation=12),
    "small-noise0.2": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=6, values_per_relation=12,
                           noise=0.2),
    "small-12rel": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=12, values_per_relation=12),
    "small-40val": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=6, values_per_relation=40),
    "dense-40val": dict(n_users=500, n_items=300, n_interactions=40_000, n_relations=6, values_per_relation=40),
}


def part_synthetic(epochs: int, seed: int, lr: float = 5e-3, induction: str = "soft", planted: str = "small",
                   model_options: dict | None = None) -> dict:
    from ktup.data.synthetic import generate
    from ktup.training import train

    d = generate(**PLANTED[planted], seed=seed)
    K = d.n_relations
    cfg = Config.from_dict({"model": {"model": "ktup", "embedding_size": 32, "induction": induction,
                                      **(model_options or {})},
                            "train": {"epochs": epochs, "batch_size": 512, "kg_batch_size": 256, "lr": lr,
                                      "seed": seed, "patience": 0, "threads": 1},
                            "eval": {"kg_eval": False}})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = train(cfg, dataset=d, out=str(Path(tmp) / "run"), progress="quiet")
    train_s = time.perf_counter() - t0
    planted_tr = d.planted_relations["train"]
    planted_te = d.planted_relations["test"]
    ok = planted_te >= 0                                                     # drop noise interactions
    u, i, truth = d.test.users[ok], d.test.items[ok], planted_te[ok]
    top, weight, w_truth = induced_relations(run.model, u, i, truth=truth)
    tr_ptr, tr_items = d.train.csr()                                         # history = train only (no leakage)
    named = posthoc_relations(run.model, d, u, i, tr_ptr, tr_items)
    with torch.no_grad():   # the model's posterior over preferences: prior weight × exp(score under k)
        ut, it = torch.as_tensor(u), torch.as_tensor(i)
        resp = (torch.log_softmax(run.model.preference_logits(ut, it).double(), 1)
                + run.model.score_pairs_per_preference(ut, it).double()).argmax(1).numpy()
    resp = np.asarray(run.model.preference_relation)[resp]
    glob = np.bincount(planted_tr[planted_tr >= 0], minlength=K).argmax()
    per_user = np.zeros((d.n_users, K), dtype=np.int64)
    m = planted_tr >= 0
    np.add.at(per_user, (d.train.users[m], planted_tr[m]), 1)
    user_mode = np.where(per_user.sum(1) > 0, per_user.argmax(1), glob)
    kg_rel = kg_overlap_relation(d, u, i)
    from explain_anchors import additive_oracle, bayes_ceiling, label_fed, latent_class_em

    em_rel = latent_class_em(d, u, i).argmax(1)
    res = {
        "planted": planted, "generator": PLANTED[planted], "seed": seed,
        "model_options": model_options or {},
        "dataset": d.info(), "epochs": epochs, "lr": lr, "induction": induction, "train_seconds": round(train_s, 1),
        "test_metrics": run.final.get("test") if run.final else None,
        "test_interactions": int(ok.sum()), "K": K,
        "accuracy_ktup_top_relation": float((top == truth).mean()),
        "accuracy_ktup_posthoc_evidence": float((named["latent-class"] == truth).mean()),
        "evidence_step": "latent-class (shipped default; history = train interactions)",
        "accuracy_posthoc_variants": {k: float((v == truth).mean()) for k, v in named.items()},
        "accuracy_ktup_responsibility": float((resp == truth).mean()),
        "mean_weight_of_top": float(weight.mean()),
        "mean_weight_on_planted": float(w_truth.mean()),
        "chance": 1.0 / K,
        "baseline_global_most_frequent": float((glob == truth).mean()),
        "baseline_user_most_frequent_planted": float((user_mode[u] == truth).mean()),
        "baseline_kg_overlap": float((kg_rel == truth).mean()),
        "baseline_kg_support": float((named["support-only"] == truth).mean()),
        "baseline_latent_class_em": float((em_rel == truth).mean()),
        "cap_additive_oracle": additive_oracle(d, K, u, i, truth),
        "ceiling_bayes_true_parameters": bayes_ceiling(PLANTED[planted], seed, d, u, i, truth),
        "ceiling_label_fed": label_fed(d, u, i, truth),
        "induced_distribution": {d.relations.token(r): int(c) for r, c in
                                 enumerate(np.bincount(top, minlength=K))},
        "planted_distribution": {d.relations.token(r): int(c) for r, c in
                                 enumerate(np.bincount(truth, minlength=K))},
    }
    return res


def part_ml100k(epochs: int, run_dir: str | None, dataset: str = "ml-100k-recbole-split",
                fidelity_users: int = 943, refit_steps: int = 30, options: dict | None = None,
                history_users: int = 0, history_steps: int = 60, history_only: bool = False) -> dict:
    from ktup.training import load_run, train

    if run_dir and (Path(run_dir) / "checkpoints" / "best.pt").exists():
        run = load_run(run_dir)
        train_s = None
    else:
        cfg = Config.from_dict({"data": {"dataset": dataset, "split": "given"}, "model": dict(options or {}),
                                "train": {"epochs": epochs, "threads": 1}, "eval": {"kg_eval": False}})
        t0 = time.perf_counter()
        out = run_dir or tempfile.mkdtemp(prefix="ktup-explain-bench-")
        run = train(cfg, out=out, progress="quiet")
        train_s = time.perf_counter() - t0
    d, model = run.dataset, run.model
    rec = Recommender(model, d, run=run)
    # induced relations over test interactions
    top, weight, _ = induced_relations(model, d.test.users, d.test.items)
    dist = Counter(d.relations.token(r) for r in top.tolist())
    # batch recommend of every user: ranking core and CSV writing, timed
    users = np.arange(d.n_users)

    def timed(fn):
        """(wall seconds, CPU seconds of this process): CPU time stays meaningful on a shared machine."""
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        return out, (round(time.perf_counter() - w, 3), round(time.process_time() - c, 3))

    def score_all():
        with torch.no_grad():
            for s in range(0, d.n_users, 1024):
                model.score_all_items(torch.as_tensor(users[s:s + 1024]))

    from ktup.cli.recommend import write_batch

    _, t_scores = timed(score_all)
    (top_i, top_s), t_topk = timed(lambda: rec.top_k(users, k=10))
    _, t_csv = timed(lambda: write_batch(rec, users, 10, io.StringIO(), "csv"))
    # evidence coverage of the top-10 lists (history = all known interactions, as the CLI uses)
    uu = np.repeat(users, top_i.shape[1])
    ii = top_i.reshape(-1)
    keep = ii >= 0
    uu, ii = uu[keep], ii[keep]
    rr, _, _ = induced_relations(model, uu, ii)
    found, t_paths = timed(lambda: rec.evidence.paths_exist(uu, ii, rr, rec._seen_indptr, rec._seen_items))
    linked = d.item_entity[ii] >= 0
    rec_dist = Counter(relation_name(d.relations.token(r)) for r in rr.tolist())
    # coverage, deletion fidelity, agreement (benchmarks/explain_fidelity.py) on a user sample
    from explain_fidelity import coverage_metrics, deletion_metrics, named_relations

    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(d.n_users, size=min(fidelity_users, d.n_users), replace=False))
    fu = np.repeat(sample, top_i.shape[1])
    fi = top_i[sample].reshape(-1)
    fu, fi = fu[fi >= 0], fi[fi >= 0]
    fidelity = {"users": int(len(sample)), "skipped": "--history-only"}
    if not history_only:
        (ftop, fnamed, fsup, fks), t_named = timed(lambda: named_relations(model, rec, fu, fi))
        fidelity = {"users": int(len(sample)), "protocol": "top-10 of each sampled user (seen items left out); "
                    "history = train+valid+test interactions; relations named by the shipped evidence step "
                    f"({rec.evidence_step})", **coverage_metrics(rec, fu, fi, fnamed, ftop, fsup)}
        fidelity["named_equals_kg_support_rule"] = float((fnamed == fks).mean()) if len(fu) else None
        dm, t_del = timed(lambda: deletion_metrics(model, d, fu, fi, fnamed, ftop, fsup, steps=refit_steps,
                                                   others={"kg_support_rule": fks}))
        fidelity.update(dm)
        fidelity["wall_cpu_seconds_named"] = t_named
        fidelity["wall_cpu_seconds_deletion"] = t_del
    if history_users:
        # history-side deletion: history = training interactions (what the user row was fitted on)
        from explain_deletion_history import cited_by_influence, cited_in_text, cited_on_paths, history_deletion

        rec_tr = Recommender(model, d, run=run, seen_splits=("train",))
        hs = np.sort(rng.choice(d.n_users, size=min(history_users, d.n_users), replace=False))
        ti, _ = rec_tr.top_k(hs, k=10)
        hu, hi = np.repeat(hs, ti.shape[1]), ti.reshape(-1)
        hu, hi = hu[hi >= 0], hi[hi >= 0]
        hd = {"users": int(len(hs)), "protocol": "top-10 of each sampled user, train items masked; history = "
              "training interactions (what the user row was fitted on)"}
        for step in ("latent-class", "kg-support"):
            rec_s = Recommender(model, d, run=run, seen_splits=("train",), evidence_step=step)
            (cp, ci), named_s = cited_in_text(rec_s, hu, hi)
            hd[f"{step}/cited-in-text"], t = timed(lambda: history_deletion(model, rec_s, hu, hi, cp, ci,
                                                                            steps=history_steps))
            hd[f"{step}/cited-in-text"]["wall_cpu_seconds"] = t
            if step == "latent-class":   # anchors: every KG-path item; the most influential of any history items
                n_cite = np.bincount(cp, minlength=len(hu))
                pp, pi_ = cited_on_paths(rec_s, hu, hi, named_s)
                hd[f"{step}/cited-on-paths"] = history_deletion(model, rec_s, hu, hi, pp, pi_, steps=history_steps)
                ap, ai = cited_by_influence(model, rec_s, hu, hi, n_cite)
                hd["anchor/influence-any-history"] = history_deletion(model, rec_s, hu, hi, ap, ai, steps=history_steps)
        fidelity["history_deletion"] = hd
    return {
        "fidelity": fidelity,
        "run": str(run.path), "train_seconds": None if train_s is None else round(train_s, 1),
        "epochs": run.info.get("epochs_done"), "test_metrics": (run.final or {}).get("test"),
        "test_interactions": int(len(d.test)),
        "induced_relation_distribution_test": {f"{k} ({relation_name(k)})": v for k, v in dist.most_common()},
        "mean_weight_of_top_test": float(weight.mean()),
        "distinct_induced_relations_test": len(dist),
        "top10_recommendations": int(len(ii)),
        "top10_relation_distribution": dict(rec_dist.most_common()),
        "evidence_path_found_fraction": float(found.mean()),
        "evidence_path_found_fraction_linked_items": float(found[linked].mean()) if linked.any() else None,
        "wall_cpu_seconds_score_all_items_all_users": t_scores,
        "wall_cpu_seconds_top_k_all_users": t_topk,
        "wall_cpu_seconds_write_csv_all_users": t_csv,
        "wall_cpu_seconds_paths_exist_all_top10": t_paths,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=("all", "synthetic", "ml-100k"), default="all")
    ap.add_argument("--epochs", type=int, default=30, help="synthetic training epochs")
    ap.add_argument("--lr", type=float, default=5e-3, help="synthetic learning rate")
    ap.add_argument("--induction", choices=("soft", "hard", "expected"), default="soft", help="synthetic run's induction")
    ap.add_argument("--planted", nargs="+", default=["small"], choices=sorted(PLANTED), help="planted configurations")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="synthetic seeds (default: --seed)")
    ap.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                    help="model option for the synthetic runs, repeatable (e.g. --set relation_alignment=1)")
    ap.add_argument("--out", default=None, help="also write the results as JSON here")
    ap.add_argument("--ml-epochs", type=int, default=5, help="ml-100k training epochs")
    ap.add_argument("--real-dataset", default="ml-100k-recbole-split", help="real data set of part 2 (e.g. ml1m-dbpedia)")
    ap.add_argument("--fidelity-users", type=int, default=943, help="users sampled for coverage/deletion/agreement")
    ap.add_argument("--refit-steps", type=int, default=30, help="Adam steps of the entity refit (deletion fidelity)")
    ap.add_argument("--run-dir", default=None, help="ml-100k run directory (reused when finished)")
    ap.add_argument("--history-users", type=int, default=0,
                    help="users sampled for history-side deletion (0: skip; explain_deletion_history.py)")
    ap.add_argument("--history-steps", type=int, default=60, help="Adam steps of the user refit")
    ap.add_argument("--history-only", action="store_true", help="real data: only the history-side deletion")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    out = {}
    if args.part in ("all", "synthetic"):
        opts = {}
        for kv in args.options:
            k, v = kv.split("=", 1)
            opts[k] = json.loads(v) if v.replace(".", "", 1).replace("-", "", 1).isdigit() or v in ("true", "false") else v
        out["synthetic"] = []
        for planted in args.planted:
            for seed in args.seeds or [args.seed]:
                r = part_synthetic(args.epochs, seed, args.lr, args.induction, planted, opts)
                out["synthetic"].append(r)
                print(json.dumps({k: r[k] for k in ("planted", "seed", "model_options", "induction", "train_seconds",
                                                    "accuracy_ktup_top_relation", "accuracy_ktup_posthoc_evidence",
                                                    "accuracy_ktup_responsibility", "accuracy_posthoc_variants",
                                                    "ceiling_label_fed",
                                                    "mean_weight_of_top", "chance", "baseline_kg_overlap",
                                                    "baseline_kg_support", "baseline_latent_class_em", "cap_additive_oracle",
                                                    "ceiling_bayes_true_parameters", "baseline_user_most_frequent_planted")}
                                 | {"test_ndcg@10": (r["test_metrics"] or {}).get("ndcg@10")}), flush=True)
    if args.part in ("all", "ml-100k"):
        opts_real = {}
        for kv in args.options:
            k, v = kv.split("=", 1)
            opts_real[k] = json.loads(v) if v.replace(".", "", 1).replace("-", "", 1).isdigit() or v in ("true", "false") else v
        out["ml-100k"] = part_ml100k(args.ml_epochs, args.run_dir, args.real_dataset, args.fidelity_users,
                                     args.refit_steps, opts_real, args.history_users, args.history_steps,
                                     args.history_only)
        print(json.dumps({"ml-100k": out["ml-100k"]}, indent=2), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"argv": sys.argv[1:], **out}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
