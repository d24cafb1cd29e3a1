"""Recommend and explain with a trained run (plain data in original ids).

``Recommender.load(run_dir)`` → ``recommend(users, k)``, ``explain(user, item)``,
``score(users, items)``. See :mod:`ktup.explain.recommender`.
"""

from ktup.explain.evidence import EvidenceIndex
from ktup.explain.explanation import build_explanation, format_explanation
from ktup.explain.names import relation_name
from ktup.explain.recommender import Recommender

__all__ = ["Recommender", "EvidenceIndex", "relation_name", "build_explanation", "format_explanation"]
