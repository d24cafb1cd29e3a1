"""Why does (or doesn't) the KG pay in ktup? Measurements on ml1m-dbpedia (issue 14).

Parts (each prints its figures and writes benchmarks/results/kg-diagnosis-2026-12-02-PART.json
holding the exact command):

  stats    the KG's shape: per relation, triples, items covered, distinct tails.
  signal   training-free test of each relation's signal for recommendation: an item-kNN
           recommender whose item-item similarity is "shares tails through relation r" (cosine),
           scored on valid and test (recbole protocol: full ranking, seen items masked),
           against popularity and interaction item-kNN.
  grads    during ktup training: norm of the rec-loss vs KG-loss gradient on the shared rows
           (item-linked entity rows, items), per touched row, their cosine; how far each step
           kind moves the shared rows over an epoch; the share of item rows each kind touches.
  run      train one named variant (VARIANTS) with `ktup train` at the screening budget.
  ablate   a trained ktup's valid/test NDCG@10 with its entity rows removed (ĩ = i) or its item rows removed.
  collect  the table of variants from their run directories (valid/test NDCG@10, Recall@10, KG MRR).

Usage (1 thread, under nice; the repo's src on PYTHONPATH):
  python benchmarks/kg_diagnosis.py stats
  python benchmarks/kg_diagnosis.py signal
  python benchmarks/kg_diagnosis.py grads --epochs 2 --probe-steps 0 20 100 400
  python benchmarks/kg_diagnosis.py run ktup --seed 2020
  python benchmarks/kg_diagnosis.py collect --tag screen
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATE = "2026-12-02"
DATA = ["--dataset", "ml1m-dbpedia", "--data-dir", "../shared/datasets"]
PROTOCOL = "recbole (full ranking over all items, train (+valid for test) masked), valid/test = the given temporal split"
BUDGET = ["--set", "threads=1", "--set", "epochs=10", "--set", "eval_every=2"]
FILM_PEOPLE = ["directed_by_director", "starred_by_actor", "wrote_by_writter", "produced_by_producer",
               "composed_by_composer", "cinematography_by_cinematographer", "edited_by_editor"]

# name -> (model, extra --set overrides, init_from run names); every variant runs at BUDGET
VARIANTS: dict[str, tuple[str, list[str], list[str]]] = {
    "tup": ("tup", [], []),
    "tup-k9": ("tup", ["num_preferences=9"], []),
    "transh": ("transh", ["epochs=20", "eval_every=10"], []),
    "ktup": ("ktup", [], []),
    "ktup-lam1": ("ktup", ["joint_lambda=1.0"], []),
    "ktup-kgw10": ("ktup", ["kg_loss_weight=10"], []),
    "ktup-align": ("ktup", ["align_loss=true"], []),
    "ktup-detach": ("ktup", ["entity_rec_grad=false"], []),
    "ktup-no-wiki": ("ktup", ["kg_drop_relations=[related_to_wikipage]"], []),
    "ktup-no-wiki-cat": ("ktup", ["kg_drop_relations=[related_to_wikipage,belong_to_category]"], []),
    "ktup-people": ("ktup", [f"kg_relations=[{','.join(FILM_PEOPLE)}]"], []),
    # pre-training as the authors did, against tup re-started the same way (fresh optimiser)
    "tup-init": ("tup", ["epochs=6"], ["tup"]),
    "ktup-init": ("ktup", ["epochs=6"], ["tup", "transh"]),
}


def out_json(part: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"kg-diagnosis-{DATE}-{part}.json"
    payload = {"benchmark": "kg-diagnosis", "part": part, "date": DATE, "dataset": "ml1m-dbpedia",
               "command": "python " + " ".join(shlex.quote(a) for a in ["benchmarks/kg_diagnosis.py"] + sys.argv[1:]),
               "cpu_threads": torch.get_num_threads(), **payload}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


def load(extra=()):
    from ktup.config import Config
    from ktup.data import load_dataset

    cfg = Config().apply_overrides(["dataset=ml1m-dbpedia", "data_dir=../shared/datasets", *extra])
    return cfg, load_dataset(cfg.data)


def item_entity_rows(ds) -> np.ndarray:
    ie = np.asarray(ds.item_entity)
    return np.unique(ie[ie >= 0])


# ============================================================== stats
def cmd_stats(args) -> None:
    _, ds = load()
    kg = ds.kg_train
    is_item = np.zeros(ds.n_entities, bool)
    is_item[item_entity_rows(ds)] = True
    rows = []
    for r in range(ds.n_relations):
        m = kg[:, 1] == r
        h, t = kg[m, 0], kg[m, 2]
        tails, counts = np.unique(t, return_counts=True)
        rows.append({"relation": ds.relations.token(r), "triples": int(m.sum()), "share": float(m.mean()),
                     "head_is_item": float(is_item[h].mean()) if m.any() else None,
                     "items_covered": int(len(np.unique(h[is_item[h]]))), "tails": int(len(tails)),
                     "tails_with_one_item": float((counts == 1).mean()), "mean_items_per_tail": float(counts.mean())})
    print(f"{'relation':36s} {'triples':>8s} {'share':>6s} {'items':>6s} {'tails':>6s} {'tails w/1 item':>14s}")
    for x in rows:
        print(f"{x['relation']:36s} {x['triples']:8d} {x['share']:6.3f} {x['items_covered']:6d} {x['tails']:6d} "
              f"{x['tails_with_one_item']:14.2f}")
    cnt = np.bincount(ds.train.items, minlength=ds.n_items)
    cold = {sp: {f"<{k}": float((cnt[ds.split(sp).items] < k).mean()) for k in (1, 5, 20, 50)} for sp in ("valid", "test")}
    print(f"train interactions per item: median {np.median(cnt):.0f}; share of valid/test interactions on items with "
          f"fewer than k train interactions: {cold}")
    out_json("stats", {"train_interactions_per_item_median": float(np.median(cnt)), "cold_item_share": cold,
                       "items": ds.n_items, "entities": ds.n_entities, "train_interactions": len(ds.train),
                       "kg_train_triples": int(len(kg)), "relations": rows})


# ============================================================== signal
def cmd_signal(args) -> None:
    from ktup.evaluation.ranking import evaluate_recommendation

    torch.set_num_threads(1)
    _, ds = load()
    n_u, n_i = ds.n_users, ds.n_items
    ie = torch.as_tensor(np.asarray(ds.item_entity))
    ent_item = torch.full((ds.n_entities,), -1, dtype=torch.long)
    ent_item[ie[ie >= 0]] = torch.arange(n_i)[ie >= 0]
    kg = torch.as_tensor(ds.kg_train)

    def cosine(a: torch.Tensor) -> torch.Tensor:       # a: (n_items, n_features) sparse 0/1
        s = torch.sparse.mm(a, a.to_dense().T)            # (n_items, n_items)
        d = s.diagonal().clamp_min(1e-12).sqrt()
        s = s / d[:, None] / d[None, :]
        s.fill_diagonal_(0.0)
        return s

    def rel_matrix(mask: torch.Tensor) -> torch.Tensor:
        h, t = ent_item[kg[mask, 0]], kg[mask, 2]
        ok = h >= 0
        return torch.sparse_coo_tensor(torch.stack([h[ok], t[ok]]), torch.ones(int(ok.sum())),
                                       (n_i, ds.n_entities)).coalesce()

    def evaluate(name: str, sim: torch.Tensor | None, extra: dict) -> dict:
        res = {}
        for split in ("valid", "test"):
            hist = ds.seen_before(split)
            r = torch.sparse_coo_tensor(torch.stack([torch.as_tensor(hist.users), torch.as_tensor(hist.items)]),
                                        torch.ones(len(hist)), (n_u, n_i)).coalesce()
            if sim is None:   # popularity
                pop = torch.bincount(torch.as_tensor(hist.items), minlength=n_i).float()
                scores = pop[None, :].expand(n_u, n_i)
            else:
                scores = torch.sparse.mm(r, sim)
            fn = (lambda s: (lambda users, items=None: s[torch.as_tensor(users)] if items is None
                             else s[torch.as_tensor(users)][:, torch.as_tensor(items)]))(scores)
            ev = evaluate_recommendation(fn, ds, split=split, ks=(10,), protocol="recbole")
            res[split] = {"ndcg@10": ev.summary["ndcg@10"], "recall@10": ev.summary["recall@10"]}
        row = {"scorer": name, **extra, **res}
        print(f"{name:40s} valid NDCG@10 {res['valid']['ndcg@10']:.4f} R@10 {res['valid']['recall@10']:.4f} | "
              f"test NDCG@10 {res['test']['ndcg@10']:.4f} R@10 {res['test']['recall@10']:.4f}", flush=True)
        return row

    t0 = time.process_time()
    rows = [evaluate("popularity", None, {})]
    tr = ds.train
    ui = torch.sparse_coo_tensor(torch.stack([torch.as_tensor(tr.items), torch.as_tensor(tr.users)]),
                                 torch.ones(len(tr)), (n_i, n_u)).coalesce()
    cf = cosine(ui)
    rows.append(evaluate("interaction item-kNN (cosine, train)", cf, {}))
    groups = {"all relations": torch.ones(len(kg), dtype=torch.bool)}
    rows.append(evaluate("KG item-kNN, all relations", cosine(rel_matrix(groups["all relations"])),
                         {"triples": int(len(kg))}))
    for r in range(ds.n_relations):
        m = kg[:, 1] == r
        rows.append(evaluate(f"KG item-kNN, {ds.relations.token(r)}", cosine(rel_matrix(m)),
                             {"relation": ds.relations.token(r), "triples": int(m.sum())}))
    # complementarity: does KG similarity add anything to the interaction kNN?
    people = [ds.relations.index(n) for n in FILM_PEOPLE if n in ds.relations]
    groups["related_to_wikipage"] = kg[:, 1] == ds.relations.index("related_to_wikipage")
    groups["belong_to_category"] = kg[:, 1] == ds.relations.index("belong_to_category")
    groups["film people (7 relations)"] = torch.isin(kg[:, 1], torch.as_tensor(people))
    for gname, m in groups.items():
        sim = cosine(rel_matrix(m))
        for beta in args.betas:
            rows.append(evaluate(f"interaction kNN + {beta} x KG kNN ({gname})", cf + beta * sim,
                                 {"blend": gname, "beta": beta}))
    out_json("signal", {"protocol": PROTOCOL, "what": "training-free item-kNN: score(u, i) = sum over u's seen items j of "
                        "cosine(i, j), cosine over shared KG tails (or co-users); unscored items tie, ties in a seeded "
                        "random order", "cpu_seconds": time.process_time() - t0, "rows": rows})


# ============================================================== grads
def _probe(tr, gen: torch.Generator, item_rows: torch.Tensor) -> dict:
    """Gradients of one fresh rec batch and one fresh KG batch at the current weights (no step;
    the global RNG, which the Gumbel noise uses, is restored afterwards)."""
    cfg, model = tr.cfg, tr.model
    state = torch.get_rng_state()
    n = len(tr.rec_users)
    idx = torch.randint(n, (cfg.batch_size,), generator=gen)
    users, pos = tr.rec_users[idx], tr.rec_items[idx]
    neg = tr.neg_sampler.sample(users, cfg.num_negatives, generator=gen)
    trip = tr.kg_stream.triples[torch.randint(len(tr.kg_stream.triples), (cfg.kg_batch_size,), generator=gen)]
    h, r, t = trip[:, 0], trip[:, 1], trip[:, 2]
    nh, nt = tr.kg_sampler.sample(h, r, t, cfg.num_negatives, generator=gen)
    names = ("entity", "item", "relation", "relation_norm", "preference", "user")
    params = [getattr(model, k).weight for k in names]
    g_rec = torch.autograd.grad(model.rec_loss(users, pos, neg), params, allow_unused=True)
    g_kg = torch.autograd.grad(model.kg_loss(h, r, t, nh, nt), params, allow_unused=True)
    # noise floor of the cosine: a second, independent rec batch and KG batch
    idx2 = torch.randint(n, (cfg.batch_size,), generator=gen)
    u2, p2 = tr.rec_users[idx2], tr.rec_items[idx2]
    g_rec2 = torch.autograd.grad(model.rec_loss(u2, p2, tr.neg_sampler.sample(u2, cfg.num_negatives, generator=gen)),
                                 model.entity.weight)[0]
    trip2 = tr.kg_stream.triples[torch.randint(len(tr.kg_stream.triples), (cfg.kg_batch_size,), generator=gen)]
    h2, r2, t2 = trip2[:, 0], trip2[:, 1], trip2[:, 2]
    g_kg2 = torch.autograd.grad(model.kg_loss(h2, r2, t2, *tr.kg_sampler.sample(h2, r2, t2, cfg.num_negatives, generator=gen)),
                                model.entity.weight)[0]
    torch.set_rng_state(state)
    g_rec = {k: (torch.zeros_like(p) if g is None else g) for k, p, g in zip(names, params, g_rec)}
    g_kg = {k: (torch.zeros_like(p) if g is None else g) for k, p, g in zip(names, params, g_kg)}
    out = {}
    is_item_row = torch.zeros(model.entity.weight.shape[0], dtype=torch.bool)
    is_item_row[item_rows] = True
    ge_rec, ge_kg = g_rec["entity"], g_kg["entity"]
    rn_rec, rn_kg = ge_rec.norm(dim=1), ge_kg.norm(dim=1)
    t_rec, t_kg = (rn_rec > 0) & is_item_row, (rn_kg > 0) & is_item_row
    both = t_rec & t_kg
    out["entity_item_rows"] = {
        "rec_norm": float(ge_rec[is_item_row].norm()), "kg_norm": float(ge_kg[is_item_row].norm()),
        "rec_rows_touched": int(t_rec.sum()), "kg_rows_touched": int(t_kg.sum()), "both_touched": int(both.sum()),
        "rec_row_norm_mean": float(rn_rec[t_rec].mean()) if t_rec.any() else 0.0,
        "kg_row_norm_mean": float(rn_kg[t_kg].mean()) if t_kg.any() else 0.0,
        "cosine_on_shared_rows": float(torch.nn.functional.cosine_similarity(
            ge_rec[both].flatten(), ge_kg[both].flatten(), dim=0)) if both.any() else None,
    }
    cos = lambda a, b, rows: (float(torch.nn.functional.cosine_similarity(a[rows].flatten(), b[rows].flatten(), dim=0))
                              if rows.any() else None)
    both2 = (g_rec2.norm(dim=1) > 0) & t_rec
    out["entity_item_rows"]["cosine_rec_vs_rec2"] = cos(ge_rec, g_rec2, both2)
    out["entity_item_rows"]["cosine_kg_vs_kg2"] = cos(ge_kg, g_kg2, (g_kg2.norm(dim=1) > 0) & t_kg)
    out["entity_item_rows"]["cosine_rec_vs_kg2"] = cos(ge_rec, g_kg2, (g_kg2.norm(dim=1) > 0) & t_rec)
    out["entity_tail_rows"] = {"kg_norm": float(ge_kg[~is_item_row].norm()),
                               "kg_rows_touched": int(((rn_kg > 0) & ~is_item_row).sum())}
    for k in ("item", "relation", "relation_norm", "preference", "user"):
        out[k] = {"rec_norm": float(g_rec[k].norm()), "kg_norm": float(g_kg[k].norm())}
    pr = g_rec["item"].norm(dim=1)
    out["item"]["rec_row_norm_mean"] = float(pr[pr > 0].mean())
    out["item"]["rec_rows_touched"] = int((pr > 0).sum())
    return out


def _r(x):
    return None if x is None else round(x, 3)


def cmd_grads(args) -> None:
    """Instrument the trainer's own epoch loop: probes at chosen steps, and per step kind the
    squared displacement of the shared rows (Adam's actual moves, clipping included)."""
    import ktup.training.trainer as T
    from ktup.training.schedule import joint_loss as real_joint_loss

    torch.set_num_threads(1)
    cfg, ds = load(["model=ktup", "threads=1", f"seed={args.seed}", f"epochs={args.epochs}", "eval_every=1000",
                    "kg_eval=false", *args.set])
    tr = T.Trainer.for_new_run(cfg, ds, out=str(args.out), progress="quiet")
    model = tr.model
    item_rows = torch.as_tensor(item_entity_rows(ds))
    gen = torch.Generator().manual_seed(12345)
    tables = {"entity_item_rows": lambda: model.entity.weight[item_rows], "entity_tail_rows":
              lambda: model.entity.weight[torch.as_tensor(np.setdiff1d(np.arange(ds.n_entities), item_entity_rows(ds)))],
              "item": lambda: model.item.weight, "relation": lambda: model.relation.weight,
              "preference": lambda: model.preference.weight}
    st = {"step": 0, "kind": None, "snap": None}
    moves: list[dict] = []
    probes: list[dict] = []
    touched = {"rec": torch.zeros(ds.n_items, dtype=torch.bool), "kg": torch.zeros(ds.n_items, dtype=torch.bool)}
    ent2item = torch.full((model.entity.weight.shape[0],), -1, dtype=torch.long)
    ie = torch.as_tensor(np.asarray(ds.item_entity))
    ent2item[ie[ie >= 0]] = torch.arange(ds.n_items)[ie >= 0]

    def flush():
        if st["kind"] is not None:
            with torch.no_grad():
                d = {k: float((f() - st["snap"][k]).pow(2).sum()) for k, f in tables.items()}
            moves[-1]["sq"][st["kind"]] = {k: moves[-1]["sq"][st["kind"]].get(k, 0.0) + v for k, v in d.items()}

    def wrapped(m, rec_args, kg_args, lam, kg_weight=1.0):
        flush()
        epoch = tr.epoch + 1
        if not moves or moves[-1]["epoch"] != epoch:
            moves.append({"epoch": epoch, "sq": {"rec": {}, "kg": {}}, "steps": {"rec": 0, "kg": 0}})
            for v in touched.values():
                v.zero_()
        if st["step"] in args.probe_steps:
            probes.append({"step": st["step"], "epoch": epoch, **_probe(tr, gen, item_rows)})
        kind = "rec" if kg_args is None else "kg"
        moves[-1]["steps"][kind] += 1
        if kind == "rec":
            touched["rec"][torch.cat([rec_args[1], rec_args[2].reshape(-1)])] = True
        else:
            ents = torch.cat([kg_args[0], kg_args[2], kg_args[3].reshape(-1), kg_args[4].reshape(-1)])
            it = ent2item[ents]
            touched["kg"][it[it >= 0]] = True
        moves[-1]["touched_items"] = {k: float(v.float().mean()) for k, v in touched.items()}
        with torch.no_grad():
            st["snap"] = {k: f().clone() for k, f in tables.items()}
        st["kind"], st["step"] = kind, st["step"] + 1
        return real_joint_loss(m, rec_args, kg_args, lam, kg_weight)

    T.joint_loss = wrapped
    c0 = time.process_time()
    try:
        tr.run_test = False
        tr.set_callbacks(())
        tr.fit()
        flush()
        probes.append({"step": st["step"], "epoch": tr.epoch, "when": "end of training", **_probe(tr, gen, item_rows)})
    finally:
        T.joint_loss = real_joint_loss
    if args.from_run:   # a fully trained run's best weights
        from ktup import runs
        src = runs.load_run(args.from_run, checkpoint="best")
        model.load_state_dict(src.model.state_dict())
        probes.append({"step": None, "when": f"best checkpoint of {args.from_run}", **_probe(tr, gen, item_rows)})
    for p in probes:
        e = p["entity_item_rows"]
        print(f"step {p['step']!s:>6} {p.get('when', ''):28s} entity(item rows): |g_rec| {e['rec_norm']:.2e} "
              f"|g_kg| {e['kg_norm']:.2e} ratio kg/rec {e['kg_norm'] / max(e['rec_norm'], 1e-30):6.2f}; per row "
              f"rec {e['rec_row_norm_mean']:.2e} ({e['rec_rows_touched']} rows) kg {e['kg_row_norm_mean']:.2e} "
              f"({e['kg_rows_touched']} rows); cos rec/kg {_r(e['cosine_on_shared_rows'])} (rec/rec' {_r(e['cosine_rec_vs_rec2'])}, "
              f"kg/kg' {_r(e['cosine_kg_vs_kg2'])}); "
              f"|g_rec(item)| {p['item']['rec_norm']:.2e}")
    for m in moves:
        r, k = m["sq"]["rec"], m["sq"]["kg"]
        share = {t: k.get(t, 0.0) / max(r.get(t, 0.0) + k.get(t, 0.0), 1e-30) for t in tables}
        print(f"epoch {m['epoch']}: steps rec {m['steps']['rec']} kg {m['steps']['kg']}; share of the squared "
              f"displacement made by KG steps: " + ", ".join(f"{t} {v:.3f}" for t, v in share.items())
              + f"; items touched: rec {m['touched_items']['rec']:.3f}, kg {m['touched_items']['kg']:.3f}")
        m["kg_share_of_sq_displacement"] = share
    out_json(f"grads{args.tag}", {"config_overrides": args.set, "seed": args.seed, "epochs": args.epochs,
                                   "kg_train_triples": int(len(ds.kg_train)), "train_interactions": len(ds.train),
                                   "cpu_seconds": time.process_time() - c0, "probes": probes, "epochs_moves": moves})


# ============================================================== ablate
def cmd_ablate(args) -> None:
    """How much a trained ktup's ranking rests on its entity rows: valid/test NDCG@10 with the
    item side ``ĩ = i + e`` as trained, with ``e`` removed (``ĩ = i``) and with ``i`` removed."""
    from ktup import runs
    from ktup.evaluation.ranking import evaluate_recommendation

    torch.set_num_threads(1)
    rows = []
    for rd in args.runs:
        run = runs.load_run(str(rd), checkpoint="best")
        model, ds = run.model, run.dataset
        rows_e = torch.as_tensor(item_entity_rows(ds))
        with torch.no_grad():
            i_w, e_w = model.item.weight.clone(), model.entity.weight.clone()
            norms = {"item_norm_mean": float(i_w.norm(dim=1).mean()),
                     "entity_norm_mean": float(e_w[rows_e].norm(dim=1).mean()),
                     "enhanced_norm_mean": float(model.item_vectors().norm(dim=1).mean()),
                     "cos_item_entity_mean": float(torch.nn.functional.cosine_similarity(
                         i_w, model.entity(model.item_entity), dim=1).mean())}
        res = {}
        for label in ("as trained", "entity removed", "item removed"):
            with torch.no_grad():
                model.item.weight.copy_(i_w)
                model.entity.weight.copy_(e_w)
                if label == "entity removed":
                    model.entity.weight[rows_e] = 0.0
                elif label == "item removed":
                    model.item.weight.zero_()
            res[label] = {sp: evaluate_recommendation(model, ds, split=sp, ks=(10,), protocol="recbole").summary["ndcg@10"]
                          for sp in ("valid", "test")}
        with torch.no_grad():
            model.item.weight.copy_(i_w)
            model.entity.weight.copy_(e_w)
        rows.append({"run": str(rd), **norms, "ndcg@10": res})
        print(f"{Path(rd).name}: norms i {norms['item_norm_mean']:.3f} e {norms['entity_norm_mean']:.3f} "
              f"i+e {norms['enhanced_norm_mean']:.3f} cos(i, e) {norms['cos_item_entity_mean']:.3f}; NDCG@10 valid/test "
              + "; ".join(f"{k} {v['valid']:.4f}/{v['test']:.4f}" for k, v in res.items()), flush=True)
    out_json("ablate", {"protocol": PROTOCOL, "runs": rows})


# ============================================================== run / collect
def variant_command(name: str, seed: int, runs_dir: Path) -> list[str]:
    if name not in VARIANTS:
        raise SystemExit(f"kg_diagnosis: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    model, sets, init = VARIANTS[name]
    cmd = ["ktup", "train", *DATA, "--model", model, "--seed", str(seed), *BUDGET,
           "--out", str(runs_dir / f"{name}-s{seed}"), "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    if init:
        cmd += ["--init-from", *[str(runs_dir / f"{i}-s{seed}") for i in init]]
    return cmd


def cmd_run(args) -> None:
    for name in args.names:
        cmd = variant_command(name, args.seed, args.runs)
        print(" ".join(shlex.quote(c) for c in cmd), flush=True)
        c0 = time.time()
        rc = subprocess.call([sys.executable, "-m", "ktup", *cmd[1:]], cwd=ROOT)
        (args.runs / f"{name}-s{args.seed}" / "command.txt").write_text(" ".join(shlex.quote(c) for c in cmd) + "\n")
        print(f"{name}: rc {rc}, {time.time() - c0:.0f} s wall", flush=True)


def read_run(path: Path) -> dict | None:
    fin = path / "final.json"
    if not fin.exists():
        return None
    final = json.loads(fin.read_text())
    recs = [json.loads(x) for x in (path / "metrics.jsonl").read_text().splitlines() if x.strip()]
    best = next((r for r in recs if r.get("epoch") == final["best_epoch"] and "valid" in r), {})
    cpu = sum(r.get("train_cpu_seconds", 0.0) for r in recs if "train_cpu_seconds" in r)
    cmdf = path / "command.txt"
    return {"run": path.name, "best_epoch": final["best_epoch"], "epochs": final["epochs"],
            "valid_ndcg@10": best.get("valid", {}).get("ndcg@10"), "valid_recall@10": best.get("valid", {}).get("recall@10"),
            "test_ndcg@10": (final.get("test") or {}).get("ndcg@10"), "test_recall@10": (final.get("test") or {}).get("recall@10"),
            "kg_mrr": (final.get("kg_test") or {}).get("mrr"), "kg_hits@10": (final.get("kg_test") or {}).get("hits@10"),
            "train_cpu_seconds": cpu, "command": cmdf.read_text().strip() if cmdf.exists() else None}


def cmd_collect(args) -> None:
    rows = [r for p in sorted(args.runs.iterdir()) if p.is_dir() and (r := read_run(p)) is not None]
    f = lambda v: "   -   " if v is None else f"{v:.4f}"
    print(f"protocol: {PROTOCOL}")
    print(f"{'run':28s} {'best':>4s} {'vNDCG':>7s} {'vR@10':>7s} {'tNDCG':>7s} {'tR@10':>7s} {'KG MRR':>7s} {'cpu s':>6s}")
    for r in rows:
        print(f"{r['run']:28s} {r['best_epoch']:4d} {f(r['valid_ndcg@10'])} {f(r['valid_recall@10'])} "
              f"{f(r['test_ndcg@10'])} {f(r['test_recall@10'])} {f(r['kg_mrr'])} {r['train_cpu_seconds']:6.0f}")
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["run"].rsplit("-s", 1)[0], []).append(r)
    summary = {}
    print("mean (sd) over seeds")
    for name, rs in groups.items():
        summary[name] = {"seeds": [r["run"].rsplit("-s", 1)[1] for r in rs]}
        for key in ("valid_ndcg@10", "valid_recall@10", "test_ndcg@10", "test_recall@10", "kg_mrr"):
            v = np.array([r[key] for r in rs if r[key] is not None], dtype=float)
            summary[name][key] = None if v.size == 0 else {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if v.size > 1 else None}
        fm = lambda k: ("   -          " if summary[name][k] is None else f"{summary[name][k]['mean']:.4f} ({summary[name][k]['sd'] or 0:.4f})")
        print(f"{name:20s} n={len(rs)} valid NDCG {fm('valid_ndcg@10')} test NDCG {fm('test_ndcg@10')} "
              f"test R@10 {fm('test_recall@10')} KG MRR {fm('kg_mrr')}")
    out_json(f"variants{args.tag}", {"protocol": PROTOCOL, "budget": " ".join(BUDGET), "summary": summary,
                                      "kg_protocol": "link prediction, filtered, on a seeded sample of 1000 KG test triples",
                                      "variants": {k: {"model": m, "set": s, "init_from": i} for k, (m, s, i) in VARIANTS.items()},
                                      "runs": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="part", required=True)
    sub.add_parser("stats")
    sg = sub.add_parser("signal")
    sg.add_argument("--betas", type=float, nargs="*", default=[0.1, 0.3, 1.0])
    g = sub.add_parser("grads")
    g.add_argument("--epochs", type=int, default=2)
    g.add_argument("--seed", type=int, default=2020)
    g.add_argument("--probe-steps", type=int, nargs="*", default=[0, 20, 100, 400, 1000])
    g.add_argument("--set", nargs="*", default=[], help="config overrides (key=value)")
    g.add_argument("--from-run", default=None, help="also probe this trained ktup run's best weights")
    g.add_argument("--out", type=Path, default=Path("/tmp/kg-diagnosis-grads"))
    g.add_argument("--tag", default="")
    a = sub.add_parser("ablate")
    a.add_argument("runs", nargs="+", type=Path)
    r = sub.add_parser("run")
    r.add_argument("names", nargs="+")
    r.add_argument("--seed", type=int, default=2020)
    r.add_argument("--runs", type=Path, default=Path("/tmp/kgdiag/runs"))
    c = sub.add_parser("collect")
    c.add_argument("--runs", type=Path, default=Path("/tmp/kgdiag/runs"))
    c.add_argument("--tag", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    {"stats": cmd_stats, "signal": cmd_signal, "ablate": cmd_ablate, "grads": cmd_grads, "run": cmd_run, "collect": cmd_collect}[args.part](args)


if __name__ == "__main__":
    main()
