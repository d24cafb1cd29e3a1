"""What a run tells its user while it trains, and the plots it leaves behind.

Modes: ``bar`` (a tqdm bar per epoch on stderr plus one summary line per epoch), ``quiet``
(nothing but errors), ``jsonl`` (one JSON object per epoch on stdout, for machines). Every mode
also appends the summary lines to ``train.log`` in the run directory.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

PROGRESS_MODES = ("bar", "quiet", "jsonl")


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass


class Progress:
    def __init__(self, mode: str, log_path: Optional[Path]):
        if mode not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, got {mode!r}")
        self.mode = mode
        self.log_path = log_path

    def log(self, line: str, echo: bool = True) -> None:
        """A line for train.log (timestamped) and, in bar mode, for the terminal."""
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(time.strftime("%Y-%m-%d %H:%M:%S ") + line + "\n")
        if echo and self.mode == "bar":
            print(line, file=sys.stderr, flush=True)

    def epoch_bar(self, epoch: int, epochs: int, total: int):
        if self.mode != "bar":
            return _NoBar()
        from tqdm import tqdm

        return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
                    file=sys.stderr, dynamic_ncols=True, mininterval=0.5)

    def epoch_done(self, record: dict[str, Any]) -> None:
        self.log(format_epoch(record))
        if self.mode == "jsonl":
            print(json.dumps(record), flush=True)


def format_epoch(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch']}"]
    for key in ("rec_loss", "kg_loss", "loss"):
        if r.get(key) is not None:
            parts.append(f"{key} {r[key]:.4f}")
    if r.get("valid"):
        metric = r.get("valid_metric")
        if metric in r["valid"]:
            parts.append(f"valid {metric} {r['valid'][metric]:.4f}")
        if r.get("best"):
            parts.append("*best*")
    parts.append(f"{r.get('seconds', 0.0):.2f}s")
    return "  ".join(parts)


def write_plots(run_dir: Path, records: list[dict[str, Any]], valid_metric: str) -> None:
    """plots/loss.png (training losses per epoch) and plots/valid.png (validation metric)."""
    epochs = [r for r in records if "epoch" in r and not r.get("final")]
    if not epochs:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (run_dir / "plots").mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("rec_loss", "kg_loss", "loss"):
        pts = [(r["epoch"], r[key]) for r in epochs if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "plots" / "loss.png", dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    pts = [(r["epoch"], r["valid"][valid_metric]) for r in epochs if r.get("valid") and valid_metric in r["valid"]]
    if pts:
        ax.plot(*zip(*pts), marker=".", label=f"valid {valid_metric}")
        ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel(valid_metric)
    fig.tight_layout()
    fig.savefig(run_dir / "plots" / "valid.png", dpi=100)
    plt.close(fig)
