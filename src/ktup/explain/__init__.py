"""Recommend and explain with a trained run (plain data in original ids).

``Recommender.load(run_dir)`` → ``recommend(users, k)``, ``explain(user, item)``,
``score(users, items)``. See :mod:`ktup.explain.recommender`.

The names below are imported on first use, so ``ktup.cli.quickstart`` can check a command
line before torch is loaded.
"""

import importlib

_WHERE = {
    "Recommender": "ktup.explain.recommender",
    "EvidenceIndex": "ktup.explain.evidence",
    "relation_name": "ktup.explain.names",
    "build_explanation": "ktup.explain.explanation",
    "format_explanation": "ktup.explain.explanation",
}

__all__ = ["Recommender", "EvidenceIndex", "relation_name", "build_explanation", "format_explanation"]


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'ktup.explain' has no attribute {name!r}")
