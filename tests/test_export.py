"""``ktup export``: every embedding table with its original ids, model.json, atomic writes, and
a reload whose scores equal the run's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ktup.config import Config
from ktup.data.dataset import IdMap, Interactions, KGDataset
from ktup.errors import KtupError, RunError
from ktup.serving import export as export_mod
from ktup.serving.export import export_run, load_export

MODELS = ("ktup", "tup", "bpr")
TABLES = {
    "ktup": {"users", "items", "entities", "relations", "relation_normals", "preferences", "preference_normals"},
    "tup": {"users", "items", "preferences", "preference_normals"},
    "bpr": {"users", "items"},
}


def make_dataset(seed: int = 1) -> KGDataset:
    """10 users, 12 items (10 linked), 16 entities, 3 relations, random KG and interactions."""
    rng = np.random.default_rng(seed)
    nu, ni, ne, nr = 10, 12, 16, 3
    ie = np.arange(ni, dtype=np.int64)
    ie[-2:] = -1
    pairs = np.array([(u, i) for u in range(nu) for i in rng.choice(ni, 5, replace=False)], dtype=np.int64)
    rng.shuffle(pairs)
    a, b = int(len(pairs) * 0.7), int(len(pairs) * 0.85)

    def part(p):
        return Interactions(p[:, 0].copy(), p[:, 1].copy(), nu, ni)

    kg = np.unique(np.stack([rng.integers(0, 10, 50), rng.integers(0, nr, 50), rng.integers(10, ne, 50)], 1), axis=0)
    return KGDataset("tiny", IdMap([f"user-{i}" for i in range(nu)], "user"), IdMap([f"i{i}" for i in range(ni)], "item"),
                     IdMap([f"m.{i}" for i in range(ne)], "entity"), IdMap(["director", "genre", "actor"], "relation"),
                     ie, part(pairs[:a]), part(pairs[a:b]), part(pairs[b:]), kg[:-4].astype(np.int64),
                     kg[-4:-2].astype(np.int64), kg[-2:].astype(np.int64),
                     item_info={"title": [f"Title {i}" for i in range(ni)]})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from ktup.training import load_run
    from test_train_support import train_one_epoch_runs

    paths = train_one_epoch_runs(tmp_path_factory.mktemp("export-runs"), MODELS, make_dataset, embedding_size=6)
    return {m: load_run(p) for m, p in paths.items()}


def _scores(model, ds):
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        return model.score_all_items(users), model.score_pairs(users, users % ds.n_items)


@pytest.mark.parametrize("fmt", ["npz", "parquet"])
@pytest.mark.parametrize("name", MODELS)
def test_reloaded_export_scores_equal_the_run(runs, tmp_path, name, fmt):
    run = runs[name]
    out = export_run(run.path, tmp_path / "exp", fmt=fmt)
    manifest = json.loads((out / "model.json").read_text())
    assert set(manifest["tables"]) == TABLES[name]
    assert all((out / t["file"]).exists() and t["file"].endswith(fmt) for t in manifest["tables"].values())
    model, ds = load_export(out)
    assert not model.training
    for a, b in zip(_scores(run.model, run.dataset), _scores(model, ds)):
        assert torch.equal(a, b)
    assert ds.users.tokens == run.dataset.users.tokens and ds.items.tokens == run.dataset.items.tokens
    np.testing.assert_array_equal(ds.item_entity, run.dataset.item_entity)
    assert ds.item_title(3) == "Title 3"


def test_npz_tables_hold_original_ids_and_embeddings(runs, tmp_path):
    run = runs["ktup"]
    out = export_run(run.path, tmp_path / "exp")
    users = np.load(out / "users.npz")
    assert users["ids"].tolist() == [f"user-{i}" for i in range(10)]
    np.testing.assert_array_equal(users["embeddings"], run.model.user.weight.detach().numpy())
    ents = np.load(out / "entities.npz")
    assert ents["embeddings"].shape == (16, 6)            # the padding row is not an entity
    assert ents["ids"].tolist() == [f"m.{i}" for i in range(16)]
    prefs = np.load(out / "preferences.npz")
    assert prefs["ids"].tolist() == ["director", "genre", "actor"]   # ktup binds preference k to relation k


def test_model_json_describes_the_model(runs, tmp_path):
    from ktup import __version__

    out = export_run(runs["ktup"].path, tmp_path / "exp")
    m = json.loads((out / "model.json").read_text())
    assert m["model"] == "ktup" and m["ktup_version"] == __version__
    assert m["config"]["model"]["embedding_size"] == 6
    assert m["dimensions"] == {"embedding_size": 6, "users": 10, "items": 12, "entities": 16, "relations": 3, "preferences": 3}
    assert dict(map(tuple, m["item_entity"])) == {f"i{i}": f"m.{i}" for i in range(10)}
    assert m["run"]["run_id"] == runs["ktup"].info["run_id"]


def test_parquet_has_id_and_e_columns(runs, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    out = export_run(runs["tup"].path, tmp_path / "exp", fmt="parquet")
    frame = pd.read_parquet(out / "items.parquet")
    assert list(frame.columns) == ["id"] + [f"e{j}" for j in range(6)]
    assert frame["id"].tolist() == [f"i{i}" for i in range(12)]
    prefs = pd.read_parquet(out / "preferences.parquet")
    assert prefs["id"].tolist() == ["p0", "p1", "p2"]      # tup's preferences are not bound to relations


def test_rows_are_placed_by_id_when_a_table_is_reordered(runs, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    run = runs["ktup"]
    out = export_run(run.path, tmp_path / "exp", fmt="parquet")
    frame = pd.read_parquet(out / "users.parquet")
    frame.iloc[::-1].to_parquet(out / "users.parquet", index=False)
    model, ds = load_export(out)
    assert torch.equal(_scores(model, ds)[0], _scores(run.model, run.dataset)[0])


def test_refuses_a_non_empty_folder_without_force(runs, tmp_path):
    target = tmp_path / "exp"
    target.mkdir()
    export_run(runs["bpr"].path, target)                   # an empty folder is fine
    with pytest.raises(KtupError, match="not empty.*--force"):
        export_run(runs["bpr"].path, target)
    export_run(runs["tup"].path, target, force=True)
    assert json.loads((target / "model.json").read_text())["model"] == "tup"
    assert not (target / "entities.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp"]   # no temp or old folders left
    (tmp_path / "file").write_text("x")
    with pytest.raises(KtupError, match="not a directory"):
        export_run(runs["bpr"].path, tmp_path / "file")


def test_a_failed_export_leaves_nothing_behind(runs, tmp_path, monkeypatch):
    def boom(*a, **kw):
        raise OSError("disk full")

    monkeypatch.setattr(export_mod, "_write_table", boom)
    with pytest.raises(OSError):
        export_run(runs["bpr"].path, tmp_path / "exp")
    assert list(tmp_path.iterdir()) == []


def test_damaged_exports_fail_with_one_line(runs, tmp_path):
    out = export_run(runs["bpr"].path, tmp_path / "exp")
    (out / "items.npz").unlink()
    with pytest.raises(RunError, match="items.npz.*missing"):
        load_export(out)
    out = export_run(runs["bpr"].path, tmp_path / "exp2")
    np.savez(out / "users.npz", ids=np.array([f"x{i}" for i in range(10)]), embeddings=np.zeros((10, 6), np.float32))
    with pytest.raises(RunError, match="ids do not match"):
        load_export(out)
    with pytest.raises(RunError, match="no such export folder"):
        load_export(tmp_path / "nothing")


def test_recommender_on_an_export_equals_the_run(runs, tmp_path):
    from ktup.explain import Recommender
    from ktup.serving.loading import load_recommender

    run = runs["ktup"]
    rec = load_recommender(export_run(run.path, tmp_path / "exp"))
    ref = Recommender(run.model, run.dataset)
    users = ["user-0", "user-4"]
    assert rec.recommend(users, k=5) == ref.recommend(users, k=5)
    assert rec.explain("user-1", "i3") == ref.explain("user-1", "i3")


def test_cli_export(runs, tmp_path, capsys):
    from ktup.cli import main

    assert main(["export", str(runs["ktup"].path), "--to", str(tmp_path / "e"), "--format", "parquet"]) == 0
    assert "users (10×6)" in capsys.readouterr().out
    assert main(["export", str(runs["ktup"].path), "--to", str(tmp_path / "e")]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "norun"), "--to", str(tmp_path / "f")]) == 2
    assert "norun" in capsys.readouterr().err


@pytest.mark.integration
def test_ml100k_ktup_export_round_trip(shared_datasets, tmp_path):
    """A ktup model of ml-100k's size (random weights: the round trip does not depend on training)."""
    from ktup.config import DataConfig
    from ktup.data import load_dataset
    from ktup.models import build_model
    from ktup.serving.export import export_model

    ds = load_dataset(DataConfig(dataset=str(shared_datasets / "ml-100k")))
    torch.manual_seed(0)
    model = build_model(Config().model, ds).eval()
    out = export_model(model, ds, tmp_path / "exp", config=Config(), fmt="parquet")
    manifest = json.loads((out / "model.json").read_text())
    assert manifest["tables"]["entities"]["rows"] == ds.n_entities
    assert len(manifest["item_entity"]) == ds.n_linked_items
    back, ds2 = load_export(out)
    users = torch.arange(0, ds.n_users, 7)
    with torch.no_grad():
        assert torch.equal(model.score_all_items(users), back.score_all_items(users))
    assert ds2.item_title(0) == ds.item_title(0)
