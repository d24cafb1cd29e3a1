"""``ktup runs [DIR]``: the runs in a folder with model, data set, status and best metric.

Reads only each run's ``run.json`` and ``final.json`` (no torch, no checkpoints), so it is quick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional


def register(sub) -> None:
    p = sub.add_parser("runs", help="list the runs in a folder (model, data set, status, best metric)",
                       description="List the run directories in DIR (default: runs), newest first, with model, "
                                   "data set, status, epochs, the best validation metric and the test value of "
                                   "the same metric when the run finished.")
    p.add_argument("dir", nargs="?", default="runs", metavar="DIR", help="folder of runs (default: runs)")
    p.add_argument("--json", action="store_true", help="one JSON object per run, as a list")
    p.set_defaults(func=run)


def _read(path: Path) -> Optional[dict[str, Any]]:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else None
    except (OSError, ValueError):
        return None


def describe(run_dir: Path) -> Optional[dict[str, Any]]:
    """One row for ``run_dir``, or None when it is not a run directory."""
    info = _read(run_dir / "run.json")
    if info is None:
        return None
    final = _read(run_dir / "final.json") or {}
    metric = final.get("valid_metric")
    row = {"run": str(run_dir), "model": info.get("model"), "dataset": info.get("dataset"),
           "status": info.get("status"), "epochs": info.get("epochs_done"), "best_epoch": info.get("best_epoch"),
           "created": info.get("created", "")}
    if metric:
        row["metric"] = metric
        row["best_valid"] = final.get("best_valid")
        test = final.get("test") or {}
        if metric in test:
            row["test"] = test[metric]
    return row


def list_runs(folder: Path) -> list[dict[str, Any]]:
    """Rows of the run directories directly inside ``folder``, newest first."""
    rows = [r for d in folder.iterdir() if d.is_dir() and (r := describe(d)) is not None] if folder.is_dir() else []
    return sorted(rows, key=lambda r: (r["created"] or "", r["run"]), reverse=True)


def format_runs(rows: list[dict[str, Any]]) -> str:
    head = ("run", "model", "dataset", "status", "epochs", "best valid", "test")
    table = [head]
    for r in rows:
        metric = r.get("metric", "")
        bv = f"{metric} {r['best_valid']:.4f}" if isinstance(r.get("best_valid"), float) else "-"
        te = f"{r['test']:.4f}" if isinstance(r.get("test"), float) else "-"
        table.append((r["run"], str(r["model"]), str(r["dataset"]), str(r["status"]), str(r["epochs"]), bv, te))
    w = [max(len(row[i]) for row in table) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(row)).rstrip() for row in table)


def run(args: argparse.Namespace) -> int:
    from ktup.errors import KtupError

    folder = Path(args.dir)
    if not folder.is_dir():
        raise KtupError(f"{folder}: no such folder of runs")
    rows = list_runs(folder)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no runs in {folder}")
        return 0
    print(format_runs(rows))
    return 0
