"""The model contract, run on every registered model (``ktup.registry.MODELS``).

A model registered with one line in ``ktup/registry.py`` is tested here the moment it is
registered: it trains an epoch, resumes to the same weights as an uninterrupted run, exports and
reloads to equal scores, recommends, and is served over HTTP. Nothing here names a model.
"""

from __future__ import annotations

import dataclasses
import typing
import warnings

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.models.base import ROW_KINDS, Model
from ktup.registry import MODELS

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

with warnings.catch_warnings():   # starlette's note about its httpx dependency, not ours
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

from test_serving_runs import make_dataset  # noqa: E402

NAMES = MODELS.choices()


def _config(name: str, epochs: int) -> Config:
    return Config.from_dict({"model": {"model": name, "embedding_size": 8},
                             "train": {"epochs": epochs, "batch_size": 16, "kg_batch_size": 16, "threads": 1,
                                       "patience": 0},
                             "eval": {"kg_eval": False}})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{model: Run} of 2-epoch runs, trained once for the module."""
    from ktup.training import train

    root = tmp_path_factory.mktemp("contract")
    return {n: train(_config(n, 2), dataset=make_dataset(), out=str(root / n), progress="quiet") for n in NAMES}


def _scores(model, dataset) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        if model.uses_rec:
            out.append(model.score_all_items(torch.arange(dataset.n_users)))
        if model.uses_kg:
            h, r = torch.arange(4) % dataset.n_entities, torch.arange(4) % dataset.n_relations
            out += [model.score_tails(h, r), model.score_heads(r, h)]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_class_declares_the_contract(name):
    cls = MODELS[name]
    assert issubclass(cls, Model) and cls.name == name
    assert cls.uses_rec or cls.uses_kg
    assert dataclasses.is_dataclass(cls.Options)
    for f in dataclasses.fields(cls.Options):          # options the config can type-check
        t = typing.get_type_hints(cls.Options)[f.name]
        assert t in (int, float, str, bool, tuple) or typing.get_origin(t) is typing.Union, (name, f.name, t)
        assert f.default is not dataclasses.MISSING, (name, f.name)


@pytest.mark.parametrize("name", NAMES)
def test_tables_name_embeddings_of_known_kinds(runs, name):
    run = runs[name]
    model, ds = run.model, run.dataset
    tables = model.tables()
    assert tables and set(tables.values()) <= set(ROW_KINDS)
    size = {"users": ds.n_users, "items": ds.n_items, "entities": ds.n_entities, "relations": ds.n_relations,
            "preferences": model.num_preferences}
    for module, emb in model.table_modules().items():
        assert isinstance(emb, torch.nn.Embedding)
        assert emb.num_embeddings >= size[tables[module]], (module, emb.num_embeddings)


@pytest.mark.parametrize("name", NAMES)
def test_trains_and_scores_finite(runs, name):
    run = runs[name]
    assert run.info["epochs_done"] == 2
    for s in _scores(run.model, run.dataset):
        assert torch.isfinite(s).all()


@pytest.mark.parametrize("name", NAMES)
def test_resume_equals_uninterrupted(runs, tmp_path, name):
    from ktup.training import train

    part = train(_config(name, 1), dataset=make_dataset(), out=str(tmp_path / "r"), progress="quiet")
    resumed = train(_config(name, 2), resume=str(part.path), progress="quiet")
    want = runs[name].model.state_dict()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, want[k]), k


@pytest.mark.parametrize("name", NAMES)
def test_export_reload_equal_scores(runs, tmp_path, name):
    from ktup.serving.export import export_run, load_export

    run = runs[name]
    model, ds = load_export(export_run(run.path, tmp_path / "exp"))
    assert type(model) is type(run.model) and not model.training
    for a, b in zip(_scores(run.model, run.dataset), _scores(model, ds)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_recommend_and_serve(runs, name):
    from ktup.serving.app import create_app
    from ktup.serving.loading import load_recommender

    if not MODELS[name].uses_rec:
        pytest.skip(f"{name} does not score users and items (a KG-completion model)")
    rec = load_recommender(runs[name].path)
    want = rec.recommend("u0", k=3)
    assert len(want) == 3 and len({r["item"] for r in want}) == 3
    with TestClient(create_app(rec)) as client:
        assert client.get("/health").json()["model"] == name
        got = client.get("/users/u0/recommendations", params={"k": 3}).json()["recommendations"]
    assert [r["item"] for r in got] == [r["item"] for r in want]
    np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], rtol=1e-6)


def test_trainer_and_loaders_call_the_hooks(monkeypatch, tmp_path):
    """on_epoch_start/end around every epoch, prepare_inference before every evaluation and
    after loading a run (the order a model with caches, e.g. KGAT's attention, relies on)."""
    from ktup.models.bpr import BPRMF
    from ktup.training import load_run, train

    calls: list = []

    class Hooked(BPRMF):
        name = "hooked"

        def on_epoch_start(self, epoch):
            calls.append(("start", epoch, self.training))

        def on_epoch_end(self, epoch):
            calls.append(("end", epoch, self.training))

        def prepare_inference(self):
            calls.append(("prepare", None, self.training or torch.is_grad_enabled()))

    monkeypatch.setitem(MODELS._targets, "hooked", Hooked)
    run = train(_config("hooked", 2), dataset=make_dataset(), out=str(tmp_path / "h"), progress="quiet")
    kinds = [c[0] for c in calls]
    assert kinds == ["start", "end", "prepare", "start", "end", "prepare", "prepare"]   # 2 valid + 1 test
    assert [c[1] for c in calls if c[0] != "prepare"] == [0, 0, 1, 1]
    assert all(c[2] for c in calls if c[0] != "prepare")            # epochs: training mode
    assert not any(c[2] for c in calls if c[0] == "prepare")         # inference: eval mode, no grad
    calls.clear()
    load_run(run.path)
    assert [c[0] for c in calls] == ["prepare"]
