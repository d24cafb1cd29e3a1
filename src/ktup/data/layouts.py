"""Readers of the research-code layouts, each returning a :class:`RawData`.

- **KTUP authors' layout** (TaoMiner/joint-kg-recommender): ``{train,valid,test}.dat``
  (``user<TAB>item<TAB>rating``, ids index ``u_map.dat``/``i_map.dat``, which hold
  ``index<TAB>original id``), ``i2kg_map.tsv`` (``original item id<TAB>title<TAB>entity URI``),
  ``kg/{train,valid,test}.dat`` (``head<TAB>tail<TAB>relation``, note the order),
  ``kg/e_map.dat``, ``kg/r_map.dat`` (``index<TAB>URI``). Both splits are given.
- **KGAT layout**: ``train.txt``/``test.txt`` (a user id, then its item ids, space-separated),
  ``kg_final.txt`` (``head relation tail``); item ``i`` is entity ``i``; optional
  ``item_list.txt``/``entity_list.txt``/``relation_list.txt`` give the original ids.
  Without ``valid.txt`` the valid part is carved out of train per user with the split seed.
- **KGCN layout**: ``ratings_final.txt`` (``user item label``; label-0 rows are sampled negatives
  and are dropped) and ``kg_final.txt`` (``head relation tail``), item ``i`` is entity ``i``; the
  split is made as configured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ktup.data.builder import RawData, empty_tokens, first_occurrence, merge_tokens, unique_links
from ktup.data.tables import BOM, Col, Tokens, line_of_row, read_plain
from ktup.errors import DataError


# ----------------------------------------------------------------------------- KTUP authors
def _read_map(file: Path) -> dict[str, str]:
    """``index<TAB>original`` → {index token: original token}."""
    t = read_plain(file, [Col("idx", ("index",)), Col("orig", ("original id",))], ncols=2)
    idx, orig = t["idx"].values(), t["orig"].values()
    is_first = first_occurrence(t["idx"].codes)
    if not is_first.all():
        row = int(np.flatnonzero(~is_first)[0])
        raise DataError(f"index {idx[row]!r} appears twice", file, line_of_row(file, row))
    return dict(zip(idx.tolist(), orig.tolist()))


def _map_codes(tok: Tokens, mapping: dict[str, str], file: Path, what: str, mapfile: Path) -> Tokens:
    """Translate a column's vocabulary through an index map; unknown index → DataError with line."""
    new_vocab = np.empty(len(tok.vocab), dtype=object)
    for k, v in enumerate(tok.vocab):
        m = mapping.get(v)
        if m is None:
            row = int(np.flatnonzero(tok.codes == k)[0]) if tok.codes.size else 0
            raise DataError(f"{what} {v!r} is not in {mapfile.name}", file, line_of_row(file, row))
        new_vocab[k] = m
    # two indices may map to one original token: merge them
    uniq, inv = np.unique(new_vocab.astype(str), return_inverse=True)
    if uniq.size == new_vocab.size:
        return Tokens(tok.codes, new_vocab)
    order = {}
    for v in new_vocab:
        order.setdefault(v, len(order))
    remap = np.array([order[v] for v in new_vocab], dtype=np.int64)
    return Tokens(remap[tok.codes], np.array(list(order), dtype=object))


