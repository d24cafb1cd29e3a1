"""train.compile: the losses through torch.compile compute the same function as eager mode,
a compiled run learns and resumes exactly (so its seed fixes it); unsupported
combinations are refused in one line. (Compiling costs seconds: one tiny model, few epochs.)"""

from __future__ import annotations

import json

import pytest
import torch

from ktup.errors import ConfigError
from ktup.training import train
from test_train_support import one_thread, tiny_config, tiny_dataset

_one_thread = pytest.fixture(autouse=True)(one_thread)


def _losses(run) -> list[float]:
    return [r["rec_loss"] for r in map(json.loads, (run.path / "metrics.jsonl").read_text().splitlines())
            if not r.get("final")]


def test_compiled_soft_induction_matches_eager(tmp_path):
    # soft induction draws no noise, so compiled and eager follow the same trajectory up to rounding
    sets = dict(epochs=2, patience=0)
    eager = train(tiny_config("ktup", **sets).apply_overrides(["induction=soft", "kg_eval=false"]),
                  dataset=tiny_dataset(), out=str(tmp_path / "eager"), progress="quiet")
    comp = train(tiny_config("ktup", compile=True, **sets).apply_overrides(["induction=soft", "kg_eval=false"]),
                 dataset=tiny_dataset(), out=str(tmp_path / "comp"), progress="quiet")
    assert _losses(comp) == pytest.approx(_losses(eager), rel=1e-3)
    for k, v in eager.model.state_dict().items():
        assert torch.allclose(v, comp.model.state_dict()[k], atol=1e-3), k


def test_compiled_hard_run_learns_and_resumes_exactly(tmp_path):
    def cfg(epochs):
        return tiny_config("ktup", epochs=epochs, patience=0, compile=True).apply_overrides(["kg_eval=false"])

    full = train(cfg(3), dataset=tiny_dataset(), out=str(tmp_path / "full"), progress="quiet")
    losses = _losses(full)
    assert all(map(torch.isfinite, torch.tensor(losses))) and losses[-1] < losses[0]
    part = train(cfg(1), dataset=tiny_dataset(), out=str(tmp_path / "part"), progress="quiet")
    cont = train(cfg(3), dataset=tiny_dataset(), resume=str(part.path), progress="quiet")
    assert _losses(cont) == losses
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, cont.model.state_dict()[k]), k


def test_compile_with_sparse_updates_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError, match="train.compile does not work with sparse") as e:
        train(tiny_config("ktup", epochs=1, compile=True, sparse=True), dataset=tiny_dataset(),
              out=str(tmp_path / "r"), progress="quiet")
    assert "\n" not in str(e.value)
