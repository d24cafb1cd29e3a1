"""Issue 17 items 6 and 7: a byte-order mark at the start of any file of any layout is dropped
(it once split KGAT's user 0 in two), and a header line repeated inside a file is refused
with its line number (it once loaded as a relation named ``relation_id:token``).
Each case runs with both table engines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ktup.config import DataConfig
from ktup.data import tables
from ktup.data.registry import load_dataset
from ktup.errors import DataError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reliability.corpus import BOM, VALID, write_files  # noqa: E402


@pytest.fixture(params=["arrow", "pandas"])
def engine(request, monkeypatch):
    if request.param == "arrow" and not tables.HAVE_ARROW:
        pytest.skip("pyarrow not installed")
    monkeypatch.setattr(tables, "ENGINE", request.param)
    return request.param


def kgcn_files() -> dict[str, bytes]:
    ratings = "".join(f"{u}\t{i}\t1\n" for u in range(8) for i in range(6) if (u + i) % 6 != 5)
    kg = "".join(f"{k}\t0\t{6 + k % 2}\n" for k in range(6)) + "".join(f"{k}\t1\t{8 + k % 3}\n" for k in range(6))
    return {"ratings_final.txt": ratings.encode(), "kg_final.txt": kg.encode()}


LAYOUTS = {**VALID, "kgcn": kgcn_files}
EVERY_FILE = [(fmt, name) for fmt, fn in LAYOUTS.items() for name in fn()]


def _load(d: Path):
    return load_dataset(DataConfig(dataset=str(d), drop_unlinked=False))


def _tokens(ds) -> list[str]:
    return [t for m in (ds.users, ds.items, ds.entities, ds.relations) for t in m.tokens]


@pytest.mark.parametrize("fmt,name", EVERY_FILE, ids=[f"{f}:{n}" for f, n in EVERY_FILE])
def test_bom_is_dropped_by_every_reader(fmt, name, engine, tmp_path):
    plain = _load(write_files(tmp_path / "a" / "toy", LAYOUTS[fmt]()))
    files = LAYOUTS[fmt]()
    files[name] = BOM + files[name]
    ds = _load(write_files(tmp_path / "b" / "toy", files))
    assert not any("\ufeff" in t for t in _tokens(ds))
    assert _tokens(ds) == _tokens(plain)                       # same ids, same order: nothing split
    assert ds.n_interactions == plain.n_interactions and len(ds.kg_train) == len(plain.kg_train)


def test_kgat_bom_no_longer_splits_user_0(engine, tmp_path):
    files = VALID["kgat"]()
    files["train.txt"] = BOM + files["train.txt"]
    ds = _load(write_files(tmp_path / "toy", files))
    assert ds.users.tokens.count("0") == 1 and ds.n_users == 8


KG_HEADER = "head_id:token\trelation_id:token\ttail_id:token"


@pytest.mark.parametrize("where", [2, 5, 15], ids=["first-row", "middle", "last-row"])
def test_repeated_header_is_refused_with_its_line(where, engine, tmp_path):
    files = VALID["recbole"]()
    lines = files["toy.kg"].decode().split("\n")
    lines.insert(where - 1, KG_HEADER)
    files["toy.kg"] = "\n".join(lines).encode()
    with pytest.raises(DataError) as e:
        _load(write_files(tmp_path / "toy", files))
    assert str(e.value).endswith(f"toy.kg:{where}: header line repeated as data (value 'head_id:token'); "
                                 "remove the repeated header")
    assert "\n" not in str(e.value)


def test_repeated_header_with_float_columns_names_the_line(engine, tmp_path):
    files = VALID["recbole"]()
    text = files["toy.inter"].decode()
    files["toy.inter"] = (text + text.split("\n", 1)[0] + "\n" + "u0\ti0\t3\t999\n").encode()
    with pytest.raises(DataError, match=r"toy\.inter:42: header line repeated as data"):
        _load(write_files(tmp_path / "toy", files))


def test_a_value_merely_containing_a_header_name_is_data(engine, tmp_path):
    files = VALID["recbole"]()
    files["toy.kg"] += b"m0\trelation_id:tokenized\tg1\n"
    ds = _load(write_files(tmp_path / "toy", files))
    assert "relation_id:tokenized" in ds.relations.tokens
