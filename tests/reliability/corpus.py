"""The bad-input corpus: small valid datasets in the three layouts and a table of broken variants.

Each :class:`Case` names the files it writes (a valid dataset with some files replaced or
removed) and what must happen when it is loaded: ``expect="error"`` with the exact one-line
message fragment (file name and line number included), or ``expect="ok"`` with a check on the
loaded dataset (Windows line endings, duplicates counted, ...). The table is plain data so the
tests, the fuzzer and ``benchmarks/reliability.py`` share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

# ------------------------------------------------------------------ valid datasets
USERS = [f"u{k}" for k in range(8)]
ITEMS = [f"i{k}" for k in range(6)]


def _inter_rows() -> list[tuple[str, str, int, int]]:
    rows, t = [], 1000
    for u in range(8):
        for j in range(5):                    # each user: 5 of the 6 items
            i = (u + j) % 6
            rows.append((USERS[u], ITEMS[i], 1 + (u + j) % 5, t))
            t += 1
    return rows


def recbole_files(stem: str = "toy") -> dict[str, bytes]:
    """A valid RecBole atomic dataset: 8 users, 6 items (all linked), a 3-relation KG."""
    inter = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    inter += "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in _inter_rows())
    kg = "head_id:token\trelation_id:token\ttail_id:token\n"
    kg += "".join(f"m{k}\tgenre\tg{k % 2}\n" for k in range(6))
    kg += "".join(f"m{k}\tdirector\td{k % 3}\n" for k in range(6))
    kg += "d0\tborn_in\tparis\nd1\tborn_in\trome\n"
    link = "item_id:token\tentity_id:token\n" + "".join(f"i{k}\tm{k}\n" for k in range(6))
    item = "item_id:token\tmovie_title:token_seq\n" + "".join(f"i{k}\tFilm {k}\n" for k in range(6))
    return {f"{stem}.inter": inter.encode(), f"{stem}.kg": kg.encode(), f"{stem}.link": link.encode(),
            f"{stem}.item": item.encode()}


def ktup_files() -> dict[str, bytes]:
    """A valid KTUP authors' layout (indices into u_map/i_map/e_map/r_map; KG rows are head tail relation)."""
    rows = _inter_rows()
    parts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for n, (u, i, r, _) in enumerate(rows):
        p = "test" if n % 5 == 4 else "valid" if n % 5 == 3 else "train"
        parts[p].append(f"{USERS.index(u)}\t{ITEMS.index(i)}\t{r}\n")
    ents = [f"m{k}" for k in range(6)] + ["g0", "g1", "d0", "d1", "d2"]
    rels = ["genre", "director"]
    kg = [f"{k}\t{ents.index('g' + str(k % 2))}\t0\n" for k in range(6)]
    kg += [f"{k}\t{ents.index('d' + str(k % 3))}\t1\n" for k in range(6)]
    f = {f"{p}.dat": "".join(v).encode() for p, v in parts.items()}
    f["u_map.dat"] = "".join(f"{k}\t{u}\n" for k, u in enumerate(USERS)).encode()
    f["i_map.dat"] = "".join(f"{k}\t{i}\n" for k, i in enumerate(ITEMS)).encode()
    f["i2kg_map.tsv"] = "".join(f"{i}\tFilm {k}\thttp://kg/m{k}\n" for k, i in enumerate(ITEMS)).encode()
    f["kg/train.dat"] = "".join(kg[:10]).encode()
    f["kg/valid.dat"] = kg[10].encode()
    f["kg/test.dat"] = kg[11].encode()
    f["kg/e_map.dat"] = "".join(f"{k}\t{('http://kg/' + e) if e.startswith('m') else e}\n" for k, e in enumerate(ents)).encode()
    f["kg/r_map.dat"] = "".join(f"{k}\t{r}\n" for k, r in enumerate(rels)).encode()
    return f


