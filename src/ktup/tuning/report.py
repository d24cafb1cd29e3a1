"""What a study leaves in its folder, and the multi-seed confirmation of its best configuration.

``best.yaml`` (a full config ``ktup train --config`` takes as it is), ``trials.csv`` (one row per
trial; also printed), ``plots/history.png``, ``plots/importance.png``, ``plots/contour.png``
(Optuna's matplotlib plots, no browser), ``summary.json``; with ``--seeds K`` also
``confirm/seed-<S>/`` run directories and the test mean ± std in ``summary.json``.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

from ktup.config import Config
from ktup.errors import KtupError

CONFIRM_PROTOCOL = ("best configuration of the study retrained with K seeds (train.seed = S, S+1, ...; the study's "
                    "data split fixed by data.split_seed), each with early stopping on valid, the best-valid "
                    "checkpoint evaluated once on test; mean ± sample std over seeds")


def best_config(study, base: Config) -> Config:
    cfg = base.copy()
    for key, value in study.best_trial.params.items():
        cfg.set(key, value, source=f"study {study.study_name}")
    cfg.validate()
    return cfg


def trial_rows(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name.lower(),
               "value": None if t.value is None or not math.isfinite(t.value) else t.value,
               "best_epoch": t.user_attrs.get("best_epoch"), "epochs": t.user_attrs.get("epochs"),
               "last_reported_epoch": t.last_step,
               "seconds": None if t.user_attrs.get("seconds") is None else round(t.user_attrs["seconds"], 1)}
        row.update(t.params)
        row["note"] = t.user_attrs.get("error") or t.user_attrs.get("reason") or ""
        row["run_dir"] = t.user_attrs.get("run_dir", "")
        rows.append(row)
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow(r)


def format_table(rows: list[dict[str, Any]], metric: str) -> str:
    if not rows:
        return "(no trials)"
    params = [k for k in rows[0] if "." in k]
    for r in rows:
        params += [k for k in r if "." in k and k not in params]
    head = ["trial", "state", f"valid {metric}", "epoch best/run", *[p.split(".", 1)[1] for p in params], "s", "note"]
    lines = []
    for r in rows:
        cells = [str(r["trial"]), r["state"], "-" if r["value"] is None else f"{r['value']:.4f}",
                 f"{r['best_epoch'] or '-'}/{r['epochs'] or r['last_reported_epoch'] or '-'}"]
        cells += [_fmt(r.get(p)) for p in params]
        cells += ["-" if r["seconds"] is None else f"{r['seconds']:.0f}", r["note"][:60]]
        lines.append(cells)
    widths = [max(len(h), *(len(c[i]) for c in lines)) for i, h in enumerate(head)]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    out += ["  ".join(c.ljust(w) for c, w in zip(cells, widths)) for cells in lines]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_plots(study, folder: Path) -> list[str]:
    """History, importances and the contour of the two most important parameters (what the
    trials allow: importances need 2 complete trials, the contour 2 parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna
    from optuna.visualization import matplotlib as ovm

    out = folder / "plots"
    out.mkdir(exist_ok=True)
    written = []

    def save(name: str, draw) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            fig.set_size_inches(max(fig.get_size_inches()[0], 7), max(fig.get_size_inches()[1], 5))
            fig.tight_layout()
            fig.savefig(out / name, dpi=100)
            plt.close(fig)
            written.append(name)
        except Exception:  # noqa: BLE001 - too few trials for this plot: skip it
            plt.close("all")

    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if complete:
        save("history.png", lambda: ovm.plot_optimization_history(study))
    if len(complete) >= 2:
        save("importance.png", lambda: ovm.plot_param_importances(study))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                top = list(optuna.importance.get_param_importances(study))[:2]
        except Exception:  # noqa: BLE001
            top = []
        if len(top) == 2:
            save("contour.png", lambda: ovm.plot_contour(study, params=top))
    return written


def write_summary(folder: Path, summary: dict[str, Any]) -> None:
    (folder / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")


def write_outputs(study, opts, base: Config, space, folder: Path, seconds: float) -> dict[str, Any]:
    from ktup.tuning.spaces import space_to_dict

    from ktup.tuning.study import objective_metric

    metric = objective_metric(base)
    rows = trial_rows(study)
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(rows, folder / "trials.csv")
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    summary: dict[str, Any] = {
        "study": study.study_name, "storage": opts.storage_url(base), "model": opts.model,
        "dataset": str(base.data.dataset), "objective": f"valid {metric}", "direction": study.direction.name.lower(),
        "budget_trials": opts.trials, "pruner": opts.pruner, "space": space_to_dict(space),
        "overrides": list(opts.overrides), "trials": states, "seconds": round(seconds, 1),
        "test_evaluated_during_search": False}
    if not opts.quiet:
        print(format_table(rows, metric))
    try:
        best = study.best_trial
    except ValueError:
        best = None
    if best is None:
        if not opts.quiet:
            print(f"no complete trial in study {study.study_name}: no best configuration")
        write_summary(folder, summary)
        return summary
    cfg = best_config(study, base)
    header = (f"# ktup tune: best of study {study.study_name} (trial {best.number}, valid {metric} {best.value:.4f});\n"
              f"# train it with: ktup train --config {folder / 'best.yaml'}\n")
    (folder / "best.yaml").write_text(header + cfg.to_yaml(), encoding="utf-8")
    summary.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                   best_run_dir=best.user_attrs.get("run_dir"), best_config=str(folder / "best.yaml"))
    summary["plots"] = write_plots(study, folder)
    write_summary(folder, summary)
    if not opts.quiet:
        print(f"best: trial {best.number}, valid {metric} {best.value:.4f}: "
              + " ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
        print(f"wrote {folder / 'best.yaml'}, {folder / 'trials.csv'}, {folder / 'summary.json'}"
              + (f", plots/{{{','.join(summary['plots'])}}}" if summary["plots"] else ""))
    return summary


def confirm(study, opts, base: Config, folder: Path) -> dict[str, Any]:
    """Retrain the best configuration with ``opts.seeds`` seeds and report test mean ± std.

    Each seed is a normal run in ``confirm/seed-<S>``; a finished one is reused and an unfinished
    one resumed, so an interrupted confirmation continues where it stopped."""
    from ktup.training import train
    from ktup.runs import read_json

    try:
        cfg = best_config(study, base)
    except ValueError:
        raise KtupError(f"study {study.study_name}: no complete trial to confirm") from None
    runs: list[dict[str, Any]] = []
    for i in range(opts.seeds):
        seed = cfg.train.seed + i
        c = cfg.copy()
        c.set("train.seed", seed)
        out = folder / "confirm" / f"seed-{seed}"
        info = read_json(out / "run.json") if (out / "run.json").exists() else {}
        if info.get("status") == "finished" and (out / "final.json").exists():
            final = json.loads((out / "final.json").read_text(encoding="utf-8"))
        elif (out / "checkpoints").is_dir():
            final = train(None, resume=str(out), progress="quiet").final
        else:
            final = train(c, out=str(out), progress="quiet").final
        runs.append({"seed": seed, "run_dir": str(out), "best_epoch": final.get("best_epoch"),
                     "best_valid": final.get("best_valid"), "test": final.get("test"),
                     "kg_test": final.get("kg_test"), "protocol": final.get("protocol")})
        if not opts.quiet:
            t = final.get("test") or {}
            print(f"confirm seed {seed}: best epoch {final.get('best_epoch')}, valid {final.get('best_valid'):.4f}, "
                  + "test " + " ".join(f"{k} {v:.4f}" for k, v in t.items() if k in ("ndcg@10", "recall@10")))
    stats: dict[str, dict[str, float]] = {}
    for key in sorted({k for r in runs for k in (r["test"] or {})}):
        vals = [float(r["test"][key]) for r in runs if r["test"] and key in r["test"]]
        stats[key] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                      "n": len(vals)}
    proto = runs[0]["protocol"] if runs else None
    name = proto.get("name") if isinstance(proto, dict) else proto
    result = {"protocol": CONFIRM_PROTOCOL, "eval_protocol": proto, "seeds": [r["seed"] for r in runs],
              "test": stats, "runs": runs}
    if not opts.quiet:
        print(f"test, protocol {name}, best configuration x {len(runs)} seeds (mean ± std): "
              + "  ".join(f"{k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in stats.items()
                          if k in ("recall@10", "ndcg@10", "mrr@10", "hit@10")))
    return result