def read_ktup_authors(path: Path, name: Optional[str] = None) -> RawData:
    path = Path(path)
    kg_dir = path / "kg"
    files: dict[str, str] = {}
    u_map, i_map = _read_map(path / "u_map.dat"), _read_map(path / "i_map.dat")
    rcols = [Col("user", ("user",)), Col("item", ("item",)), Col("rating", ("rating",), "float")]
    tabs, parts = [], []
    for k, p in enumerate(("train", "valid", "test")):
        f = path / f"{p}.dat"
        if not f.exists():
            if p == "train":
                raise DataError("file not found", f)
            continue
        t = read_plain(f, rcols, ncols=3)
        t["user"] = _map_codes(t["user"], u_map, f, "user index", path / "u_map.dat")
        t["item"] = _map_codes(t["item"], i_map, f, "item index", path / "i_map.dat")
        tabs.append(t)
        parts.append(np.full(len(t["user"]), k, dtype=np.int8))
        files[f"inter_{p}"] = str(f)

    triples_tok, kg_parts = [], []
    e_map_f, r_map_f = kg_dir / "e_map.dat", kg_dir / "r_map.dat"
    if (kg_dir / "train.dat").exists():
        e_map, r_map = _read_map(e_map_f), _read_map(r_map_f)
        kcols = [Col("head", ("head",)), Col("tail", ("tail",)), Col("relation", ("relation",))]  # head tail relation
        for k, p in enumerate(("train", "valid", "test")):
            f = kg_dir / f"{p}.dat"
            if not f.exists():
                continue
            t = read_plain(f, kcols, ncols=3)
            t["head"] = _map_codes(t["head"], e_map, f, "entity index", e_map_f)
            t["tail"] = _map_codes(t["tail"], e_map, f, "entity index", e_map_f)
            t["relation"] = _map_codes(t["relation"], r_map, f, "relation index", r_map_f)
            triples_tok.append(t)
            kg_parts.append(np.full(len(t["head"]), k, dtype=np.int8))
            files[f"kg_{p}"] = str(f)

    link = {"item": empty_tokens(), "entity": empty_tokens()}
    titles = None
    i2kg = path / "i2kg_map.tsv"
    if i2kg.exists():
        t = read_plain(i2kg, [Col("item", ("item id",)), Col("title", ("title",), "text"), Col("entity", ("entity URI",))], ncols=3)
        link = unique_links({"item": t["item"], "entity": t["entity"]}, i2kg, header_lines=0)
        titles = {}
        for tok, title in zip(t["item"].values(), t["title"]):
            titles.setdefault(tok, title)
        files["link"] = str(i2kg)

    user_tokens, ucodes = merge_tokens(*[t["user"] for t in tabs])
    item_tokens, icodes = merge_tokens(*[t["item"] for t in tabs], link["item"])
    heads = [t["head"] for t in triples_tok]
    tails = [t["tail"] for t in triples_tok]
    entity_tokens, ecodes = merge_tokens(*heads, *tails, link["entity"])
    relation_tokens, rcodes = merge_tokens(*[t["relation"] for t in triples_tok])
    nk = len(triples_tok)
    if nk:
        triples = np.stack([np.concatenate(ecodes[:nk]), np.concatenate(rcodes), np.concatenate(ecodes[nk:2 * nk])], axis=1)
        kg_part = np.concatenate(kg_parts)
    else:
        triples, kg_part = np.zeros((0, 3), np.int64), None
    return RawData(
        name=name or path.name, format="ktup", source=str(path),
        user_tokens=user_tokens, item_tokens=item_tokens,
        users=np.concatenate(ucodes), items=np.concatenate(icodes[:-1]),
        entity_tokens=entity_tokens, relation_tokens=relation_tokens, triples=triples,
        link_items=icodes[-1], link_entities=ecodes[-1],
        ratings=np.concatenate([t["rating"] for t in tabs]), inter_part=np.concatenate(parts), kg_part=kg_part,
        item_titles=titles, files=files,
    )


# ----------------------------------------------------------------------------- KGAT / KGCN
def _read_adjacency(file: Path) -> tuple[Tokens, Tokens]:
    """``user item item ...`` lines → (users, items) token columns (one row per pair)."""
    users, items = [], []
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        data = file.read_bytes()
        raise DataError(f"not valid UTF-8 (byte 0x{data[e.start]:02x})", file, data.count(b"\n", 0, e.start) + 1) from None
    text = text.lstrip(BOM)  # a byte-order mark would glue itself to the first user's id
    for lineno, line in enumerate(text.splitlines(), 1):  # one pass per user line, not per pair
        fields = line.split()
        if not fields:
            continue
        if len(fields) == 1:
            continue  # a user without items (KGAT writes these): nothing to add
        users.append(np.full(len(fields) - 1, fields[0], dtype=object))
        items.append(np.asarray(fields[1:], dtype=object))
    if not users:
        raise DataError("no interactions", file)
    return _tokens(np.concatenate(users)), _tokens(np.concatenate(items))


def _tokens(values: np.ndarray) -> Tokens:
    import pandas as pd

    codes, uniq = pd.factorize(values, sort=False)
    return Tokens(codes.astype(np.int64), np.asarray(uniq, dtype=object))


def _read_list(file: Path, ncols_min: int) -> list[list[str]]:
    """KGAT ``*_list.txt``: a header line, then space-separated fields."""
    rows = []
    header: list[str] = []
    with open(file, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, 1):
            if lineno == 1:
                header = line.lstrip(BOM).split()
                continue
            fields = line.split()
            if not fields:
                continue
            if fields == header:
                raise DataError("header line repeated as data; remove the repeated header", file, lineno)
            if len(fields) < ncols_min:
                raise DataError(f"expected at least {ncols_min} space-separated fields, found {len(fields)}", file, lineno)
            rows.append(fields)
    return rows


