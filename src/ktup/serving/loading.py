"""One entry point for what ``ktup serve`` accepts: a run directory or an export folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ktup.errors import RunError


def load_recommender(path: str | os.PathLike, checkpoint: str = "best", device: str = "cpu") -> Any:
    """A :class:`ktup.explain.Recommender` for a run directory (``ktup train``) or an export
    folder (``ktup export``); the two serve identical scores."""
    from ktup.explain import Recommender
    from ktup.serving.export import is_export_dir, load_export, read_manifest

    p = Path(path)
    if not p.exists():
        raise RunError(f"{p}: no such run directory or export folder")
    if is_export_dir(p):
        model, dataset = load_export(p, device=device)
        rec = Recommender(model, dataset, device=device)
        manifest = read_manifest(p)
        run = manifest.get("run") or {}
        rec.info = {"model": manifest.get("model"), "dataset": dataset.name,
                    "run_id": run.get("run_id") or run.get("id"), "export": str(p.resolve())}
        return rec
    return Recommender.load(p, checkpoint=checkpoint, device=device)
