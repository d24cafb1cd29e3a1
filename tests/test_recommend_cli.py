"""`ktup recommend` / `ktup explain` through ktup.cli.main, with the run loader faked."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ktup.cli import main
from ktup.explain import Recommender

from _explain_fakes import FakeModel, tiny_dataset


@pytest.fixture
def fake_runs(monkeypatch):
    """RUN_DIR "ktup" → ktup-like fake, "bpr" → a model without preferences."""
    def load(cls, run_dir, checkpoint="best", device="cpu", **kw):
        m = FakeModel(top=0)
        if str(run_dir) == "bpr":
            m.name, m.explains = "bpr", False
        return cls(m, tiny_dataset(entity_names=True))
    monkeypatch.setattr(Recommender, "load", classmethod(load))


def test_recommend_one_user_text_and_json(fake_runs, capsys):
    assert main(["recommend", "ktup", "--user", "7", "-k", "2"]) == 0
    out = capsys.readouterr().out
    assert "Top-2 for user 7 (ktup, items already seen left out)" in out and "Cast Away" in out and "Forrest Gump" not in out
    assert main(["recommend", "ktup", "--user", "7", "-k", "5", "--include-seen"]) == 0
    out = capsys.readouterr().out
    assert "items already seen included" in out and "Forrest Gump" in out
    assert main(["recommend", "ktup", "--user", "7", "-k", "2", "--json", "--explain"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["user"] == "7" and [r["rank"] for r in data["items"]] == [1, 2]
    assert {r["item"] for r in data["items"]} == {"30", "50"}
    assert all("explanation" in r for r in data["items"])


def test_recommend_batch_csv_and_jsonl(fake_runs, capsys, tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("# users\n9\n\n7\n")
    assert main(["recommend", "ktup", "--users", str(users), "-k", "3"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user"], r["rank"]) for r in rows] == [("9", "1"), ("9", "2"), ("9", "3"), ("7", "1"), ("7", "2")]
    direct = Recommender.load("ktup").recommend(["9", "7"], k=3)
    assert [r["item"] for r in rows] == [x["item"] for lst in direct for x in lst]
    out = tmp_path / "all.jsonl"
    assert main(["recommend", "ktup", "--all-users", "--json", "-k", "2", "--output", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["user"] for x in lines] == ["7", "8", "9"]
    assert all(len(x["items"]) == 2 for x in lines)
    assert main(["recommend", "ktup", "--all-users", "-k", "2", "--explain"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows[0]["relation"] == "film.film.directed_by"


def test_recommend_errors_are_one_line(fake_runs, capsys, tmp_path):
    assert main(["recommend", "ktup", "--user", "404"]) == 2
    assert capsys.readouterr().err.strip() == "ktup: error: unknown user '404'"
    users = tmp_path / "users.txt"
    users.write_text("7\nghost\n")
    assert main(["recommend", "ktup", "--users", str(users)]) == 2
    assert f"{users}:2: unknown user 'ghost'" in capsys.readouterr().err
    assert main(["recommend", "ktup", "--users", str(tmp_path / "missing.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["recommend", "bpr", "--user", "7", "--explain"]) == 2
    assert "explanations are unavailable for bpr: it has no preferences" in capsys.readouterr().err


def test_explain_cli(fake_runs, capsys):
    assert main(["explain", "ktup", "--user", "7", "--item", "30"]) == 0
    out = capsys.readouterr().out
    assert "Reason: \"directed by\"" in out and "Robert Zemeckis" in out
    assert main(["explain", "ktup", "--user", "7", "--item", "30", "50", "--json"]) == 0
    xs = json.loads(capsys.readouterr().out)
    assert [x["item"] for x in xs] == ["30", "50"]
    assert main(["explain", "bpr", "--user", "7", "--item", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ktup: error: explanations are unavailable for bpr: it has no preferences") and err.count("\n") == 1
    assert main(["explain", "ktup", "--user", "7", "--item", "999"]) == 2
    assert "unknown item '999'" in capsys.readouterr().err


def test_one_user_as_csv(fake_runs, capsys):
    assert main(["recommend", "ktup", "--user", "7", "-k", "2", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["user"], r["rank"], r["title"]) for r in rows] == [("7", "1", rows[0]["title"]), ("7", "2", rows[1]["title"])]
    assert {r["item"] for r in rows} == {"30", "50"}


def test_explain_cli_seen_item_and_ids(monkeypatch, capsys):
    """`ktup explain` on an item the user already has says so; Freebase mids read "an entity"
    unless --ids is given (explain and recommend --explain)."""
    def load(cls, run_dir, checkpoint="best", device="cpu", **kw):
        d = tiny_dataset()
        d.entities = type(d.entities)(["fA", "fB", "fC", "fD", "m.0zemeckis", "m.0cameron", "m.0hanks"], "entity")
        d.item_info["title"] = ["Forrest Gump", "Back to the Future", "Cast Away", "Titanic", "Unlinked Film, The"]
        return cls(FakeModel(top=0), d)
    monkeypatch.setattr(Recommender, "load", classmethod(load))
    assert main(["explain", "ktup", "--user", "7", "--item", "10"]) == 0       # Forrest Gump: in 7's train history
    out = capsys.readouterr().out
    assert "You already have this item" in out
    assert main(["explain", "ktup", "--user", "7", "--item", "30"]) == 0
    out = capsys.readouterr().out
    assert "already have" not in out and "m.0zemeckis" not in out and "an entity" in out
    assert main(["explain", "ktup", "--user", "7", "--item", "30", "--ids"]) == 0
    assert "m.0zemeckis" in capsys.readouterr().out
    assert main(["recommend", "ktup", "--user", "8", "-k", "5", "--explain", "--include-seen"]) == 0
    out = capsys.readouterr().out
    assert "m.0" not in out and "The Unlinked Film" in out
    assert main(["recommend", "ktup", "--user", "8", "-k", "5", "--explain", "--ids"]) == 0
    assert "m.0" in capsys.readouterr().out
