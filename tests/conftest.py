"""Shared fixtures: a tiny planted synthetic dataset and the shared ml-100k folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktup.data.dataset import KGDataset


def shared_datasets_dir() -> Path | None:
    """``$KTUP_SHARED_DATASETS`` or ``../shared/datasets`` beside the repository, if present."""
    env = os.environ.get("KTUP_SHARED_DATASETS")
    cand = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    return cand if cand.is_dir() else None


@pytest.fixture
def tiny_dataset() -> KGDataset:
    """A small planted synthetic dataset (40 users, 30 items, 600 interactions, 3 relations),
    split 8:1:1, seeded: same arrays on every call. A fresh object per test (safe to mutate)."""
    from ktup.data.synthetic import PRESETS, generate

    return generate(**PRESETS["synthetic-tiny"], name="synthetic-tiny")


@pytest.fixture
def shared_datasets() -> Path:
    """Path of the shared datasets folder; skips the test when it is absent."""
    d = shared_datasets_dir()
    if d is None:
        pytest.skip("shared datasets folder not found (set KTUP_SHARED_DATASETS)")
    return d
