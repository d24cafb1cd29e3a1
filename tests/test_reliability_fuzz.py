"""Reliability, fuzzing the readers: random bytes and random damage (deleted, duplicated or
inserted characters, swapped columns, truncation, dropped or repeated lines) to small valid
files of the three layouts. The only allowed outcomes are a loaded dataset or a one-line
KtupError/DataError — never another exception."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ktup.config import DataConfig
from ktup.data import load_dataset
from reliability.corpus import VALID, write_files
from reliability.mutations import INSERTS, KINDS, apply, outcome

FORMATS = sorted(VALID)
_VALID_FILES = {f: VALID[f]() for f in FORMATS}


def _load(files: dict[str, bytes]) -> tuple[str, str | None]:
    d = Path(tempfile.mkdtemp(prefix="ktup-fuzz-"))
    try:
        write_files(d / "toy", files)
        return outcome(lambda: load_dataset(DataConfig(dataset=str(d / "toy"), drop_unlinked=False)))
    finally:
        shutil.rmtree(d, ignore_errors=True)


mutation = st.tuples(st.sampled_from(KINDS), st.integers(0, 15), st.floats(0, 0.999),
                     st.one_of(st.sampled_from(INSERTS), st.binary(max_size=48)), st.integers(1, 7))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(fmt=st.sampled_from(FORMATS), muts=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_files_load_or_fail_in_one_line(fmt, muts):
    files = dict(_VALID_FILES[fmt])
    for kind, target, pos, payload, count in muts:
        files = apply(files, kind, target, pos, payload, count)
    result, msg = _load(files)
    assert result != "CRASH", (fmt, muts, msg)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(fmt=st.sampled_from(FORMATS), target=st.integers(0, 15), data=st.binary(max_size=200))
def test_random_bytes_as_a_file(fmt, target, data):
    files = apply(dict(_VALID_FILES[fmt]), "replace-file", target, 0.0, data)
    result, msg = _load(files)
    assert result != "CRASH", (fmt, target, data, msg)


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_valid_files_load(fmt):
    assert _load(dict(_VALID_FILES[fmt]))[0] == "loaded"
