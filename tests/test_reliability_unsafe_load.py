"""Loading a run or an export never runs code: a checkpoint whose pickle carries an
``os.system`` reduce (with a correct checksum) is refused by every entry point with one line, and
the command it carries never runs. Checkpoints written by the previous format still load."""

from __future__ import annotations

import hashlib
import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from ktup.cli import main
from ktup.errors import RunError
from ktup.runs.checkpoint import MAGIC_V1, load_checkpoint, rng_state, set_rng_state
from reliability.unsafe_files import entry_points, plant_malicious_checkpoints, plant_malicious_export
from test_train_support import one_thread

_one_thread = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safe-load") / "run"
    rc = main(["train", "--dataset", "synthetic-tiny", "--model", "ktup", "--out", str(out), "--quiet",
               "--set", "epochs=2", "--set", "embedding_size=16", "--set", "batch_size=64",
               "--set", "kg_batch_size=64", "--set", "kg_eval_max_triples=50"])
    assert rc == 0
    return out


def _a_user(run: Path) -> str:
    from ktup.runs import load_run

    return load_run(run).dataset.users.tokens[0]


@pytest.mark.parametrize("magic", [b"KTUPCKP2", MAGIC_V1], ids=["current-format", "format-1"])
def test_every_entry_point_refuses_a_hostile_checkpoint(tiny_run, tmp_path, magic):
    user = _a_user(tiny_run)
    marker = tmp_path / "PWNED"
    bad = plant_malicious_checkpoints(tiny_run, tmp_path / "bad-run", marker, magic=magic)
    calls = entry_points(bad, user, tmp_path)
    if magic == MAGIC_V1:  # the same loader: the in-process entry points suffice
        calls = {k: v for k, v in calls.items() if not k.startswith("ktup ")}
    for name, call in calls.items():
        rc, err = call()
        lines = [x for x in err.splitlines() if x.strip()]
        assert not marker.exists(), f"{name}: the checkpoint's code ran"
        assert rc == 2, f"{name}: rc={rc} {err[-300:]}"
        assert len(lines) == 1 and lines[0].startswith("ktup: error: "), f"{name}: {err[-300:]}"
        assert "refused to load" in err and "system" in err, f"{name}: {err}"
    assert not (tmp_path / "exp-from-bad").exists() and not (tmp_path / "init-run").exists()


def test_no_weights_only_false_outside_integrations():
    src = Path(__file__).resolve().parents[1] / "src" / "ktup"
    hits = [p for p in src.rglob("*.py") if "integrations" not in p.parts
            and "weights_only=False" in p.read_text().replace(" ", "")]
    assert not hits, hits


def test_hostile_export_is_refused(tiny_run, tmp_path):
    from ktup.serving.export import export_run, load_export

    export_run(tiny_run, tmp_path / "exp")
    marker = tmp_path / "PWNED"
    bad = plant_malicious_export(tmp_path / "exp", tmp_path / "bad-exp", marker)
    with pytest.raises(RunError, match="extra.npz"):
        load_export(bad)
    from ktup.serving.loading import load_recommender

    with pytest.raises(RunError, match="extra.npz"):
        load_recommender(bad)
    assert not marker.exists()


def _v1_bytes(state: dict) -> bytes:
    """What the previous ktup wrote: numpy/python RNG state as numpy array / tuples."""
    buf = io.BytesIO()
    torch.save(state, buf)
    body = buf.getvalue()
    return MAGIC_V1 + hashlib.sha256(body).digest() + body


def test_format1_checkpoint_still_loads_and_restores_rng(tiny_run, tmp_path):
    state = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    np.random.seed(3)
    random.seed(4)
    old_rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    expect = (np.random.rand(3).tolist(), random.random())
    f = tmp_path / "v1.pt"
    f.write_bytes(_v1_bytes({**state, "rng": old_rng}))
    loaded = load_checkpoint(f)
    assert loaded["epoch"] == state["epoch"]
    assert all(torch.equal(loaded["model"][k], state["model"][k]) for k in state["model"])
    np.random.seed(99)
    random.seed(99)
    set_rng_state(loaded["rng"])
    assert (np.random.rand(3).tolist(), random.random()) == expect


def test_current_rng_state_is_plain_and_round_trips():
    np.random.seed(1)
    np.random.standard_normal()  # leaves a cached gaussian
    random.seed(2)
    random.gauss(0, 1)
    st = rng_state()
    buf = io.BytesIO()
    torch.save(st, buf)
    back = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
    expect = (np.random.standard_normal(), random.gauss(0, 1), torch.rand(1).item())
    set_rng_state(back)
    assert (np.random.standard_normal(), random.gauss(0, 1), torch.rand(1).item()) == expect


def test_a_bare_pickle_is_not_a_checkpoint(tmp_path):
    f = tmp_path / "x.pt"
    torch.save({"a": 1}, f)
    with pytest.raises(RunError, match="not a ktup checkpoint"):
        load_checkpoint(f)
