"""Cost against size, up to MovieLens-20M scale, on the synthetic generator.

For each size (users, items, interactions, triples) and model (``bpr``; ``ktup`` with hard
induction and squared-L2 distances, the fast KTUP scoring path) it measures, each (size, model)
in a fresh process so peak memory is its own:

* seconds per training epoch (``--update sparse`` row-wise updates by default; settings pinned
  in ``PINNED``: batch 2048, 1 negative — not the shipped defaults, which keep changing). For sizes
  over ``--full-epoch-max`` interactions only the first ``--steps`` steps are timed and the
  epoch is extrapolated from the planned step count (reported as ``epoch_extrapolated``);
* peak resident memory (RSS) of the process: data generation + model + optimiser + training +
  evaluation;
* full-ranking evaluation (all items, seen items masked) of all users with a test item: timed on
  ``--eval-users`` users and extrapolated to all when there are more (``eval_extrapolated``);
* KG link prediction (filtered, both directions) on up to 10k test triples (ktup only).

Usage::

    python benchmarks/scale.py --threads 1           # small, medium, 2m (minutes)
    python benchmarks/scale.py --threads 1 --update dense --sizes medium,2m
    python benchmarks/scale.py --threads 1 --sizes ml20m --full-epoch-max 100000000   # ~15 min
    python benchmarks/scale.py --plot-only           # redraw the table/PNG from the saved JSON
    python benchmarks/scale.py sparse-vs-dense       # ml-100k: sparse vs dense quality and speed

Results: ``benchmarks/results/scale-<date>.json`` (merged across invocations of the same day) and
``benchmarks/results/scale-<date>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: Sizes; ``ml20m`` is the generator's ``synthetic-ml20m`` preset (MovieLens-20M's counts).
SIZES: dict[str, dict] = {
    "small": dict(n_users=500, n_items=300, n_interactions=15_000, n_relations=6, values_per_relation=12, seed=7),
    "medium": dict(n_users=5_000, n_items=3_000, n_interactions=250_000, n_relations=8, values_per_relation=40, seed=7),
    "2m": dict(n_users=20_000, n_items=6_000, n_interactions=2_000_000, n_relations=10, values_per_relation=200,
               values_per_item=3, seed=7),
    "ml20m": dict(n_users=138_493, n_items=26_744, n_interactions=20_000_000, n_relations=12,
                  values_per_relation=800, values_per_item=3, seed=7),
}
MODELS: dict[str, list[str]] = {
    "bpr": ["model=bpr"],
    "ktup": ["model=ktup", "induction=hard", "norm=l2"],
}
#: Training settings pinned so figures stay comparable while the shipped defaults are tuned
#: (the defaults became batch 512 and 4 negatives: 4x the steps per epoch, each with more negatives).
PINNED = ["batch_size=2048", "kg_batch_size=2048", "num_negatives=1", "weight_decay=0", "joint_lambda=0.7",
          "schedule=step", "embedding_size=64"]


# ====================================================================== one measurement
def measure(size: str, model: str, steps: int, full_epoch_max: int, eval_users: int, kg_triples: int,
            threads: int, update: str = "sparse", eval_only: bool = False, shipped: bool = False) -> dict:
    """Generate, train one (possibly partial) epoch, evaluate; runs in its own process."""
    import numpy as np
    import torch

    from ktup.config import Config
    from ktup.data.synthetic import generate
    from ktup.evaluation import evaluate_link_prediction, evaluate_recommendation
    from ktup.training.setup import build_optimizer
    from ktup.training.trainer import Trainer

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    ds = generate(name=f"synthetic-{size}", **SIZES[size])
    gen_s = time.perf_counter() - t0
    cfg = Config()
    mode = {"sparse": ["sparse=true"], "dense": ["sparse=false", "sparse_auto_rows=0"], "auto": []}[update]
    pinned = [] if shipped else PINNED
    cfg.apply_overrides([*MODELS[model], *pinned, *mode, "kg_eval=false", f"threads={threads}"])
    info = {"run_id": "scale", "dataset": size, "status": "running"}
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, ds, Path(tmp), "quiet", info)   # no run directory files: timing only
        tr.optimizer = build_optimizer(tr.cfg, [p for p in tr.model.parameters() if p.requires_grad], sparse=tr.sparse)
        tr.model.train()
        n_train = len(ds.train)
        limit = None if n_train <= full_epoch_max else steps
        if eval_only:
            limit = 2
        tr._run_epoch(max_steps=2)                          # warm-up (allocations, lazy Adam state)
        c0 = time.process_time()
        rec = tr._run_epoch(max_steps=limit)
        cpu = time.process_time() - c0
    done = rec["rec_steps"] + rec["kg_steps"]
    planned = rec.get("planned_steps", done)
    epoch_s = rec["train_seconds"] * planned / done
    out = {"size": size, "model": model, "variant": " ".join(MODELS[model][1:]) or "-",
           "updates": ("sparse" if tr.sparse else "dense") + ("-defaults" if shipped else ""),
           "users": ds.n_users, "items": ds.n_items, "entities": ds.n_entities,
           "interactions": n_train + len(ds.valid) + len(ds.test), "train_interactions": n_train,
           "triples": len(ds.kg_train) + len(ds.kg_valid) + len(ds.kg_test), "train_triples": len(ds.kg_train),
           "generate_s": gen_s, "epoch_steps": planned, "timed_steps": done,
           "epoch_s": epoch_s, "epoch_cpu_s": cpu * planned / done, "epoch_extrapolated": done < planned,
           "ms_per_step": 1000 * rec["train_seconds"] / done, "settings": [*MODELS[model], *pinned],
           "batch_size": cfg.train.batch_size, "num_negatives": cfg.train.num_negatives}
    m = tr.model.eval()
    test_users = np.unique(np.asarray(ds.test.users))
    rng = np.random.default_rng(0)
    if test_users.size <= eval_users:
        t0 = time.perf_counter()
        with torch.no_grad():
            res = evaluate_recommendation(m, ds, "test", ks=(10,))
        ev, fixed = time.perf_counter() - t0, None
    else:
        # Two timings separate the fixed cost (index of seen/held-out items: O(interactions))
        # from the per-user cost, which is then extrapolated to all users.
        small = rng.choice(test_users, 200, replace=False)
        sub = rng.choice(test_users, eval_users, replace=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            evaluate_recommendation(m, ds, "test", ks=(10,), users=small)
        t_small = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.no_grad():
            res = evaluate_recommendation(m, ds, "test", ks=(10,), users=sub)
        t_big = time.perf_counter() - t0
        out.update(eval_timings={"users": [int(small.size), int(sub.size)], "seconds": [t_small, t_big]})
        per_user = (t_big - t_small) / (sub.size - small.size)
        if per_user > 0:
            fixed = max(0.0, t_small - per_user * small.size)
            ev = fixed + per_user * test_users.size
        else:  # the per-user cost drowned in timing noise: the upper bound (fixed cost counted per user)
            fixed, ev = None, t_big * test_users.size / sub.size
        out["eval_upper_bound_s"] = t_big * test_users.size / sub.size
    out.update(eval_users_timed=int(res.n_users), eval_users_all=int(test_users.size), eval_s=ev,
               eval_fixed_s=fixed, eval_extrapolated=res.n_users < test_users.size,
               test_ndcg10_subset=float(res.summary["ndcg@10"]))
    if m.uses_kg:
        t0 = time.perf_counter()
        with torch.no_grad():
            lp = evaluate_link_prediction(m, ds, "test", filtered=True, max_triples=kg_triples)
        out.update(kg_eval_s=time.perf_counter() - t0, kg_triples=min(kg_triples, len(ds.kg_test)),
                   kg_mrr=float(lp.summary.get("mrr", float("nan"))))
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    out["threads"] = torch.get_num_threads()
    return out


# ====================================================================== orchestration
def results_path(ext: str) -> Path:
    return RESULTS / f"scale-{time.strftime('%Y-%m-%d')}.{ext}"


def run_child(args, size: str, model: str) -> dict:
    cmd = [sys.executable, __file__, "--one", size, model, "--steps", str(args.steps),
           "--full-epoch-max", str(args.full_epoch_max), "--eval-users", str(args.eval_users),
           "--kg-triples", str(args.kg_triples), "--threads", str(args.threads), "--update", args.update]
    if args.eval_only:
        cmd.append("--eval-only")
    if args.shipped_defaults:
        cmd.append("--shipped-defaults")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"{size}/{model} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def load_rows(path: Path) -> list[dict]:
    if path.exists():
        return json.loads(path.read_text())["rows"]
    return []


def save_rows(path: Path, rows: list[dict]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    order = list(SIZES)
    rows = sorted(rows, key=lambda r: (order.index(r["size"]), r["model"], r.get("updates", "")))
    meta = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "load_avg_at_save": os.getloadavg(), "note": "shared 2-core machine under load from other jobs; "
            "wall times are pessimistic, *_cpu_s is the process's own CPU time"}
    path.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def table(rows: list[dict]) -> str:
    head = (f"{'size':7s} {'model':5s} {'upd.':6s} {'users':>7s} {'items':>6s} {'inter.':>11s} {'triples':>9s} "
            f"{'epoch s':>9s} {'cpu s':>8s} {'ms/step':>8s} {'RSS GB':>7s} {'eval s':>9s} {'KG 10k s':>9s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ep = f"{r['epoch_s']:.1f}{'*' if r['epoch_extrapolated'] else ''}"
        evs = f"{r['eval_s']:.1f}{'*' if r['eval_extrapolated'] else ''}"
        kg = f"{r['kg_eval_s']:.1f}" if "kg_eval_s" in r else "-"
        lines.append(f"{r['size']:7s} {r['model']:5s} {r.get('updates', '?'):6s} {r['users']:>7d} {r['items']:>6d} {r['interactions']:>11,d} "
                     f"{r['triples']:>9,d} {ep:>9s} {r['epoch_cpu_s']:>8.1f} {r['ms_per_step']:>8.1f} "
                     f"{r['peak_rss_gb']:>7.2f} {evs:>9s} {kg:>9s}")
    lines.append("* extrapolated: epoch from the first timed steps; eval from a user subset (see JSON)")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for model in dict.fromkeys((r["model"], r.get("updates", "sparse")) for r in rows):
        rs = sorted((r for r in rows if (r["model"], r.get("updates", "sparse")) == model), key=lambda r: r["interactions"])
        model = f"{model[0]} {model[1]}"
        x = [r["interactions"] for r in rs]
        axes[0].plot(x, [r["epoch_s"] for r in rs], "o-", label=f"{model} epoch (wall)")
        axes[0].plot(x, [r["epoch_cpu_s"] for r in rs], "x--", label=f"{model} epoch (CPU)")
        axes[1].plot(x, [r["peak_rss_gb"] for r in rs], "o-", label=model)
        axes[2].plot(x, [r["eval_s"] for r in rs], "o-", label=f"{model} full ranking, all users")
        if any("kg_eval_s" in r for r in rs):
            axes[2].plot(x, [r.get("kg_eval_s", float("nan")) for r in rs], "s--", label=f"{model} KG 10k triples")
    axes[0].axhline(600, color="grey", lw=0.8, ls=":")
    axes[1].axhline(8, color="grey", lw=0.8, ls=":")
    axes[2].axhline(600, color="grey", lw=0.8, ls=":")
    for ax, title, unit in zip(axes, ("training epoch", "peak RSS", "evaluation"), ("seconds", "GB", "seconds")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=7)
    fig.suptitle("ktup cost against size (synthetic; dotted: targets 10 min / 8 GB)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ====================================================================== sparse vs dense
def sparse_vs_dense(models: list[str], epochs: dict[str, int], threads: int) -> list[dict]:
    """ml-100k (RecBole's split): the same training dense and sparse; valid/test NDCG@10 and speed."""
    import statistics

    from ktup.config import Config
    from ktup.training import train

    plan: dict[str, list[str]] = {}  # the shipped defaults (tuned on ml-100k), sparse on/off only
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            for sparse in (False, True):
                cfg = Config()
                sets = ["dataset=ml-100k-recbole-split", "split=given", f"model={model}", *plan.get(model, []),
                        f"epochs={epochs[model]}", f"eval_every={epochs[model]}", "patience=0", "kg_eval=false",
                        f"sparse={sparse}", "sparse_auto_rows=0", f"threads={threads}"]
                cfg.apply_overrides(sets)
                d = Path(tmp) / f"{model}-{sparse}"
                run = train(cfg, out=str(d), progress="quiet")
                ep = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
                ep = [r for r in ep if not r.get("final")]
                row = {"model": model, "sparse": sparse, "epochs": epochs[model],
                       "sec_per_epoch": statistics.median(r["train_seconds"] for r in ep),
                       "cpu_sec_per_epoch": statistics.median(r["train_cpu_seconds"] for r in ep),
                       "valid_ndcg@10": ep[-1]["valid"]["ndcg@10"], "test_ndcg@10": run.final["test"]["ndcg@10"],
                       "test_recall@10": run.final["test"]["recall@10"], "overrides": sets}
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


# ====================================================================== main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="scale", choices=("scale", "sparse-vs-dense"))
    ap.add_argument("--sizes", default="small,medium,2m")
    ap.add_argument("--models", default="bpr,ktup")
    ap.add_argument("--steps", type=int, default=400, help="steps timed when an epoch is extrapolated")
    ap.add_argument("--full-epoch-max", type=int, default=2_500_000,
                    help="train a whole epoch up to this many interactions, else time --steps and extrapolate")
    ap.add_argument("--eval-users", type=int, default=5000, help="users timed for full ranking (extrapolated)")
    ap.add_argument("--kg-triples", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--update", default="sparse", choices=("sparse", "dense", "auto"),
                    help="row-wise sparse updates (default), dense, or the train.sparse_auto_rows rule")
    ap.add_argument("--epochs", default="bpr=20,ktup=10", help="sparse-vs-dense epochs per model")
    ap.add_argument("--eval-only", action="store_true",
                    help="re-measure evaluation only; keep the saved training figures of each row")
    ap.add_argument("--shipped-defaults", action="store_true",
                    help="train with the shipped defaults instead of the pinned settings (rows 'sparse-defaults')")
    ap.add_argument("--one", nargs=2, metavar=("SIZE", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--plot-only", action="store_true")
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], a.steps, a.full_epoch_max, a.eval_users, a.kg_triples,
                                 a.threads, a.update, a.eval_only, a.shipped_defaults)))
        return 0
    if a.what == "sparse-vs-dense":
        epochs = {k: int(v) for k, v in (x.split("=") for x in a.epochs.split(","))}
        rows = sparse_vs_dense(a.models.split(","), epochs, a.threads)
        RESULTS.mkdir(parents=True, exist_ok=True)
        p = RESULTS / f"sparse-vs-dense-{time.strftime('%Y-%m-%d')}-shipped-defaults.json"
        p.write_text(json.dumps({"load_avg": os.getloadavg(), "note": "ml-100k-recbole-split, shipped defaults "
                                 "(incl. weight_decay: lazy under sparse), evaluation at the last epoch only",
                                 "rows": rows}, indent=1) + "\n")
        print(f"wrote {p}")
        return 0
    path = results_path("json")
    rows = load_rows(path)
    if not a.plot_only:
        for size in a.sizes.split(","):
            for model in a.models.split(","):
                r = run_child(a, size, model)
                old = [x for x in rows if (x["size"], x["model"], x.get("updates")) == (size, model, r["updates"])]
                if a.eval_only and old:  # keep the training figures, take the new evaluation ones
                    keep = {k: v for k, v in old[0].items() if not k.startswith(("eval", "kg_", "test_ndcg"))}
                    r = {**r, **keep, "peak_rss_gb": max(old[0]["peak_rss_gb"], r["peak_rss_gb"])}
                rows = [x for x in rows if (x["size"], x["model"], x.get("updates")) != (size, model, r["updates"])] + [r]
                save_rows(path, rows)
                print(f"{size}/{model}: epoch {r['epoch_s']:.1f}s, RSS {r['peak_rss_gb']:.2f} GB, "
                      f"eval {r['eval_s']:.1f}s", flush=True)
    rows = load_rows(path)
    print(table(rows))
    plot(rows, results_path("png"))
    print(f"wrote {path} and {results_path('png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
