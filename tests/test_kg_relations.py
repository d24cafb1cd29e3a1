"""data.kg_relations / data.kg_drop_relations: train on a subset of the KG's relations."""

from __future__ import annotations

from pathlib import Path

import pytest

from ktup.config import Config, DataConfig
from ktup.data.registry import load_dataset
from ktup.errors import KtupError

INTER = "user_id:token\titem_id:token\n" "u1\ti1\n" "u1\ti2\n" "u2\ti1\n" "u2\ti3\n" "u3\ti2\n" "u3\ti3\n"
KG = ("head_id:token\trelation_id:token\ttail_id:token\n"
      "m1\tgenre\tg1\n" "m2\tgenre\tg1\n" "m3\tgenre\tg2\n" "m1\tdirector\td1\n" "m2\tdirector\td1\n"
      "m3\twiki\tw1\n" "m1\twiki\tw1\n")
LINK = "item_id:token\tentity_id:token\n" "i1\tm1\n" "i2\tm2\n" "i3\tm3\n"


def toy(tmp_path: Path) -> str:
    d = tmp_path / "toy"
    d.mkdir()
    for name, text in (("toy.inter", INTER), ("toy.kg", KG), ("toy.link", LINK)):
        (d / name).write_text(text)
    return str(d)


def triples(ds) -> set[tuple[str, str, str]]:
    return {(ds.entities.token(h), ds.relations.token(r), ds.entities.token(t)) for h, r, t in ds.kg_all}


def test_default_keeps_every_relation(tmp_path):
    ds = load_dataset(DataConfig(dataset=toy(tmp_path), kg_split_ratios=(1, 0, 0)))
    assert ds.n_relations == 3 and len(triples(ds)) == 7 and "kg_relations" not in ds.meta["filters"]


def test_keep_list(tmp_path):
    ds = load_dataset(DataConfig(dataset=toy(tmp_path), kg_split_ratios=(1, 0, 0), kg_relations=("director", "genre")))
    assert sorted(ds.relations.tokens) == ["director", "genre"]
    assert {r for _, r, _ in triples(ds)} == {"director", "genre"} and len(triples(ds)) == 5
    assert "w1" not in ds.entities   # a tail only the dropped relation named is gone
    assert ds.n_linked_items == 3     # items keep their entities
    assert ds.meta["filters"]["kg_relations"] == {"relations_kept": 2, "triples_removed": 2}


def test_drop_list_from_the_command_line_syntax(tmp_path):
    cfg = Config().apply_overrides([f"dataset={toy(tmp_path)}", "kg_split_ratios=[1,0,0]", "kg_drop_relations=[wiki,genre]"])
    ds = load_dataset(cfg.data)
    assert ds.relations.tokens == ["director"] and len(triples(ds)) == 2


def test_unknown_relation_is_a_one_line_error_naming_key_and_choices(tmp_path):
    with pytest.raises(KtupError) as e:
        load_dataset(DataConfig(dataset=toy(tmp_path), kg_drop_relations=("wikki",)))
    msg = str(e.value)
    assert "\n" not in msg and "data.kg_drop_relations" in msg and "'wikki'" in msg and "genre, director, wiki" in msg


def test_nothing_left_is_an_error(tmp_path):
    with pytest.raises(KtupError, match="leave no relation"):
        load_dataset(DataConfig(dataset=toy(tmp_path), kg_relations=("wiki",), kg_drop_relations=("wiki",)))
