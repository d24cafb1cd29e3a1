"""`ktup datasets fetch ml1m-dbpedia`: download, sha256 checks, our converter, and its errors.

Fast tests use a tiny fake copy of the published files (their sha256 patched in); the
integration test converts the real published files (a ``file://`` mirror in the shared data
folder) and checks the result equals the ready atomic files there.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from ktup.cli import main
from ktup.config import DataConfig
from ktup.data import load_dataset, pearlm, registry
from ktup.errors import DataError, KtupError

FAKE = {
    "e_map.txt": "eid\tname\tentity\n0\tFilm_A\tu0\n1\tFilm_B\tu1\n2\tDVD\tu2\n3\tDVD\tu3\n4\tPerson_X\tu4\n",
    "r_map.txt": "id\tkb_relation\tname\n0\thttp://r/dir\tdirected_by\n1\thttp://r/link\trelated_to\n",
    "i2kg_map.txt": "eid\tpid\tname\tentity\n0\t10\tFilm_A\tu0\n1\t20\tFilm_B\tu1\n",
    "kg_final.txt": "entity_head\trelation\tentity_tail\n0\t0\t4\n1\t0\t4\n0\t1\t2\n0\t0\t4\n1\t1\t3\n",
    "products.txt": "pid\tname\tprovider_id\tgenre\tpop_item\tpop_provider\n10\tA (1990)\t7\tDrama\t0.5\t0.1\n"
                    "20\tB \"quoted\" (1991)\t8\tComedy\t0.2\t0.3\n",
    "mapping/user.txt.gz": "new_id\tuid\n0\t101\n1\t102\n2\t103\n",
    "mapping/product.txt.gz": "new_id\tpid\n0\t10\n1\t20\n",
    "mapping/train.txt.gz": "0\t0\t1\t900\n0\t1\t1\t901\n1\t0\t1\t902\n2\t1\t1\t903\n2\t0\t1\t904\n",
    "mapping/valid.txt.gz": "0\t1\t1\t905\n1\t1\t1\t906\n2\t0\t1\t907\n",
    "mapping/test.txt.gz": "0\t0\t1\t908\n1\t1\t1\t909\n2\t1\t1\t910\n",
}


def _write_source(d: Path, files: dict[str, str]) -> dict[str, str]:
    sums = {}
    for rel, text in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        data = gzip.compress(text.encode(), mtime=0) if rel.endswith(".gz") else text.encode()
        p.write_bytes(data)
        sums[rel] = hashlib.sha256(data).hexdigest()
    return sums


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A fake mirror of the published files (file:// URL), its sha256 patched in; empty cache, no shared data."""
    src = tmp_path / "mirror"
    monkeypatch.setattr(pearlm, "FILES", _write_source(src, FAKE))
    monkeypatch.setenv("KTUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv(pearlm.BASE_URL_ENV, raising=False)
    monkeypatch.setattr(registry, "shared_root", lambda: None)
    return src


def _error(capsys) -> str:
    """The CLI's error: exactly one ``ktup: error:`` line (progress notes may precede it)."""
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [x for x in lines if x.startswith("ktup: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], lines
    return errors[0]


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines()]


def test_fetch_converts_the_published_layout(fake_source, capsys):
    assert main(["datasets", "fetch", "ml1m-dbpedia", "--base-url", fake_source.as_uri()]) == 0
    dest = Path(capsys.readouterr().out.strip())
    assert dest == registry.cache_root() / "ml1m-dbpedia"
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        f"ml1m-dbpedia.{x}" for x in ("train.inter", "valid.inter", "test.inter", "kg", "link", "item"))
    assert [p.name for p in dest.parent.iterdir()] == ["ml1m-dbpedia"]          # temp folder removed
    assert _rows(dest / "ml1m-dbpedia.train.inter") == [
        ["user_id:token", "item_id:token", "timestamp:float"],
        ["101", "10", "900"], ["101", "20", "901"], ["102", "10", "902"], ["103", "20", "903"], ["103", "10", "904"]]
    # internal entity ids -> names; a shared name gets #eid; relation names; the repeated triple dropped
    assert _rows(dest / "ml1m-dbpedia.kg")[1:] == [
        ["Film_A", "directed_by", "Person_X"], ["Film_B", "directed_by", "Person_X"],
        ["Film_A", "related_to", "DVD#2"], ["Film_B", "related_to", "DVD#3"]]
    assert _rows(dest / "ml1m-dbpedia.link")[1:] == [["10", "Film_A"], ["20", "Film_B"]]
    assert _rows(dest / "ml1m-dbpedia.item")[2] == ["20", 'B "quoted" (1991)', "Comedy"]
    # then the name resolves from the cache and loads with its published split
    assert registry.resolve("ml1m-dbpedia").origin == "cache"
    ds = load_dataset(DataConfig(dataset="ml1m-dbpedia", dedup=False))   # the fake repeats pairs across splits
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (5, 3, 3)
    assert ds.item_title(ds.items.index("20")) == 'B "quoted" (1991)'


def test_base_url_from_environment_and_cached_afterwards(fake_source, monkeypatch):
    monkeypatch.setenv(pearlm.BASE_URL_ENV, fake_source.as_uri())
    dest = registry.fetch_dataset("ml1m-dbpedia")
    stamp = (dest / "ml1m-dbpedia.kg").stat().st_mtime_ns
    (fake_source / "kg_final.txt").unlink()                        # a second fetch uses the cache
    assert registry.fetch_dataset("ml1m-dbpedia") == dest
    assert (dest / "ml1m-dbpedia.kg").stat().st_mtime_ns == stamp


def test_wrong_checksum_names_the_file(fake_source, capsys):
    (fake_source / "kg_final.txt").write_text(FAKE["kg_final.txt"] + "1\t1\t4\n")
    assert main(["datasets", "fetch", "ml1m-dbpedia", "--base-url", fake_source.as_uri()]) == 2
    err = _error(capsys)
    assert "kg_final.txt has sha256" in err and f"expected {pearlm.FILES['kg_final.txt']}" in err and "retry" in err
    assert not (registry.cache_root() / "ml1m-dbpedia").exists()
    assert not list(registry.cache_root().glob(".fetch-*"))


def test_missing_file_names_the_file(fake_source, capsys):
    (fake_source / "mapping" / "test.txt.gz").unlink()
    assert main(["datasets", "fetch", "ml1m-dbpedia", "--base-url", fake_source.as_uri()]) == 2
    err = _error(capsys)
    assert "mapping/test.txt.gz: missing at file://" in err
    assert pearlm.BASE_URL_ENV in err
    assert not (registry.cache_root() / "ml1m-dbpedia").exists()


def test_no_network_is_one_clear_line(fake_source, capsys):
    # port 9 (discard) on loopback: nothing listens, the connection is refused at once
    assert main(["datasets", "fetch", "ml1m-dbpedia", "--base-url", "http://127.0.0.1:9/pearlm"]) == 2
    err = _error(capsys)
    assert "e_map.txt: cannot reach http://127.0.0.1:9/pearlm/e_map.txt" in err and "check the network" in err


def test_loading_by_name_fetches_when_not_cached(fake_source, monkeypatch, capsys):
    """What `ktup train --dataset ml1m-dbpedia` does on a fresh machine: fetch, convert, load."""
    monkeypatch.setenv(pearlm.BASE_URL_ENV, fake_source.as_uri())
    ds = load_dataset(DataConfig(dataset="ml1m-dbpedia", dedup=False))
    assert ds.meta["origin"] == "fetched" and len(ds.train) == 5 and ds.n_relations == 2
    assert "downloading ml1m-dbpedia" in capsys.readouterr().err
    assert load_dataset(DataConfig(dataset="ml1m-dbpedia", dedup=False)).meta["origin"] == "cache"


def test_train_without_cache_names_the_fetch_command(fake_source):
    with pytest.raises(KtupError, match="run `ktup datasets fetch ml1m-dbpedia`"):
        registry.resolve("ml1m-dbpedia", fetch=False)


def test_bad_content_is_a_line_numbered_error(tmp_path):
    files = dict(FAKE)
    files["mapping/valid.txt.gz"] = "0\t1\t1\t905\n7\t1\t1\t906\n"
    _write_source(tmp_path / "src", files)
    with pytest.raises(DataError, match=r"valid\.txt:2: user '7' is not in user\.txt"):
        pearlm.convert(tmp_path / "src", tmp_path / "out")
    files = dict(FAKE)
    files["kg_final.txt"] = "entity_head\trelation\tentity_tail\n0\t0\t4\n0\t5\n"
    _write_source(tmp_path / "src2", files)
    with pytest.raises(DataError, match=r"kg_final\.txt:3: expected 3 tab-separated fields, found 2"):
        pearlm.convert(tmp_path / "src2", tmp_path / "out2")


@pytest.mark.integration
def test_fetch_from_a_mirror_equals_the_shared_atomic_files(shared_datasets, tmp_path, monkeypatch):
    src = shared_datasets / "sources" / "pearlm-ml1m"
    ref = shared_datasets / "ml1m-dbpedia"
    if not src.is_dir() or not ref.is_dir():
        pytest.skip("the shared pearlm-ml1m sources or ml1m-dbpedia files are absent")
    monkeypatch.setenv("KTUP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv(pearlm.BASE_URL_ENV, src.as_uri())
    dest = registry.fetch_dataset("ml1m-dbpedia")
    names = sorted(p.name for p in ref.iterdir())
    assert sorted(p.name for p in dest.iterdir()) == names
    for n in names:                                   # same rows, same ids, same order
        assert (dest / n).read_bytes() == (ref / n).read_bytes(), n
    monkeypatch.setattr(registry, "shared_root", lambda: None)
    info = load_dataset(DataConfig(dataset="ml1m-dbpedia")).info()
    assert (info["users"], info["items"], info["interactions"], info["triples"]) == (6040, 2983, 932293, 193089)
    assert json.loads(json.dumps(info))["relations"] == 11
