"""Quality benchmark: bpr, tup, transh and ktup on RecBole's ml-100k split, several seeds.

    python benchmarks/quality.py                       # full: 4 models x 3 seeds (see time below)
    python benchmarks/quality.py --quick               # smoke: 1 seed, 3 epochs each (~3 min)
    python benchmarks/quality.py --models bpr ktup --seeds 2020 2021 2022 --epochs 40
    python benchmarks/quality.py --dataset ml1m-dbpedia --models ktup --seeds 2020 --epochs 15 --tag ml1m-ktup
    python benchmarks/quality.py --tuned --models ktup bpr --trials 8 --epochs 20 --threads 1   # tuned, equal budget

Expected time on 2 CPU cores (measured 2026-11-28, torch 2.13, embedding 64, shipped defaults,
one torch thread per process): per seed bpr ~0.7 min, tup ~2 min, transh ~0.7 min, ktup ~4 min
(s/epoch: bpr 0.5, tup 1.2, transh 1.0, ktup 2.3; best epochs at the shipped lr 1e-3: ktup 72-84,
bpr 63-82). A full run (4 models x 3 seeds) takes ~25 min in one process, ~15 min as two parallel
groups; ``--quick`` (1 seed, 3 epochs each) ~1 min. Every model is capped in epochs
(``SETTINGS``; ``--epochs N`` caps all at N), so the time is bounded: at most about
3 seeds x (200 x 0.5 + 150 x 1.2 + 30 x 1 + 150 x 2.3) s plus evaluations.
Run model groups in parallel with ``--tag`` and combine them with ``--merge``.

Protocol: ``recbole`` (docs/PROTOCOLS.md): full ranking over all items, train (+valid at test
time) items masked, the test split of ``ml-100k-recbole-split``, the best-valid checkpoint.
Recommendation models are selected on valid NDCG@10; transh on valid link-prediction MRR and
reported with filtered test link-prediction MRR / Hits@10 instead of ranking metrics.

``ktup`` and ``tup`` use the defaults ``ktup train`` ships (src/ktup/config.py) except the epoch cap
and evaluation cadence (``SETTINGS``: they bound the time; best epochs were 60-84, inside the
150-epoch cap). bpr uses its own best of the same tuning budget (benchmarks/tuning/RESULTS.md). KG link
prediction (transh, ktup) is filtered, on a fixed random 1,000 of the valid/test triples (``kg_eval_max_triples``).
Writes ``benchmarks/results/quality-<date>.json`` (every run, means, std, versions, the exact
command) and ``quality-<date>.png`` (bar chart with the seed-to-seed std as error bars).

``--tuned`` (fair comparison at an equal tuning budget): for every model, ``ktup tune`` on the
valid split with the same trial budget (``--trials``), the same pruner (``--pruner``), the same
epoch cap (``--epochs``), evaluation cadence and patience (``TUNED_COMMON``) and the model's own
default search space (``ktup.tuning.spaces``); then the best configuration is retrained with the
seeds (``--seeds``: the first seed and the next ones, as ``ktup tune --seeds K``) and evaluated once
on test. Studies live in ``--study-dir`` (resumable: rerun the same command). Writes
``quality-<date>-tuned.json`` with the studies (best parameters, trial states, time) besides the runs.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DATASET = "ml-100k-recbole-split"
REC_METRICS = ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10")
KG_METRICS = ("mrr", "hits@10")
RESULTS = Path(__file__).resolve().parent / "results"

#: Per-model settings on top of the shipped defaults (tuned on valid NDCG@10; see
#: benchmarks/tuning/RESULTS.md). ktup is deliberately empty: it runs on the defaults.
SETTINGS: dict[str, dict[str, object]] = {
    # bpr's own best of its 39 trials (lr 2e-3, L2 3e-5, 8 negatives, batch 512, patience 15; 3-seed valid)
    "bpr": {"lr": 2e-3, "weight_decay": 3e-5, "num_negatives": 8, "epochs": 200, "patience": 15, "eval_every": 1},
    # tup and ktup: the shipped defaults; only the epoch cap / evaluation cadence bound the time
    "tup": {"epochs": 150, "eval_every": 2, "patience": 10},
    "transh": {"epochs": 30, "eval_every": 10, "patience": 2, "kg_eval_max_triples": 1000},
    "ktup": {"epochs": 150, "eval_every": 2, "patience": 10, "kg_eval_max_triples": 1000},
    # the paper's KG baselines (issue 15), shipped defaults, on a small fixed budget (CPU-bound
    # session: see the README results); kgat trains on batches of 2048 (RecBole's default batch)
    # because each step propagates over the whole collaborative KG
    "transr": {"epochs": 10, "eval_every": 5, "patience": 2, "kg_eval_max_triples": 1000},
    "cke": {"epochs": 20, "eval_every": 2, "patience": 5, "kg_eval_max_triples": 1000},
    "cfkg": {"epochs": 20, "eval_every": 2, "patience": 5, "kg_eval_max_triples": 1000},
    "kgat": {"epochs": 10, "batch_size": 2048, "eval_every": 2, "patience": 5, "kg_eval_max_triples": 1000},
}


#: --tuned: the settings every model shares (besides the epoch cap), so the budget is the same.
TUNED_COMMON: dict[str, object] = {"eval_every": 1, "patience": 5}
#: --tuned: per-model settings that only bound the final KG evaluation (not the search)
TUNED_EXTRA: dict[str, dict[str, object]] = {"ktup": {"kg_eval_max_triples": 1000},
                                             "transh": {"kg_eval_max_triples": 1000}}


def run_tuned(args, seeds: list[int], epochs: int) -> tuple[list[dict], dict]:
    """Tune every model with the same budget, then confirm its best configuration with the seeds."""
    from ktup.tuning import TuneOptions, tune

    runs: list[dict] = []
    studies: dict[str, dict] = {}
    for model in args.models:
        sets = [f"{k}={v}" for k, v in {**TUNED_COMMON, **TUNED_EXTRA.get(model, {})}.items()]
        sets += [f"epochs={epochs}", f"seed={seeds[0]}"]
        if args.threads:
            sets.append(f"threads={args.threads}")
        sets += args.extra
        opts = TuneOptions(model=model, dataset=args.dataset, data_dir=args.data_dir, trials=args.trials,
                           pruner=args.pruner, folder=str(Path(args.study_dir) / model), overrides=sets,
                           seeds=len(seeds), keep="best", timeout=args.tune_timeout,
                           warmup_epochs=args.warmup_epochs, startup_trials=args.startup_trials,
                           space=args.space)
        t0 = time.perf_counter()
        summary = tune(opts)
        conf = summary.get("confirmation") or {"runs": []}
        studies[model] = {k: summary.get(k) for k in ("study", "best_trial", "best_value", "best_params",
                                                     "trials", "seconds", "space", "overrides", "objective")}
        studies[model]["confirm_protocol"] = conf.get("protocol")
        studies[model]["wall_seconds"] = time.perf_counter() - t0
        for r in conf["runs"]:
            rows = [json.loads(x) for x in (Path(r["run_dir"]) / "metrics.jsonl").read_text().splitlines() if x.strip()]
            ep = [x for x in rows if not x.get("final")]
            runs.append({"model": model, "seed": r["seed"], "overrides": sets + [f"{k}={v}" for k, v in
                                                                               (summary.get("best_params") or {}).items()],
                         "epochs_run": len(ep), "best_epoch": r["best_epoch"], "best_valid": r["best_valid"],
                         "valid_metric": "ndcg@10",
                         "sec_per_epoch": statistics.fmean(x["train_seconds"] for x in ep) if ep else None,
                         "test": r["test"], "kg_test": None if not r.get("kg_test") else
                         {k: r["kg_test"][k] for k in ("mr", *KG_METRICS) if k in r["kg_test"]}})
    return runs, studies


def run_one(model: str, seed: int, epochs: int | None, extra: list[str], workdir: Path,
            data_dir: str | None = None) -> dict:
    """Train one model with one seed; return its final metrics and timing."""
    from ktup.config import Config
    from ktup.training import train

    cfg = Config()
    sets = [f"dataset={DATASET}", f"model={model}", f"seed={seed}"]
    sets += [f"{k}={v}" for k, v in SETTINGS.get(model, {}).items()]
    if epochs is not None:
        sets.append(f"epochs={epochs}")
    if data_dir:
        sets.append(f"data_dir={data_dir}")
    if model in ("ktup", "transh"):
        sets.append("kg_eval=true")
    sets += extra
    cfg.apply_overrides(sets)
    out = workdir / f"{model}-{seed}"
    t0 = time.perf_counter()
    run = train(cfg, out=str(out), progress="quiet")
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    epochs_rows = [r for r in rows if not r.get("final")]
    f = run.final
    rec = {"model": model, "seed": seed, "overrides": sets, "epochs_run": f.get("epochs"),
           "best_epoch": f.get("best_epoch"), "best_valid": f.get("best_valid"),
           "valid_metric": f.get("valid_metric"),
           "sec_per_epoch": statistics.fmean(r["train_seconds"] for r in epochs_rows) if epochs_rows else None,
           "wall_seconds": wall, "test": f.get("test"), "kg_test": None}
    if f.get("kg_test"):
        rec["kg_test"] = {k: f["kg_test"][k] for k in ("mr", *KG_METRICS) if k in f["kg_test"]}
    return rec


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Mean and (sample) std per model and metric."""
    out: dict[str, dict] = {}
    for model in dict.fromkeys(r["model"] for r in runs):
        rs = [r for r in runs if r["model"] == model]
        row: dict[str, dict] = {}
        keys = [("test", m) for m in REC_METRICS] + [("kg_test", m) for m in KG_METRICS] + \
               [(None, "sec_per_epoch"), (None, "best_epoch")]
        for sect, m in keys:
            vals = [(r[sect] or {}).get(m) if sect else r.get(m) for r in rs]
            vals = [float(v) for v in vals if v is not None]
            if vals:
                name = m if sect != "kg_test" else f"kg_{m}"
                row[name] = {"mean": statistics.fmean(vals),
                             "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "n": len(vals)}
        out[model] = row
    return out


def print_table(summary: dict[str, dict]) -> None:
    cols = [*REC_METRICS, "kg_mrr", "kg_hits@10", "sec_per_epoch", "best_epoch"]
    print(f"{'model':8s} " + " ".join(f"{c:>17s}" for c in cols))
    for model, row in summary.items():
        cells = []
        for c in cols:
            v = row.get(c)
            if v is None:
                cells.append(f"{'-':>17s}")
            elif c in ("sec_per_epoch", "best_epoch"):
                cells.append(f"{v['mean']:>9.1f} ± {v['std']:<5.1f}")
            else:
                cells.append(f"{v['mean']:>8.4f} ± {v['std']:.4f}")
        print(f"{model:8s} " + " ".join(cells))


def plot(summary: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in summary if "ndcg@10" in summary[m]]
    if not models:
        return
    metrics = ["recall@10", "ndcg@10", "mrr@10", "precision@10"]
    x = np.arange(len(metrics))
    w = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for j, m in enumerate(models):
        means = [summary[m][k]["mean"] for k in metrics]
        stds = [summary[m][k]["std"] for k in metrics]
        ax.bar(x + (j - (len(models) - 1) / 2) * w, means, w, yerr=stds, capsize=3, label=m)
    if DATASET.startswith("ml-100k"):   # the RecBole reference line belongs to ml-100k only
        ax.axhline(0.2668, color="grey", ls=":", lw=1)
        ax.text(len(metrics) - 0.5, 0.2668, "RecBole BPR NDCG@10", fontsize=7, va="bottom", ha="right", color="grey")
    ax.set_xticks(x, metrics)
    ax.set_ylabel("test (protocol recbole)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def versions() -> dict[str, str]:
    import ktup

    return {"ktup": getattr(ktup, "__version__", "?"), "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_threads": str(torch.get_num_threads())}


def merge(paths: list[str], out: Path, tag: str) -> int:
    """Combine the runs of several result files (model groups run in parallel) into one."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for part in parts for r in part["runs"]]
    summary = summarise(runs)
    seeds = sorted({r["seed"] for r in runs})
    print(f"protocol recbole, {DATASET} test split, seeds {seeds}, mean ± std over seeds")
    print_table(summary)
    date = _dt.date.today().isoformat()
    suffix = f"-{tag}" if tag else ""
    payload = {"benchmark": "quality", "date": date, "dataset": DATASET, "protocol": "recbole",
               "command": [p["command"] for p in parts], "merged_from": [str(p) for p in paths], "seeds": seeds,
               "settings": parts[0].get("settings"), "versions": parts[0].get("versions"),
               "total_seconds": sum(p.get("total_seconds", 0) for p in parts), "summary": summary, "runs": runs}
    out.mkdir(parents=True, exist_ok=True)
    jpath, ppath = out / f"quality-{date}{suffix}.json", out / f"quality-{date}{suffix}.png"
    jpath.write_text(json.dumps(payload, indent=2) + "\n")
    plot(summary, ppath, f"{DATASET}, protocol recbole, {len(seeds)} seed(s): mean ± std")
    print(f"wrote {jpath} and {ppath}")
    return 0


def main(argv: list[str] | None = None) -> int:
    global DATASET
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default=DATASET, help=f"dataset name or path (default {DATASET}; "
                    "a pre-split dataset such as ml1m-dbpedia is evaluated on its own split)")
    ap.add_argument("--models", nargs="+", default=["bpr", "tup", "transh", "ktup"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[2020, 2021, 2022])
    ap.add_argument("--epochs", type=int, default=None, help="cap every model at N epochs (bounds the time)")
    ap.add_argument("--quick", action="store_true", help="smoke test: first seed only, 3 epochs each")
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override applied to every model (repeatable)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--out", default=str(RESULTS), help="directory for the JSON and PNG")
    ap.add_argument("--keep-runs", default=None, help="keep the run directories here (default: temporary)")
    ap.add_argument("--label", default=None,
                    help="name the runs LABEL instead of the model name in the table (one model; e.g. an ablation)")
    ap.add_argument("--tag", default="", help="suffix of the output names (e.g. to run model groups in parallel)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="no training: merge earlier quality-*.json files into one table, JSON and chart")
    ap.add_argument("--data-dir", default=None, help="folder holding ml-100k-recbole-split (default: the cache)")
    ap.add_argument("--tuned", action="store_true",
                    help="tune every model with ktup tune (equal budget) and confirm the best with the seeds")
    ap.add_argument("--trials", type=int, default=20, help="--tuned: trial budget per model")
    ap.add_argument("--pruner", default="median", choices=("median", "halving", "none"), help="--tuned: pruner")
    ap.add_argument("--warmup-epochs", type=int, default=0, help="--tuned: median pruner, epochs before pruning")
    ap.add_argument("--startup-trials", type=int, default=3, help="--tuned: median pruner, trials before pruning")
    ap.add_argument("--tune-timeout", type=float, default=None, help="--tuned: seconds per study (no new trial after)")
    ap.add_argument("--space", default=None, help="--tuned: one YAML search space for every model "
                    "(e.g. benchmarks/tuning/space-lr-wd.yaml; default: each model's own space)")
    ap.add_argument("--study-dir", default="tuning/quality", help="--tuned: folder of the studies (resumable)")
    args = ap.parse_args(argv)
    DATASET = args.dataset
    if args.merge:
        return merge(args.merge, Path(args.out), args.tag)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.label and len(args.models) != 1:
        ap.error("--label needs exactly one --models entry")
    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = 3 if args.quick and args.epochs is None else args.epochs

    t0 = time.perf_counter()
    runs: list[dict] = []
    studies = None
    if args.tuned:
        if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
            ap.error("--tuned retrains with consecutive seeds (as ktup tune --seeds K): give e.g. --seeds 2020 2021 2022")
        epochs = epochs or 30
        runs, studies = run_tuned(args, seeds, epochs)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep_runs or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for model in ([] if args.tuned else args.models):
            for seed in seeds:
                r = run_one(model, seed, epochs, args.extra, workdir, args.data_dir)
                if args.label:
                    r["model"], r["model_class"] = args.label, model
                runs.append(r)
                t = r["test"] or {}
                kg = r["kg_test"] or {}
                print(f"{model:7s} seed {seed}: ndcg@10 {t.get('ndcg@10', float('nan')):.4f} "
                      f"recall@10 {t.get('recall@10', float('nan')):.4f} kg mrr {kg.get('mrr', float('nan')):.4f} "
                      f"best epoch {r['best_epoch']}/{r['epochs_run']} ({r['sec_per_epoch'] or 0:.1f} s/epoch, "
                      f"{r['wall_seconds']:.0f} s)", flush=True)
    summary = summarise(runs)
    if args.tuned:
        print(f"\ntuned with ktup tune: {args.trials} trials per model, pruner {args.pruner}, epoch cap "
              f"{epochs}; best configuration retrained with each seed")
    dataset = args.dataset if args.tuned else DATASET
    print(f"\nprotocol recbole, {dataset} test split, seeds {seeds}, mean ± std over seeds")
    print_table(summary)
    total = time.perf_counter() - t0
    print(f"total {total:.0f} s")

    date = _dt.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ("-quick" if args.quick else "") + ("-tuned" if args.tuned else "") + (f"-{args.tag}" if args.tag else "")
    payload = {"benchmark": "quality", "date": date, "dataset": dataset, "protocol": "recbole",
               "command": " ".join([Path(sys.executable).name, *sys.argv]), "seeds": seeds,
               "settings": SETTINGS if not args.tuned else {"common": TUNED_COMMON, "extra": TUNED_EXTRA,
                                                            "epochs": epochs, "dataset": args.dataset},
               "versions": versions(), "total_seconds": total, "summary": summary, "runs": runs}
    if args.tuned:
        payload["tuning"] = {"trials_per_model": args.trials, "pruner": args.pruner, "objective": "valid ndcg@10",
                             "pruner_warmup_epochs": args.warmup_epochs, "pruner_startup_trials": args.startup_trials,
                             "sampler": "TPE (seed 0)", "studies": studies,
                             "confirmation": f"best configuration x seeds {seeds}, test evaluated once per seed"}
    jpath = out / f"quality-{date}{suffix}.json"
    jpath.write_text(json.dumps(payload, indent=2) + "\n")
    ppath = out / f"quality-{date}{suffix}.png"
    plot(summary, ppath, f"{dataset}, protocol recbole, {len(seeds)} seed(s): mean ± std"
         + (f", tuned ({args.trials} trials each)" if args.tuned else ""))
    print(f"wrote {jpath} and {ppath}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