def kgat_files() -> dict[str, bytes]:
    """A valid KGAT layout: adjacency lines ``user item item ...``; item i is entity i."""
    rows = _inter_rows()
    tr: dict[int, list[int]] = {}
    te: dict[int, list[int]] = {}
    for n, (u, i, _, _) in enumerate(rows):
        (te if n % 5 == 4 else tr).setdefault(USERS.index(u), []).append(ITEMS.index(i))
    train = "".join(f"{u} " + " ".join(map(str, v)) + "\n" for u, v in tr.items())
    test = "".join(f"{u} " + " ".join(map(str, v)) + "\n" for u, v in te.items())
    kg = "".join(f"{k} 0 {6 + k % 2}\n" for k in range(6)) + "".join(f"{k} 1 {8 + k % 3}\n" for k in range(6))
    return {"train.txt": train.encode(), "test.txt": test.encode(), "kg_final.txt": kg.encode()}


VALID = {"recbole": recbole_files, "ktup": ktup_files, "kgat": kgat_files}


def write_files(d: Path, files: dict[str, Optional[bytes]]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        p = d / name
        if data is None:
            continue
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return d


# ------------------------------------------------------------------ the table
@dataclass
class Case:
    id: str
    fmt: str                                   # recbole | ktup | kgat
    change: dict[str, Optional[bytes]]         # files replaced (None = removed)
    expect: str                                # "error" | "ok"
    fragment: str = ""                         # exact part of the one-line error (file:line: problem)
    check: Optional[Callable] = None           # for "ok": check(dataset) -> None (asserts)
    data: dict = field(default_factory=dict)   # DataConfig overrides
    what: str = ""

    def files(self) -> dict[str, Optional[bytes]]:
        f: dict[str, Optional[bytes]] = dict(VALID[self.fmt]())
        f.update(self.change)
        return f


def _edit(fmt: str, name: str, fn: Callable[[str], str]) -> dict[str, bytes]:
    return {name: fn(VALID[fmt]()[name].decode()).encode()}


def _line(text: str, k: int, new: str) -> str:
    """Replace 1-based line ``k``."""
    lines = text.split("\n")
    lines[k - 1] = new
    return "\n".join(lines)


def _check_crlf(ds) -> None:
    assert ds.n_users == 8 and ds.n_items == 6, (ds.n_users, ds.n_items)
    assert all("\r" not in t for t in ds.users.tokens + ds.items.tokens + ds.entities.tokens + ds.relations.tokens)


def _check_dup_triples(ds) -> None:
    assert ds.meta["filters"]["dedup"]["triples_removed"] == 2, ds.meta["filters"]


def _check_one_relation(ds) -> None:
    assert len(ds.relations) == 1 and len(ds.kg_train) > 0


def _check_link_unknown_entity(ds) -> None:
    # the linked entity that appears in no triple still becomes an entity (with no KG edge):
    # the item keeps its link and trains on its own embedding
    e = ds.item_entity[ds.items.index("i0")]
    assert e >= 0 and ds.entities.token(e) == "nowhere", e


def _check_cold_users(ds) -> None:
    # users who appear only in valid/test still get ids; they are simply not trained on
    assert "u_new" in ds.users.tokens
    assert ds.users.index("u_new") not in set(ds.train.users.tolist())


def _check_spaces(ds) -> None:
    assert "user 0" in ds.users.tokens, ds.users.tokens[:3]


def _check_bom(ds) -> None:
    assert ds.n_users == 8


RB, KT, KA = "recbole", "ktup", "kgat"
I_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"

CASES: list[Case] = [
    # ---------------- RecBole atomic
    Case("rb-empty-inter", RB, {"toy.inter": b""}, "error", "toy.inter:1: empty file"),
    Case("rb-header-only-blank", RB, {"toy.inter": b"\n\n"}, "error", "toy.inter:1: blank first line"),
    Case("rb-header-missing", RB, _edit(RB, "toy.inter", lambda t: t.split("\n", 1)[1]), "error",
         "toy.inter:1: missing required column 'user_id'"),
    Case("rb-unknown-type", RB, _edit(RB, "toy.inter", lambda t: t.replace("rating:float", "rating:double", 1)), "error",
         "toy.inter:1: unknown type 'double' of column 'rating'"),
    Case("rb-duplicate-column", RB, _edit(RB, "toy.inter", lambda t: t.replace("timestamp:float", "user_id:token", 1)), "error",
         "toy.inter:1: column 'user_id' appears twice"),
    Case("rb-too-few-fields", RB, _edit(RB, "toy.inter", lambda t: _line(t, 5, "u0\ti3\t4")), "error",
         "toy.inter:5: expected 4 tab-separated fields, found 3"),
    Case("rb-too-many-fields", RB, _edit(RB, "toy.inter", lambda t: _line(t, 7, "u1\ti1\t4\t1\textra")), "error",
         "toy.inter:7: expected 4 tab-separated fields, found 5"),
    Case("rb-truncated-last-line", RB, _edit(RB, "toy.inter", lambda t: t.rstrip("\n")[:-6]), "error",
         "toy.inter:41: expected 4 tab-separated fields, found 3"),
    Case("rb-non-numeric-rating", RB, _edit(RB, "toy.inter", lambda t: _line(t, 3, "u0\ti1\tfive\t1001")), "error",
         "toy.inter:3: non-numeric rating 'five'"),
    Case("rb-nan-timestamp", RB, _edit(RB, "toy.inter", lambda t: _line(t, 4, "u0\ti2\t3\tnan")), "error",
         "toy.inter:4: timestamp 'nan' is not a finite number"),
    Case("rb-empty-user", RB, _edit(RB, "toy.inter", lambda t: _line(t, 6, "\ti4\t3\t1004")), "error",
         "toy.inter:6: empty user_id"),
    Case("rb-non-utf8", RB, {"toy.inter": VALID[RB]()["toy.inter"].replace(b"u3\ti3", b"u\xff3\ti3", 1)}, "error",
         "toy.inter:17: not valid UTF-8 (byte 0xff"),
    Case("rb-non-utf8-header", RB, {"toy.kg": b"head_id:token\trelation\xe9:token\ttail_id:token\n"}, "error",
         "toy.kg:1: not valid UTF-8 (byte 0xe9"),
    Case("rb-kg-wrong-columns", RB, _edit(RB, "toy.kg", lambda t: _line(t, 9, "m1 director d1")), "error",
         "toy.kg:9: expected 3 tab-separated fields, found 1"),
    Case("rb-kg-missing-column", RB, {"toy.kg": b"head_id:token\ttail_id:token\nm0\tg0\n"}, "error",
         "toy.kg:1: missing required column 'relation_id'"),
    Case("rb-link-second-entity", RB, _edit(RB, "toy.link", lambda t: t + "i2\tm5\n"), "error",
         "toy.link:8: item 'i2' is linked to a second entity (first link on line 4)"),
    Case("rb-pre-split-missing-part", RB, {"toy.train.inter": VALID[RB]()["toy.inter"], "toy.inter": None,
                                           "toy.valid.inter": VALID[RB]()["toy.inter"]}, "error",
         "pre-split dataset is missing toy.test.inter"),
    Case("rb-no-dataset", RB, {"toy.inter": None}, "error", "no dataset found"),
    Case("rb-crlf", RB, {k: v.replace(b"\n", b"\r\n") for k, v in VALID[RB]().items()}, "ok", check=_check_crlf,
         what="Windows line endings load"),
    Case("rb-bom", RB, {"toy.inter": b"\xef\xbb\xbf" + VALID[RB]()["toy.inter"]}, "ok", check=_check_bom,
         what="a UTF-8 byte-order mark is accepted"),
    Case("rb-ids-with-spaces", RB, _edit(RB, "toy.inter", lambda t: t.replace("u0\t", "user 0\t")), "ok",
         check=_check_spaces, what="ids with spaces are tokens (tab-separated format)"),
    Case("rb-duplicate-triples", RB, _edit(RB, "toy.kg", lambda t: t + "m0\tgenre\tg0\nm1\tdirector\td1\n"), "ok",
         check=_check_dup_triples, what="duplicate triples are counted and dropped"),
    Case("rb-one-relation", RB, {"toy.kg": ("head_id:token\trelation_id:token\ttail_id:token\n"
                                            + "".join(f"m{k}\tgenre\tg{k % 2}\n" for k in range(6))).encode()},
         "ok", check=_check_one_relation, what="a KG with one relation trains"),
    Case("rb-link-unknown-entity", RB, _edit(RB, "toy.link", lambda t: t.replace("i0\tm0", "i0\tnowhere")), "ok",
         check=_check_link_unknown_entity, what="a link to an entity in no triple keeps the link"),
    Case("rb-kg-nothing-left", RB, {"toy.link": b"item_id:token\tentity_id:token\nzz\tm0\n"}, "error",
         "no interactions left after filtering", data={"drop_unlinked": True},
         what="no item linked: nothing to train on"),
    Case("rb-rating-threshold-no-column", RB, _edit(RB, "toy.inter", lambda t: "\n".join(
        "\t".join(x.split("\t")[:2]) for x in t.split("\n"))), "error",
         "data.rating_threshold=4.0 is set but toy has no rating column", data={"rating_threshold": 4.0}),
    # ---------------- KTUP authors' layout
    Case("kt-empty-train", KT, {"train.dat": b""}, "error", "train.dat: empty file"),
    Case("kt-missing-train", KT, {"train.dat": None, "valid.dat": None, "test.dat": None}, "error",
         "no dataset found"),
    Case("kt-wrong-columns", KT, _edit(KT, "train.dat", lambda t: _line(t, 4, "1\t2")), "error",
         "train.dat:4: expected 3 tab-separated fields, found 2"),
    Case("kt-non-numeric-rating", KT, _edit(KT, "valid.dat", lambda t: _line(t, 2, "1\t2\tgood")), "error",
         "valid.dat:2: non-numeric rating 'good'"),
    Case("kt-user-not-in-map", KT, _edit(KT, "test.dat", lambda t: _line(t, 3, "99\t1\t4")), "error",
         "test.dat:3: user index '99' is not in u_map.dat"),
    Case("kt-entity-not-in-map", KT, _edit(KT, "kg/train.dat", lambda t: _line(t, 2, "1\t77\t0")), "error",
         "train.dat:2: entity index '77' is not in e_map.dat"),
    Case("kt-relation-not-in-map", KT, _edit(KT, "kg/train.dat", lambda t: _line(t, 8, "1\t8\t5")), "error",
         "train.dat:8: relation index '5' is not in r_map.dat"),
    Case("kt-map-duplicate-index", KT, _edit(KT, "u_map.dat", lambda t: t + "3\tu_dup\n"), "error",
         "u_map.dat:9: index '3' appears twice"),
    Case("kt-map-missing", KT, {"kg/r_map.dat": None}, "error", "r_map.dat: file not found"),
    Case("kt-i2kg-short-line", KT, _edit(KT, "i2kg_map.tsv", lambda t: _line(t, 2, "i1\tFilm 1")), "error",
         "i2kg_map.tsv:2: expected 3 tab-separated fields, found 2"),
    Case("kt-non-utf8", KT, {"kg/e_map.dat": VALID[KT]()["kg/e_map.dat"] + b"11\tcaf\xe9\n"}, "error",
         "e_map.dat:12: not valid UTF-8 (byte 0xe9"),
    Case("kt-cold-users", KT, {"u_map.dat": VALID[KT]()["u_map.dat"] + b"8\tu_new\n",
                               "test.dat": VALID[KT]()["test.dat"] + b"8\t1\t5\n"}, "ok", check=_check_cold_users,
         what="a user absent from train (present in test) is kept, never trained on"),
    Case("kt-crlf", KT, {k: v.replace(b"\n", b"\r\n") for k, v in VALID[KT]().items()}, "ok", check=_check_crlf,
         what="Windows line endings load"),
    # ---------------- KGAT layout
    Case("ka-empty-train", KA, {"train.txt": b""}, "error", "train.txt: no interactions"),
    Case("ka-empty-kg", KA, {"kg_final.txt": b""}, "error", "kg_final.txt: empty file"),
    Case("ka-kg-wrong-columns", KA, _edit(KA, "kg_final.txt", lambda t: _line(t, 5, "4 0")), "error",
         "kg_final.txt:5: expected 3 space-separated fields, found 2"),
    Case("ka-kg-truncated", KA, _edit(KA, "kg_final.txt", lambda t: t.rstrip("\n")[:-2]), "error",
         "kg_final.txt:12: empty tail"),
    Case("ka-non-utf8", KA, {"test.txt": b"0 1 2\n1 \xfe3\n"}, "error", "test.txt:2: not valid UTF-8 (byte 0xfe)"),
    Case("ka-tab-kg", KA, {"kg_final.txt": VALID[KA]()["kg_final.txt"].replace(b" ", b"\t")}, "ok",
         check=_check_crlf, what="tab-separated kg_final.txt is sniffed"),
    Case("ka-crlf", KA, {k: v.replace(b"\n", b"\r\n") for k, v in VALID[KA]().items()}, "ok", check=_check_crlf,
         what="Windows line endings load"),
    Case("ka-duplicate-triples", KA, _edit(KA, "kg_final.txt", lambda t: t + "0 0 6\n1 1 9\n"), "ok",
         check=_check_dup_triples, what="duplicate triples are counted and dropped"),
]


# ------------------------------------------------------------------ bad configs
YAML_CASES = [
    ("unknown-key", "train:\n  epochz: 3\n", "unknown config key 'train.epochz' (did you mean 'epochs'?)"),
    ("unknown-section", "trainer:\n  epochs: 3\n", "unknown config key 'trainer'"),
    ("wrong-type", "train:\n  epochs: many\n", "train.epochs: expected int, got 'many'"),
    ("bool-for-int", "model:\n  embedding_size: true\n", "model.embedding_size: expected int, got True"),
    ("negative-size", "model:\n  embedding_size: -4\n", "model.embedding_size: must be > 0, got -4"),
    ("zero-batch", "train:\n  batch_size: 0\n", "train.batch_size: must be > 0, got 0"),
    ("lambda-above-1", "train:\n  joint_lambda: 1.5\n", "train.joint_lambda: must be within [0, 1], got 1.5"),
    ("lambda-below-0", "joint_lambda: -0.1\n", "train.joint_lambda: must be within [0, 1], got -0.1"),
    ("bad-choice", "model:\n  model: bert\n", "model.model: must be one of ktup, tup, transh, transe, bpr"),
    ("not-a-mapping", "- epochs\n- 3\n", "expected a mapping of keys to values at the top level"),
    ("yaml-syntax", "train: {epochs: 3\n", "not valid YAML"),
    ("non-utf8", b"train:\n  seed: \xff\n", "not valid YAML"),
    ("bad-ratios", "data:\n  split_ratios: [0.5, 0.5]\n", "data.split_ratios: expected three non-negative numbers"),
]

# YAML cases whose problem is the file itself (the message names the file)
YAML_FILE_LEVEL = ("not-a-mapping", "yaml-syntax", "non-utf8")

SET_CASES = [
    ("unknown-key", "epochz=3", "--set: unknown config key 'epochz' (did you mean 'epochs'?)"),
    ("unknown-section", "foo.lr=0.1", "unknown config section 'foo'"),
    ("no-equals", "epochs", "--set 'epochs': expected key=value"),
    ("wrong-type", "batch_size=big", "--set: train.batch_size: expected int, got 'big'"),
    ("float-for-int", "epochs=2.5", "train.epochs: expected int, got 2.5"),
    ("negative", "epochs=-1", "train.epochs: must be >= 0, got -1"),
    ("lambda", "joint_lambda=2", "train.joint_lambda: must be within [0, 1], got 2.0"),
    ("lr-zero", "lr=0", "train.lr: must be > 0, got 0.0"),
    ("ks", "ks=0", "eval.ks: expected a list of positive integers, got [0]"),
]


# ------------------------------------------------------------------ bad commands
def cli_cases(run: Path, tmp: Path) -> list[tuple[str, list[str], str]]:
    """``(name, argv, fragment)``; ``{u}``/``{i}`` stand for a real user/item of ``run`` (see fill_ids)."""
    user = "u0"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "a-file").write_text("a regular file")
    return [
        ("recommend-no-run", ["recommend", str(tmp / "nope"), "--user", user], "no such run directory"),
        ("recommend-not-a-run", ["recommend", str(tmp), "--user", user], "not a ktup run directory (run.json missing)"),
        ("recommend-unknown-user", ["recommend", str(run), "--user", "nobody"], "unknown user 'nobody'"),
        ("recommend-bad-k", ["recommend", str(run), "--user", "{u}", "-k", "0"], "-k must be a positive integer, got 0"),
        ("recommend-users-file-missing", ["recommend", str(run), "--users", str(tmp / "nofile.txt")],
         "nofile.txt: no such file"),
        ("recommend-exclude-unknown", ["recommend", str(run), "--user", "{u}", "--exclude", "zzz"], "unknown item 'zzz'"),
        ("recommend-output-under-file", ["recommend", str(run), "--all-users", "--output", str(tmp / "a-file" / "o.csv")],
         "o.csv: cannot write (Not a directory)"),
        ("recommend-bad-checkpoint", ["recommend", str(run), "--user", "{u}", "--checkpoint", "nosuch"],
         "nosuch.pt: checkpoint not found"),
        ("explain-unknown-item", ["explain", str(run), "--user", "{u}", "--item", "no-such-item"],
         "unknown item 'no-such-item'"),
        ("explain-unknown-user", ["explain", str(run), "--user", "ghost", "--item", "{i}"], "unknown user 'ghost'"),
        ("evaluate-no-run", ["evaluate", str(tmp / "nope")], "no such run directory"),
        ("evaluate-bad-checkpoint", ["evaluate", str(run), "--checkpoint", "nosuch"], "checkpoint not found"),
        ("evaluate-bad-protocol", ["evaluate", str(run), "--protocol", "nosuch"], "unknown evaluation protocol 'nosuch'"),
        ("evaluate-bad-k", ["evaluate", str(run), "--k", "ten"], "--k 'ten': expected comma-separated positive integers"),
        ("train-unknown-dataset", ["train", "--dataset", "no-such-dataset", "--out", str(tmp / "r")],
         "unknown dataset 'no-such-dataset'"),
        ("train-dataset-path-missing", ["train", "--dataset", "./missing/dir", "--out", str(tmp / "r")],
         "dataset path ./missing/dir: no such directory"),
        ("train-resume-missing", ["train", "--resume", str(tmp / "nope")], "no such run directory"),
        ("train-resume-and-model", ["train", "--resume", str(run), "--model", "tup"],
         "--model cannot be combined with --resume"),
        ("datasets-info-unknown", ["datasets", "info", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
        ("export-no-run", ["export", str(tmp / "nope"), "--to", str(tmp / "exp")], "no such run directory"),
        ("export-under-a-file", ["export", str(run), "--to", str(tmp / "a-file" / "exp")],
         "a-file is a file, not a directory"),
        ("serve-no-run", ["serve", str(tmp / "nope"), "--port", "0"], "nope: no such run directory or export folder"),
        ("serve-bad-port", ["serve", str(run), "--port", "99999"], "--port must be within 0..65535, got 99999"),
        ("serve-bad-workers", ["serve", str(run), "--workers", "0"], "--workers must be >= 1, got 0"),
    ]


def fill_ids(argv: list[str], run: Path) -> list[str]:
    from ktup.runs import load_run

    r = load_run(run)
    u = r.dataset.users.tokens[0]
    i = r.dataset.items.tokens[0]
    return [a.replace("{u}", u).replace("{i}", i) for a in argv]


# ------------------------------------------------------------------ more dataset cases (second batch)
def _check_loaded(ds) -> None:
    assert ds.n_users == 8 and ds.n_items == 6 and len(ds.relations) >= 1


def _mixed_endings(t: str) -> str:
    lines = t.split("\n")
    return "\n".join(x + "\r" if k % 2 and x else x for k, x in enumerate(lines))


def _check_no_kg(ds) -> None:
    assert len(ds.kg_train) == 0 and ds.n_users == 8


CASES += [
    Case("rb-header-no-rows", RB, {"toy.inter": (I_HEADER + "\n").encode()}, "error",
         "toy.inter:2: no interactions (the file holds only a header)"),
    Case("rb-empty-relation", RB, _edit(RB, "toy.kg", lambda t: _line(t, 4, "m2\t\tg0")), "error",
         "toy.kg:4: empty relation_id"),
    Case("rb-whitespace-header", RB, {"toy.inter": b" \t \n" + VALID[RB]()["toy.inter"].split(b"\n", 1)[1]}, "error",
         "toy.inter:1: blank first line: expected a header line"),
    Case("rb-link-non-utf8", RB, {"toy.link": VALID[RB]()["toy.link"] + b"i9\tm\xe99\n"}, "error",
         "toy.link:8: not valid UTF-8 (byte 0xe9"),
    Case("rb-mixed-line-endings", RB, _edit(RB, "toy.inter", _mixed_endings), "ok", check=_check_loaded,
         what="a file mixing LF and CRLF loads"),
    Case("rb-no-final-newline", RB, {k: v.rstrip(b"\n") for k, v in VALID[RB]().items()}, "ok", check=_check_loaded,
         what="no newline at the end of files"),
    Case("rb-trailing-blank-lines", RB, {k: v + b"\n\n\n" for k, v in VALID[RB]().items()}, "ok", check=_check_loaded,
         what="blank lines at the end are ignored"),
    Case("kt-rating-inf", KT, _edit(KT, "train.dat", lambda t: _line(t, 6, "1\t2\tinf")), "error",
         "train.dat:6: rating 'inf' is not a finite number"),
    Case("kt-no-kg", KT, {"kg/train.dat": None, "kg/valid.dat": None, "kg/test.dat": None}, "ok", check=_check_no_kg,
         what="no KG: loads (KG models then refuse to train with one line)"),
    Case("ka-item-list-short", KA, {"item_list.txt": b"org_id remap_id\n100 0\n101\n"}, "error",
         "item_list.txt:3: expected at least 2 space-separated fields, found 1"),
    Case("ka-user-without-items", KA, {"train.txt": VALID[KA]()["train.txt"] + b"42\n"}, "ok", check=_check_loaded,
         what="a KGAT line with a user and no items is skipped"),
    Case("ka-empty-kg-field", KA, _edit(KA, "kg_final.txt", lambda t: _line(t, 3, "2  6")), "error",
         "kg_final.txt:3: empty relation"),
]


# ------------------------------------------------------------------ issue 17: byte-order marks, repeated headers
BOM = b"\xef\xbb\xbf"


def _insert(text: str, k: int, new: str) -> str:
    """Insert ``new`` as 1-based line ``k``."""
    lines = text.split("\n")
    lines.insert(k - 1, new)
    return "\n".join(lines)


def _check_no_bom(ds) -> None:
    assert ds.n_users == 8 and ds.n_items == 6, (ds.n_users, ds.n_items)
    maps = (ds.users, ds.items, ds.entities, ds.relations)
    assert not any("\ufeff" in t for m in maps for t in m.tokens)


def bom_cases() -> list[Case]:
    """A byte-order mark at the start of each file of each layout loads as if absent."""
    out = []
    for fmt, prefix in ((RB, "rb"), (KT, "kt"), (KA, "ka")):
        for name, data in VALID[fmt]().items():
            out.append(Case(f"{prefix}-bom-{name.replace('/', '-')}", fmt, {name: BOM + data}, "ok",
                            check=_check_no_bom, what=f"a byte-order mark at the start of {name} is dropped"))
    return out


CASES += [c for c in bom_cases() if c.id != "rb-bom-toy.inter"]   # rb-bom covers toy.inter
CASES += [
    Case("ka-bom-item-list", KA, {"item_list.txt": BOM + b"org_id remap_id\n100 0\n101 1\n"}, "ok", check=_check_no_bom,
         what="a byte-order mark at the start of item_list.txt is dropped"),
    Case("rb-repeated-header-kg", RB, _edit(RB, "toy.kg", lambda t: _insert(t, 9, "head_id:token\trelation_id:token\ttail_id:token")),
         "error", "toy.kg:9: header line repeated as data", what="a header repeated inside .kg (cat of two files)"),
    Case("rb-repeated-header-inter", RB, _edit(RB, "toy.inter", lambda t: _insert(t, 12, I_HEADER)), "error",
         "toy.inter:12: header line repeated as data"),
    Case("rb-repeated-header-link", RB, _edit(RB, "toy.link", lambda t: _insert(t, 4, "item_id:token\tentity_id:token")),
         "error", "toy.link:4: header line repeated as data"),
    Case("rb-repeated-header-item", RB, _edit(RB, "toy.item", lambda t: _insert(t, 3, "item_id:token\tmovie_title:token_seq")),
         "error", "toy.item:3: header line repeated as data"),
    Case("rb-repeated-header-bare", RB, {"toy.kg": b"head_id\trelation_id\ttail_id\nm0\tgenre\tg0\nhead_id\trelation_id\ttail_id\n"},
         "error", "toy.kg:3: header line repeated as data", what="untyped header names repeated"),
    Case("ka-item-list-repeated-header", KA, {"item_list.txt": b"org_id remap_id\n100 0\norg_id remap_id\n101 1\n"},
         "error", "item_list.txt:3: header line repeated as data"),
]

# issue 17 item 9: out-of-range and non-finite values, refused naming the key (NaN passes every
# < / > check, so it used to reach the optimiser or the loss)
YAML_CASES += [
    ("nan-weight-decay", "train:\n  weight_decay: .nan\n", "train.weight_decay: must be a finite number, got nan"),
    ("inf-lr", "train:\n  lr: .inf\n", "train.lr: must be a finite number, got inf"),
    ("negative-margin", "model:\n  margin: -1\n", "model.margin: must be > 0"),
    ("nan-ratio", "data:\n  split_ratios: [0.8, .nan, 0.1]\n", "data.split_ratios: must hold finite numbers"),
]
SET_CASES += [
    ("margin-negative", "margin=-1", "model.margin: must be > 0"),
    ("margin-zero", "margin=0", "model.margin: must be > 0"),
    ("margin-nan", "margin=nan", "--set: model.margin: must be a finite number, got nan"),
    ("weight-decay-nan", "weight_decay=.nan", "--set: train.weight_decay: must be a finite number, got nan"),
    ("lr-inf", "lr=inf", "--set: train.lr: must be a finite number, got inf"),
    ("lambda-nan", "joint_lambda=.nan", "--set: train.joint_lambda: must be a finite number, got nan"),
    ("temperature-inf", "gumbel_temperature=.inf", "model.gumbel_temperature: must be a finite number, got inf"),
    ("threshold-nan", "rating_threshold=nan", "data.rating_threshold: must be a finite number, got nan"),
    ("constraint-negative", "kg_constraint_weight=-0.5", "model.kg_constraint_weight: must be >= 0, got -0.5"),
    ("ratio-inf", "split_ratios=[0.8,0.1,.inf]", "data.split_ratios: must hold finite numbers"),
]
