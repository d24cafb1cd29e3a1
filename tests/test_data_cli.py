"""`ktup datasets ...` through ktup.cli.main, the registry, and integration checks on ml-100k."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ktup.cli import main
from ktup.config import DataConfig
from ktup.data import load_dataset
from ktup.data import registry
from ktup.errors import KtupError


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    """An empty cache and no shared data folder: only generated names and paths resolve."""
    monkeypatch.setenv("KTUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "shared_root", lambda: None)


def test_info_json_synthetic(capsys, no_shared):
    assert main(["datasets", "info", "synthetic-tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert set(info) >= {"users", "items", "interactions", "entities", "relations", "triples", "linked_items", "sparsity"}
    assert info["users"] == 40 and info["interactions"] == 600 and info["relations"] == 3


def test_info_table_and_list(capsys, no_shared):
    assert main(["datasets", "info", "synthetic-tiny"]) == 0
    out = capsys.readouterr().out
    assert "interactions" in out and "600" in out
    assert main(["datasets", "list"]) == 0
    out = capsys.readouterr().out
    assert "ml-100k" in out and "fetchable" in out and "synthetic-small" in out
    assert "ml-100k-recbole-split" in out and "fetchable (built from ml-100k)" in out


def test_data_dir_name_or_dir_itself(tmp_path, capsys, no_shared):
    d = tmp_path / "data" / "toy"
    d.mkdir(parents=True)
    (d / "toy.inter").write_text("user_id:token\titem_id:token\n1\t2\n1\t3\n2\t3\n")
    assert main(["datasets", "info", "toy", "--data-dir", str(tmp_path / "data"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 3
    assert main(["datasets", "info", "whatever", "--data-dir", str(d), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["users"] == 2
    assert main(["datasets", "info", "toy", "--data-dir", str(tmp_path / "nothing")]) == 2
    assert "neither" in capsys.readouterr().err


def test_unknown_and_unfetchable_names(no_shared, capsys, monkeypatch):
    with pytest.raises(KtupError, match="unknown dataset 'nope'"):
        registry.resolve("nope")
    # RecBole's split is built from ml-100k, which must be fetched first (here: not allowed / offline)
    with pytest.raises(KtupError, match="ml-100k is not downloaded yet"):
        registry.resolve("ml-100k-recbole-split", fetch=False)

    def offline(force=False):
        raise KtupError("fetching ml-100k failed: offline")

    monkeypatch.setattr(registry, "fetch_ml100k", offline)
    assert main(["datasets", "info", "ml-100k-recbole-split"]) == 2
    assert "fetching ml-100k failed: offline" in capsys.readouterr().err


def test_load_dataset_synthetic_preset_uses_split_config(no_shared):
    a = load_dataset(DataConfig(dataset="synthetic-tiny", split="loo"))
    assert a.meta["split"]["method"] == "loo" and a.planted_relations is not None
    assert len(a.test) == a.n_users


# ----------------------------------------------------------------------------- integration
ML100K_RAW = {"users": 943, "items": 1682, "interactions": 100_000, "entities": 34_628, "relations": 24,
              "triples": 91_631, "linked_items": 1_598}


@pytest.mark.integration
def test_ml100k_info_json(shared_datasets, monkeypatch, capsys):
    monkeypatch.setenv("KTUP_SHARED_DATASETS", str(shared_datasets))
    monkeypatch.setenv("KTUP_CACHE_DIR", "/nonexistent-ktup-cache")
    assert main(["datasets", "info", "ml-100k", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {k: info[k] for k in ML100K_RAW} == ML100K_RAW


@pytest.mark.integration
def test_ml100k_recbole_split_counts(shared_datasets):
    ds = load_dataset(DataConfig(dataset="ml-100k-recbole-split", data_dir=str(shared_datasets)))
    assert ds.meta["split"]["method"] == "given"
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (78_836, 9_359, 9_359)
    # RecBole reports item_num 1,599: that count includes its padding id 0. The items are 1,598.
    assert ds.n_items == 1_598 and ds.n_users == 943 and ds.n_linked_items == 1_598
    assert ds.item_title(ds.items.index("1")) == "Toy Story"


@pytest.mark.integration
def test_ml100k_our_random_split_has_recboles_sizes(shared_datasets):
    ds = load_dataset(DataConfig(dataset="ml-100k", data_dir=str(shared_datasets), drop_unlinked=True))
    assert ds.meta["filters"]["drop_unlinked"] == {"interactions_removed": 2_446, "items_removed": 84}
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (78_836, 9_359, 9_359)
    ref = load_dataset(DataConfig(dataset="ml-100k-recbole-split", data_dir=str(shared_datasets)))
    for name in ("train", "valid", "test"):     # same sizes per user as RecBole's own split
        a, b = getattr(ds, name), getattr(ref, name)
        ca = dict(zip(ds.users.tokens, a.user_counts()))
        cb = dict(zip(ref.users.tokens, b.user_counts()))
        assert ca == cb
    kg = ds.kg_train
    ents = set(kg[:, 0]) | set(kg[:, 2])
    assert all(h in ents and t in ents for h, _, t in ds.kg_test)


@pytest.mark.integration
def test_fetch_ml100k_from_pypi(tmp_path, monkeypatch, capsys):
    """The real out-of-the-box path: pip download of RecBole's wheel, sha256 check, extraction."""
    monkeypatch.setenv("KTUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "shared_root", lambda: None)
    monkeypatch.setattr(registry, "_said", set())
    try:
        assert main(["datasets", "fetch", "ml-100k"]) == 0
    finally:
        captured = capsys.readouterr()
    if "fetching ml-100k failed" in captured.err:
        pytest.skip(f"PyPI not reachable: {captured.err.strip()}")
    dest = tmp_path / "cache" / "datasets" / "ml-100k"
    assert captured.out.strip() == str(dest)
    assert "downloading ml-100k" in captured.err and "PyPI" in captured.err
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k.inter", "ml-100k.item", "ml-100k.kg", "ml-100k.link", "ml-100k.user"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".fetch-")]   # temp dir cleaned up
    assert main(["datasets", "info", "ml-100k", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {k: info[k] for k in ML100K_RAW} == ML100K_RAW


def _fake_pip(tmp_path, monkeypatch, files: dict[str, str]):
    """Replace `pip download` by writing a small wheel holding ``files``; returns its sha256."""
    import hashlib
    import subprocess
    import zipfile

    wheel = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(wheel, dest / wheel.name)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    return hashlib.sha256(wheel.read_bytes()).hexdigest(), calls


def test_fetch_extracts_only_the_dataset_atomically(tmp_path, monkeypatch, no_shared):
    files = {
        "recbole/dataset_example/ml-100k/ml-100k.inter": "user_id:token\titem_id:token\n1\t2\n",
        "recbole/dataset_example/ml-100k/ml-100k.kg": "head_id:token\trelation_id:token\ttail_id:token\na\tr\tb\n",
        "recbole/dataset_example/ml-100k/ml-100k.link": "item_id:token\tentity_id:token\n2\ta\n",
        "recbole/dataset_example/ml-100k/../evil.txt": "x",
        "recbole/model/whatever.py": "print(1)\n",
    }
    sha, calls = _fake_pip(tmp_path, monkeypatch, files)
    monkeypatch.setattr(registry, "RECBOLE_SHA256", sha)
    dest = registry.fetch_ml100k()
    assert calls and calls[0][1:4] == ["-m", "pip", "download"] and "recbole==1.2.1" in calls[0]
    assert sorted(p.name for p in dest.iterdir()) == ["ml-100k.inter", "ml-100k.kg", "ml-100k.link"]
    assert [p.name for p in dest.parent.iterdir()] == ["ml-100k"]
    assert registry.resolve("ml-100k").origin == "cache"


def test_fetch_rejects_a_wheel_with_the_wrong_hash(tmp_path, monkeypatch, no_shared):
    _fake_pip(tmp_path, monkeypatch, {"recbole/dataset_example/ml-100k/ml-100k.inter": "user_id:token\titem_id:token\n"})
    with pytest.raises(KtupError, match="has sha256 .*, expected 9c99482"):
        registry.fetch_ml100k()
    assert not (registry.cache_root() / "ml-100k").exists()


def test_info_with_data_settings(capsys, no_shared):
    assert main(["datasets", "info", "synthetic-tiny", "--json", "--set", "k_core=10"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert 0 < info["interactions"] < 600
    assert main(["datasets", "info", "synthetic-tiny", "--set", "k_cor=3"]) == 2
    assert "did you mean 'k_core'" in capsys.readouterr().err