def read_kgat(path: Path, split_seed: int = 2020, name: Optional[str] = None) -> RawData:
    path = Path(path)
    files = {}
    tabs, parts = [], []
    for k, p in enumerate(("train", "valid", "test")):
        f = path / f"{p}.txt"
        if f.exists():
            u, i = _read_adjacency(f)
            tabs.append((u, i))
            parts.append(np.full(len(u), k, dtype=np.int8))
            files[f"inter_{p}"] = str(f)
    notes = []
    inter_part = np.concatenate(parts)
    user_tokens, ucodes = merge_tokens(*[t[0] for t in tabs])
    users = np.concatenate(ucodes)
    if "inter_valid" not in files:
        # carve valid out of train, per user, seeded: 1/9 of train ≈ 10% of all with an 80/20 source
        from ktup.data.splits import random_split

        tr = np.flatnonzero(inter_part == 0)
        _, v, _ = random_split(users[tr], (8.0, 1.0, 0.0), split_seed)
        inter_part[tr[v]] = 1
        notes.append(f"no valid.txt: {v.size} train rows moved to valid (1/9 per user, seed {split_seed})")

    kg = _read_kg_final(path / "kg_final.txt")
    files["kg"] = str(path / "kg_final.txt")
    entity_names = relation_names = None
    item_list, ent_list, rel_list = path / "item_list.txt", path / "entity_list.txt", path / "relation_list.txt"
    if ent_list.exists():
        entity_names = {r[1]: r[0] for r in _read_list(ent_list, 2)}
        files["entity_list"] = str(ent_list)
    if rel_list.exists():
        relation_names = {r[1]: r[0] for r in _read_list(rel_list, 2)}
        files["relation_list"] = str(rel_list)
    item_orig = None
    if item_list.exists():
        rows = _read_list(item_list, 2)
        item_orig = {r[1]: r[0] for r in rows}
        if entity_names is None and all(len(r) >= 3 for r in rows):
            entity_names = {r[1]: r[2] for r in rows}
        files["item_list"] = str(item_list)
    item_tokens, icodes = merge_tokens(*[t[1] for t in tabs])
    # item i is entity i: the link table is the identity on the item tokens
    link_items = np.arange(len(item_tokens), dtype=np.int64)
    link_tok = Tokens(link_items.copy(), item_tokens.copy())
    entity_tokens, (hc, tc, lec) = merge_tokens(kg["head"], kg["tail"], link_tok)
    relation_tokens, (rc,) = merge_tokens(kg["relation"])
    if item_orig:
        notes.append("item tokens are KGAT's remapped ids (item_list.txt gives the original ids)")
    return RawData(
        name=name or path.name, format="kgat", source=str(path),
        user_tokens=user_tokens, item_tokens=item_tokens, users=users, items=np.concatenate(icodes),
        entity_tokens=entity_tokens, relation_tokens=relation_tokens, triples=np.stack([hc, rc, tc], axis=1),
        link_items=link_items, link_entities=lec, inter_part=inter_part,
        item_titles=None, entity_names=entity_names, relation_names=relation_names, files=files, notes=notes,
    )


def _sniff_sep(file: Path) -> str:
    """Tab when the first non-blank line has one, else a space (KGAT writes spaces, KGCN tabs)."""
    with open(file, "rb") as f:
        for raw in f:
            if raw.strip():
                return "\t" if b"\t" in raw else " "
    return " "


def _read_kg_final(file: Path) -> dict[str, Tokens]:
    cols = [Col("head", ("head",)), Col("relation", ("relation",)), Col("tail", ("tail",))]
    return read_plain(file, cols, ncols=3, sep=_sniff_sep(file))


def read_kgcn(path: Path, name: Optional[str] = None) -> RawData:
    path = Path(path)
    f = path / "ratings_final.txt"
    t = read_plain(f, [Col("user", ("user",)), Col("item", ("item",)), Col("label", ("label",), "float")], ncols=3, sep=_sniff_sep(f))
    pos = t["label"] > 0
    notes = []
    if not pos.all():
        notes.append(f"{int((~pos).sum())} label-0 rows (sampled negatives) of ratings_final.txt dropped")
    users = Tokens(t["user"].codes[pos], t["user"].vocab)
    items = Tokens(t["item"].codes[pos], t["item"].vocab)
    kg = _read_kg_final(path / "kg_final.txt")
    user_tokens, (uc,) = merge_tokens(users)
    item_tokens, (ic,) = merge_tokens(items)
    link_items = np.arange(len(item_tokens), dtype=np.int64)
    entity_tokens, (hc, tc, lec) = merge_tokens(kg["head"], kg["tail"], Tokens(link_items.copy(), item_tokens.copy()))
    relation_tokens, (rc,) = merge_tokens(kg["relation"])
    return RawData(
        name=name or path.name, format="kgcn", source=str(path),
        user_tokens=user_tokens, item_tokens=item_tokens, users=uc, items=ic,
        entity_tokens=entity_tokens, relation_tokens=relation_tokens, triples=np.stack([hc, rc, tc], axis=1),
        link_items=link_items, link_entities=lec,
        files={"inter": str(f), "kg": str(path / "kg_final.txt")}, notes=notes,
    )
