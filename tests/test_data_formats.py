"""Readers of the three layouts, format detection, and the one-line errors on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ktup.config import DataConfig
from ktup.data import tables
from ktup.data.dataset import UNLINKED
from ktup.data.formats import detect_format
from ktup.data.registry import load_dataset
from ktup.errors import DataError, KtupError

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti1\t5\t100\n" "u1\ti2\t3\t101\n" "u1\ti3\t4\t102\n"
    "u2\ti1\t2\t103\n" "u2\ti4\t5\t104\n" "u3\ti2\t1\t105\n" "u3\ti3\t4\t106\n"
)
KG = ("head_id:token\trelation_id:token\ttail_id:token\n"
      "m1\tgenre\tg1\n" "m2\tgenre\tg1\n" "m3\tgenre\tg2\n" "m1\tdirector\td1\n" "d1\tborn_in\tcity\n")
LINK = "item_id:token\tentity_id:token\n" "i1\tm1\n" "i2\tm2\n" "i3\tm3\n"
ITEM = "item_id:token\tmovie_title:token_seq\tyear:token\n" "i1\tToy Story\t1995\n" "i2\tHeat\t1995\n"


def write(d: Path, files: dict[str, str | bytes]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return d


def load(d: Path, **kw) -> object:
    kw.setdefault("drop_unlinked", False)
    return load_dataset(DataConfig(dataset=str(d), **kw))


@pytest.fixture(params=["arrow", "pandas"])
def engine(request, monkeypatch):
    """Run a test with each table engine (pyarrow fast path and pandas' C parser fallback)."""
    if request.param == "arrow" and not tables.HAVE_ARROW:
        pytest.skip("pyarrow not installed")
    monkeypatch.setattr(tables, "ENGINE", request.param)
    return request.param


# ----------------------------------------------------------------------------- RecBole
def test_recbole_basic(tmp_path, engine):
    d = write(tmp_path / "toy", {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK, "toy.item": ITEM})
    assert detect_format(d) == ("recbole", "toy")
    ds = load(d)
    assert ds.meta["format"] == "recbole"
    assert ds.users.tokens == ["u1", "u2", "u3"]          # order of first appearance
    assert ds.items.tokens == ["i1", "i2", "i3", "i4"]
    assert ds.n_interactions == 7
    assert ds.relations.tokens == ["genre", "director", "born_in"]
    assert ds.info()["triples"] == 5
    # entities: every head/tail; item i1 -> m1, i4 unlinked
    assert set(ds.entities.tokens) == {"m1", "m2", "m3", "g1", "g2", "d1", "city"}
    assert ds.entities.token(ds.item_entity[ds.items.index("i1")]) == "m1"
    assert ds.item_entity[ds.items.index("i4")] == UNLINKED
    assert ds.n_linked_items == 3
    assert ds.item_title(ds.items.index("i2")) == "Heat" and ds.item_title(ds.items.index("i4")) is None
    allr = np.concatenate([ds.train.ratings, ds.valid.ratings, ds.test.ratings])
    assert sorted(allr.tolist()) == [1, 2, 3, 4, 4, 5, 5]
    kg = ds.kg_all
    g = ds.relations.index("genre")
    assert {(ds.entities.token(h), ds.entities.token(t)) for h, r, t in kg if r == g} == {("m1", "g1"), ("m2", "g1"), ("m3", "g2")}


def test_typed_header_any_order_extra_columns(tmp_path, engine):
    inter = ("timestamp:float\tnote:token_seq\titem_id:token\tscore:float_seq\tuser_id:token\trating:float\n"
             "100\ta b c\ti1\t1 2\tu1\t5\n" "101\t\ti2\t\tu1\t3\n" "102\tx\ti1\t3\tu2\t4\n")
    d = write(tmp_path / "toy", {"toy.inter": inter, "toy.kg": KG, "toy.link": LINK})
    ds = load(d)
    assert ds.n_users == 2 and ds.n_items == 2 and ds.n_interactions == 3
    rows = {(ds.users.token(u), ds.items.token(i), float(r), float(t))
            for s in (ds.train, ds.valid, ds.test) for u, i, r, t in zip(s.users, s.items, s.ratings, s.timestamps)}
    assert rows == {("u1", "i1", 5.0, 100.0), ("u1", "i2", 3.0, 101.0), ("u2", "i1", 4.0, 102.0)}


def test_untyped_optional_columns_absent(tmp_path, engine):
    d = write(tmp_path / "toy", {"toy.inter": "user_id:token\titem_id:token\n1\t2\n1\t3\n"})
    ds = load(d)
    assert ds.train.ratings is None and ds.train.timestamps is None
    assert ds.n_relations == 0 and ds.n_linked_items == 0


def test_windows_line_endings(tmp_path, engine):
    d1 = write(tmp_path / "a" / "toy", {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK, "toy.item": ITEM})
    crlf = {k: v.replace("\n", "\r\n") for k, v in {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK, "toy.item": ITEM}.items()}
    d2 = write(tmp_path / "b" / "toy", crlf)
    a, b = load(d1), load(d2)
    assert a.users.tokens == b.users.tokens and a.entities.tokens == b.entities.tokens
    assert a.meta["split"]["hash"] == b.meta["split"]["hash"]
    assert b.item_title(b.items.index("i1")) == "Toy Story"


def test_presplit_files_used_as_given(tmp_path, engine):
    files = {
        "toy.train.inter": "user_id:token\titem_id:token\n" "u1\ti1\nu1\ti2\nu2\ti1\nu2\ti3\n",
        "toy.valid.inter": "user_id:token\titem_id:token\n" "u1\ti3\n",
        "toy.test.inter": "user_id:token\titem_id:token\n" "u2\ti2\nu3\ti1\n",
        "toy.kg": KG, "toy.link": LINK,
    }
    d = write(tmp_path / "toy", files)
    ds = load(d, split="random")
    assert ds.meta["split"]["method"] == "given"
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (4, 1, 2)
    test_pairs = {(ds.users.token(u), ds.items.token(i)) for u, i in zip(ds.test.users, ds.test.items)}
    assert test_pairs == {("u2", "i2"), ("u3", "i1")}


def test_presplit_incomplete_is_an_error(tmp_path):
    d = write(tmp_path / "toy", {"toy.train.inter": "user_id:token\titem_id:token\n1\t2\n"})
    with pytest.raises(DataError, match="missing toy.valid.inter, toy.test.inter"):
        load(d)


def test_link_entity_absent_from_kg_is_valid_and_orphan_link_reported(tmp_path, engine):
    link = LINK + "i4\tm_lonely\n" "i99\tm99\n"        # i99 has no interaction
    d = write(tmp_path / "toy", {"toy.inter": INTER, "toy.kg": KG, "toy.link": link})
    ds = load(d)
    e = ds.item_entity[ds.items.index("i4")]
    assert ds.entities.token(e) == "m_lonely"         # an entity without triples
    assert "m99" not in ds.entities                   # its item was never interacted with
    assert "i99" not in ds.items
    assert ds.meta["filters"]["links"]["items_without_interactions"] == 1
    assert any("1 linked item(s) have no interaction" in line for line in ds.meta["report"])


def test_drop_unlinked_removes_items_and_counts(tmp_path, engine):
    d = write(tmp_path / "toy", {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK})
    ds = load(d, drop_unlinked=True)
    assert "i4" not in ds.items and ds.n_items == 3 and ds.n_interactions == 6
    assert ds.meta["filters"]["drop_unlinked"] == {"interactions_removed": 1, "items_removed": 1}
    assert (ds.item_entity != UNLINKED).all()


# ----------------------------------------------------------------------------- bad input
BAD = [
    # (file name, content, line, message fragment)
    ("toy.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\nu1\ti2\t4\t9\n", 3, "expected 3 tab-separated fields, found 4"),
    ("toy.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\nu1\ti2\n", 3, "expected 3 tab-separated fields, found 2"),
    ("toy.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\nu1\ti2\tfive\n", 3, "non-numeric rating 'five'"),
    ("toy.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\t5\nu1\ti2\t\n", 3, "non-numeric rating ''"),
    ("toy.inter", "user_id:token\titem_id:token\trating:float\nu1\ti1\tnan\n", 2, "rating 'nan' is not a finite number"),
    ("toy.inter", "user_id:token\titem_id:token\nu1\ti1\n\ti2\n", 3, "empty user_id"),
    ("toy.inter", "user_id:token\tratng:float\nu1\t5\n", 1, "missing required column 'item_id'"),
    ("toy.inter", "", 1, "empty file"),
    ("toy.inter", "user_id:token\titem_id:tokn\nu1\ti1\n", 1, "unknown type 'tokn' of column 'item_id'"),
    ("toy.inter", b"user_id:token\titem_id:token\nu1\ti1\nu2\ti\xff2\n", 3, "not valid UTF-8 (byte 0xff"),
    ("toy.kg", "head_id:token\trelation_id:token\ttail_id:token\nm1\tr\tm2\nm1\tr\n", 3, "expected 3 tab-separated fields, found 2"),
    ("toy.kg", "head_id:token\ttail_id:token\nm1\tm2\n", 1, "missing required column 'relation_id'"),
    ("toy.link", "item_id:token\tentity_id:token\ni1\tm1\ni2\tm2\ni2\tm2\ni1\tm3\n", 5, "item 'i1' is linked to a second entity (first link on line 2)"),
]


@pytest.mark.parametrize("fname,content,line,fragment", BAD)
def test_bad_recbole_input_names_file_and_line(tmp_path, engine, fname, content, line, fragment):
    files = {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK}
    files[fname] = content
    d = write(tmp_path / "toy", files)
    with pytest.raises(DataError) as ei:
        load(d)
    err = ei.value
    assert Path(err.path).name == fname
    assert err.line == line
    assert fragment in err.message
    assert str(err).startswith(f"{d / fname}:{line}: ")
    assert "\n" not in str(err)


def test_cli_reports_bad_input_on_one_line(tmp_path, capsys):
    from ktup.cli import main

    d = write(tmp_path / "toy", {"toy.inter": "user_id:token\titem_id:token\trating:float\nu1\ti1\tx\n"})
    assert main(["datasets", "info", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ktup: error: {d / 'toy.inter'}:2: non-numeric rating 'x'"


def test_no_dataset_in_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KtupError, match="no dataset found"):
        detect_format(tmp_path / "empty")


def test_rating_threshold_without_ratings(tmp_path):
    d = write(tmp_path / "toy", {"toy.inter": "user_id:token\titem_id:token\n1\t2\n"})
    with pytest.raises(KtupError, match="rating_threshold=3.0 is set but toy has no rating column"):
        load(d, rating_threshold=3.0)


# ----------------------------------------------------------------------------- KTUP authors
def authors_files() -> dict[str, str]:
    return {
        "u_map.dat": "0\t196\n1\t186\n2\t22\n",
        "i_map.dat": "0\t242\n1\t302\n2\t377\n3\t51\n",
        "train.dat": "0\t0\t3\n0\t1\t4\n1\t1\t5\n1\t2\t1\n2\t3\t2\n2\t0\t4\n",
        "valid.dat": "0\t2\t5\n",
        "test.dat": "1\t3\t4\n2\t2\t3\n",
        "i2kg_map.tsv": "242\tKolya (1996)\thttp://dbpedia.org/resource/Kolya\n"
                        "302\tL.A. Confidential (1997)\thttp://dbpedia.org/resource/L.A._Confidential\n"
                        "377\tHeavyweights (1994)\thttp://dbpedia.org/resource/Heavyweights\n",
        "kg/e_map.dat": "0\thttp://dbpedia.org/resource/Kolya\n1\thttp://dbpedia.org/resource/Czech\n"
                        "2\thttp://dbpedia.org/resource/L.A._Confidential\n3\thttp://dbpedia.org/resource/Heavyweights\n",
        "kg/r_map.dat": "0\thttp://dbpedia.org/ontology/language\n1\thttp://dbpedia.org/ontology/country\n",
        # head TAIL relation
        "kg/train.dat": "0\t1\t0\n2\t1\t1\n3\t1\t0\n",
        "kg/valid.dat": "0\t1\t1\n",
        "kg/test.dat": "2\t1\t0\n",
    }


def test_ktup_authors_layout(tmp_path, engine):
    d = write(tmp_path / "ml1m", authors_files())
    assert detect_format(d) == ("ktup", None)
    ds = load(d)
    assert ds.meta["format"] == "ktup" and ds.meta["split"]["method"] == "given" and ds.meta["split"]["kg_method"] == "given"
    assert ds.users.tokens == ["196", "186", "22"]       # original ids, not the indices
    assert set(ds.items.tokens) == {"242", "302", "377", "51"}
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (6, 1, 2)
    assert (len(ds.kg_train), len(ds.kg_valid), len(ds.kg_test)) == (3, 1, 1)
    # column order: file has head, tail, relation
    h, r, t = ds.kg_train[0]
    assert ds.entities.token(h).endswith("/Kolya") and ds.entities.token(t).endswith("/Czech")
    assert ds.relations.token(r).endswith("/language")
    kolya = ds.items.index("242")
    assert ds.entities.token(ds.item_entity[kolya]).endswith("/Kolya")
    assert ds.item_title(kolya) == "Kolya (1996)"
    assert ds.item_entity[ds.items.index("51")] == UNLINKED
    u = ds.users.index("186")
    assert sorted(ds.items.token(i) for i in ds.test.items[ds.test.users == u]) == ["51"]


def test_ktup_authors_unknown_index(tmp_path, engine):
    files = authors_files()
    files["test.dat"] = "1\t3\t4\n7\t2\t3\n"
    d = write(tmp_path / "ml1m", files)
    with pytest.raises(DataError) as ei:
        load(d)
    assert Path(ei.value.path).name == "test.dat" and ei.value.line == 2
    assert "user index '7' is not in u_map.dat" in ei.value.message


# ----------------------------------------------------------------------------- KGAT
def kgat_files() -> dict[str, str]:
    return {
        "train.txt": "0 0 1 2 3 4 5 6 7 8\n1 1 2 3 4 5 6 7 8 9\n2 0 2\n",
        "test.txt": "0 9\n1 0\n2 5\n",
        "kg_final.txt": "0 0 10\n1 0 10\n2 1 11\n3 0 12\n10 2 11\n",
        "item_list.txt": "org_id remap_id freebase_id\n" + "".join(f"{100 + i} {i} m.{i}\n" for i in range(10)),
        "entity_list.txt": "org_id remap_id\n" + "".join(f"m.{i} {i}\n" for i in range(13)),
        "relation_list.txt": "org_id remap_id\nfilm.genre 0\nfilm.director 1\nperson.born 2\n",
    }


def test_kgat_layout_carves_valid_from_train(tmp_path, engine):
    d = write(tmp_path / "kgat", kgat_files())
    assert detect_format(d) == ("kgat", None)
    ds = load(d, split_seed=3)
    assert ds.meta["format"] == "kgat"
    assert ds.n_users == 3 and ds.n_items == 10 and ds.n_interactions == 23
    # 1/9 of train per user, RecBole's rounding: users 0 and 1 (9 rows) give 1, user 2 (2 rows) gives 1
    assert len(ds.test) == 3 and len(ds.valid) == 3 and len(ds.train) == 17
    # item i is entity i
    for i in range(ds.n_items):
        assert ds.entities.token(ds.item_entity[i]) == ds.items.token(i)
    assert ds.entity_name(ds.entities.index("10")) == "m.10"
    assert ds.meta["relation_names"] == ["film.genre", "film.director", "person.born"]
    again = load(d, split_seed=3)
    assert again.meta["split"]["hash"] == ds.meta["split"]["hash"]


def test_kgat_bad_kg_line(tmp_path, engine):
    files = kgat_files()
    files["kg_final.txt"] = "0 0 10\n1 0\n"
    d = write(tmp_path / "kgat", files)
    with pytest.raises(DataError) as ei:
        load(d)
    assert Path(ei.value.path).name == "kg_final.txt" and ei.value.line == 2
    assert "expected 3 space-separated fields, found 2" in ei.value.message


def test_both_engines_build_the_same_dataset(tmp_path, monkeypatch):
    d = write(tmp_path / "toy", {"toy.inter": INTER, "toy.kg": KG, "toy.link": LINK, "toy.item": ITEM})
    got = []
    for eng in (["arrow"] if tables.HAVE_ARROW else []) + ["pandas"]:
        monkeypatch.setattr(tables, "ENGINE", eng)
        ds = load(d)
        got.append((ds.users.tokens, ds.items.tokens, ds.entities.tokens, ds.relations.tokens,
                    ds.meta["split"]["hash"], ds.item_info["title"]))
    assert all(g == got[0] for g in got)


def test_kgcn_layout_drops_negatives_and_splits_as_configured(tmp_path, engine):
    ratings = "".join(f"{u}\t{i}\t{int((u + i) % 3 != 0)}\n" for u in range(4) for i in range(6))
    kg = "0\t0\t6\n1\t0\t6\n2\t1\t7\n3\t1\t7\n4\t0\t8\n5\t1\t8\n"
    d = write(tmp_path / "music", {"ratings_final.txt": ratings, "kg_final.txt": kg})
    assert detect_format(d) == ("kgcn", None)
    ds = load(d, split="loo")
    n_pos = sum((u + i) % 3 != 0 for u in range(4) for i in range(6))
    assert ds.n_interactions == n_pos and ds.meta["split"]["method"] == "loo"
    assert any("label-0 rows" in line for line in ds.meta["report"])
    for i in range(ds.n_items):
        assert ds.entities.token(ds.item_entity[i]) == ds.items.token(i)
    assert ds.info()["triples"] == 6 and ds.n_relations == 2
