"""Dataset layouts on disk: format detection and the RecBole atomic-file reader.

- **RecBole atomic files**: ``NAME.inter`` (or pre-split ``NAME.{train,valid,test}.inter``),
  ``NAME.kg``, ``NAME.link``, optional ``NAME.item`` (titles). Typed headers, any column order.
- The research-code layouts (KTUP authors', KGAT, KGCN) are read in :mod:`ktup.data.layouts`.

Every reader returns a :class:`RawData` for :func:`ktup.data.builder.build_dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ktup.data.builder import RawData, merge_tokens, unique_links
from ktup.data.builder import empty_tokens as _empty
from ktup.data.tables import Col, read_atomic
from ktup.errors import DataError, KtupError

INTER_COLS = [
    Col("user", ("user_id",)),
    Col("item", ("item_id",)),
    Col("rating", ("rating",), "float", required=False),
    Col("timestamp", ("timestamp",), "float", required=False),
]
KG_COLS = [Col("head", ("head_id",)), Col("relation", ("relation_id",)), Col("tail", ("tail_id",))]
LINK_COLS = [Col("item", ("item_id",)), Col("entity", ("entity_id",))]
ITEM_COLS = [Col("item", ("item_id",)), Col("title", ("movie_title", "title", "name"), "text", required=False)]


# ----------------------------------------------------------------------------- detection
def detect_format(path: Path) -> tuple[str, Optional[str]]:
    """``("recbole", NAME) | ("ktup", None) | ("kgat", None) | ("kgcn", None)`` from the files in ``path``."""
    path = Path(path)
    if not path.is_dir():
        raise KtupError(f"{path}: not a directory")
    names = {p.name for p in path.iterdir()}
    stems = sorted({n[: -len(".train.inter")] for n in names if n.endswith(".train.inter")}
                   | {n[: -len(".inter")] for n in names if n.endswith(".inter") and not _is_part(n)})
    if stems:
        if len(stems) == 1:
            return "recbole", stems[0]
        if path.name in stems:
            return "recbole", path.name
        raise KtupError(f"{path}: several RecBole datasets ({', '.join(stems)}); point at a folder holding one")
    if "train.dat" in names and "u_map.dat" in names:
        return "ktup", None
    if "train.txt" in names and "kg_final.txt" in names:
        return "kgat", None
    if "ratings_final.txt" in names and "kg_final.txt" in names:
        return "kgcn", None
    raise KtupError(
        f"{path}: no dataset found (expected RecBole atomic files NAME.inter/NAME.kg/NAME.link, "
        "the KTUP authors' train.dat/u_map.dat/kg/, KGAT's train.txt/kg_final.txt or KGCN's ratings_final.txt/kg_final.txt)"
    )


def _is_part(fname: str) -> bool:
    return any(fname.endswith(f".{p}.inter") for p in ("train", "valid", "test"))


def read_dir(path: Path, split_seed: int = 2020, name: Optional[str] = None) -> RawData:
    fmt, stem = detect_format(path)
    if fmt == "recbole":
        return read_recbole(path, stem, name=name)
    from ktup.data import layouts

    if fmt == "ktup":
        return layouts.read_ktup_authors(path, name=name)
    if fmt == "kgcn":
        return layouts.read_kgcn(path, name=name)
    return layouts.read_kgat(path, split_seed=split_seed, name=name)


# ----------------------------------------------------------------------------- RecBole
def read_recbole(path: Path, stem: str, name: Optional[str] = None) -> RawData:
    path = Path(path)
    files: dict[str, str] = {}
    part_files = [path / f"{stem}.{p}.inter" for p in ("train", "valid", "test")]
    present = [f.exists() for f in part_files]
    if any(present):
        missing = [f.name for f, ok in zip(part_files, present) if not ok]
        if missing:
            raise DataError(f"pre-split dataset is missing {', '.join(missing)}", path)
        tabs = [read_atomic(f, INTER_COLS) for f in part_files]
        for p, f in zip(("train", "valid", "test"), part_files):
            files[f"inter_{p}"] = str(f)
        inter_part = np.concatenate([np.full(len(t["user"]), k, dtype=np.int8) for k, t in enumerate(tabs)])
    else:
        f = path / f"{stem}.inter"
        tabs = [read_atomic(f, INTER_COLS)]
        files["inter"] = str(f)
        inter_part = None
    if sum(len(t["user"]) for t in tabs) == 0:
        first = part_files[0] if any(present) else path / f"{stem}.inter"
        raise DataError("no interactions (the file holds only a header)", first, 2)
    ratings = _cat_optional(tabs, "rating")
    timestamps = _cat_optional(tabs, "timestamp")

    kg_file, link_file, item_file = path / f"{stem}.kg", path / f"{stem}.link", path / f"{stem}.item"
    if kg_file.exists():
        kg = read_atomic(kg_file, KG_COLS)
        files["kg"] = str(kg_file)
    else:
        kg = {"head": _empty(), "relation": _empty(), "tail": _empty()}
    if link_file.exists():
        link = read_atomic(link_file, LINK_COLS)
        files["link"] = str(link_file)
        link = unique_links(link, link_file, header_lines=1)
    else:
        link = {"item": _empty(), "entity": _empty()}

    item_titles = None
    if item_file.exists():
        files["item"] = str(item_file)
        it = read_atomic(item_file, ITEM_COLS)
        if "title" in it:
            toks = it["item"].values()
            item_titles = {}
            for tok, title in zip(toks, it["title"]):  # small side file; first row per item wins
                item_titles.setdefault(tok, title)

    user_tokens, ucodes = merge_tokens(*[t["user"] for t in tabs])
    item_tokens, icodes = merge_tokens(*[t["item"] for t in tabs], link["item"])
    entity_tokens, (hc, tc, lec) = merge_tokens(kg["head"], kg["tail"], link["entity"])
    relation_tokens, (rc,) = merge_tokens(kg["relation"])
    notes = []
    if (files.get("kg") is None) or (files.get("link") is None):
        notes.append("no " + " and no ".join(n for n, k in ((f"{stem}.kg", "kg"), (f"{stem}.link", "link")) if k not in files))
    return RawData(
        name=name or stem, format="recbole", source=str(path),
        user_tokens=user_tokens, item_tokens=item_tokens,
        users=_cat(ucodes), items=_cat(icodes[:-1]),
        entity_tokens=entity_tokens, relation_tokens=relation_tokens,
        triples=np.stack([hc, rc, tc], axis=1),
        link_items=icodes[-1], link_entities=lec,
        ratings=ratings, timestamps=timestamps, inter_part=inter_part,
        item_titles=item_titles, files=files, notes=notes,
    )


def _cat_optional(tabs: list[dict], key: str) -> Optional[np.ndarray]:
    if all(key in t for t in tabs):
        return _cat([t[key] for t in tabs])
    return None


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    """Concatenate, without copying a single array (20M-row columns are 160 MB each)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
