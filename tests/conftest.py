"""Shared fixtures: a tiny planted synthetic dataset and the shared ml-100k folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ktup.data.dataset import KGDataset


SKIP_NO_DATA = ("no ml-100k for integration tests: set KTUP_SHARED_DATASETS to a folder holding it, "
                "or run `ktup datasets fetch ml-100k`")


def shared_datasets_dir() -> Path | None:
    """``$KTUP_SHARED_DATASETS`` or ``../shared/datasets`` beside the repository, if present;
    otherwise ktup's dataset cache when ``ml-100k`` was already fetched there (with
    ``ml-100k-recbole-split`` rebuilt from it), so a user's own fetch runs the integration tests."""
    env = os.environ.get("KTUP_SHARED_DATASETS")
    cand = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"
    if cand.is_dir():
        return cand
    from ktup.data.registry import build_recbole_split, cache_root
    from ktup.errors import KtupError

    cache = cache_root()
    if not (cache / "ml-100k").is_dir():
        return None
    if not (cache / "ml-100k-recbole-split").is_dir():
        try:
            build_recbole_split(fetch=False)
        except KtupError:
            pass
    return cache


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
        pytest.skip(SKIP_NO_DATA)
    return d
