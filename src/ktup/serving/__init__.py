"""Serve a trained model over HTTP and export its embedding tables.

- :func:`ktup.serving.app.create_app` — the FastAPI application around a recommender
  (FastAPI/uvicorn are the optional extra ``ktup[serve]`` and are imported lazily).
- :func:`ktup.serving.server.serve` / :func:`ktup.serving.server.start_in_thread` — run it.
- :func:`ktup.serving.export.export_run` / :func:`ktup.serving.export.load_export` — write every
  embedding table with its original ids, and load such a folder back for serving.
- :func:`ktup.serving.loading.load_recommender` — a run directory *or* an export folder → recommender.

Nothing heavy is imported here, so ``import ktup.serving`` works without the extra installed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "export_run", "load_export", "load_recommender", "serve", "start_in_thread"]


def __getattr__(name: str) -> Any:  # lazy re-exports (PEP 562)
    if name == "create_app":
        from ktup.serving.app import create_app

        return create_app
    if name in ("export_run", "load_export"):
        from ktup.serving import export

        return getattr(export, name)
    if name == "load_recommender":
        from ktup.serving.loading import load_recommender

        return load_recommender
    if name in ("serve", "start_in_thread"):
        from ktup.serving import server

        return getattr(server, name)
    raise AttributeError(f"module 'ktup.serving' has no attribute {name!r}")
