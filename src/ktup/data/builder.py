"""Raw tables → :class:`KGDataset`: one builder for every source format and the generator.

Readers produce a :class:`RawData` (integer codes into token vocabularies, in order of first
appearance); :func:`build_dataset` applies the filters of :class:`DataConfig` in a fixed order
(dedup → rating threshold → drop unlinked → k-core), recording what each removed, gives
contiguous ids to what remains (keeping the original tokens and their order of appearance),
links items to entities, and splits interactions and triples. All of it is array code: cost is
linear (or n log n) in the number of rows, with a Python loop only over k-core rounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from ktup.config import DataConfig
from ktup.data import splits as S
from ktup.data.dataset import UNLINKED, IdMap, Interactions, KGDataset
from ktup.data.tables import Tokens, line_of_row
from ktup.errors import DataError, KtupError

log = logging.getLogger("ktup.data")

PARTS = ("train", "valid", "test")


@dataclass
class RawData:
    """A dataset as read, before filtering and splitting. Codes index the ``*_tokens`` arrays."""

    name: str
    format: str
    source: str
    user_tokens: np.ndarray                  # (U,) object
    item_tokens: np.ndarray                  # (I,) object; includes items only seen in links/side files
    users: np.ndarray                        # (n,) int64 codes
    items: np.ndarray                        # (n,) int64 codes
    entity_tokens: np.ndarray                # (E,) object; KG heads/tails and linked entities
    relation_tokens: np.ndarray              # (R,) object
    triples: np.ndarray                      # (m, 3) int64 codes (head, relation, tail)
    link_items: np.ndarray                   # (l,) int64 item codes
    link_entities: np.ndarray                # (l,) int64 entity codes
    ratings: Optional[np.ndarray] = None     # (n,) float64
    timestamps: Optional[np.ndarray] = None  # (n,) float64
    inter_part: Optional[np.ndarray] = None  # (n,) int8 0/1/2 when the source is pre-split
    kg_part: Optional[np.ndarray] = None     # (m,) int8 0/1/2 when the KG is pre-split
    item_titles: Optional[dict[str, str]] = None      # item token -> title
    entity_names: Optional[dict[str, str]] = None     # entity token -> readable name
    relation_names: Optional[dict[str, str]] = None   # relation token -> readable name
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # per-interaction side arrays (planted truth)
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def merge_tokens(*cols: Tokens) -> tuple[np.ndarray, list[np.ndarray]]:
    """Put several dictionary-encoded columns in one token space (first-appearance order)."""
    if not cols:
        return np.zeros(0, dtype=object), []
    if len(cols) == 1:
        return np.asarray(cols[0].vocab, dtype=object), [cols[0].codes.astype(np.int64, copy=False)]
    index: dict[str, int] = {}
    codes = []
    for c in cols:  # loop over vocabularies (distinct tokens), not rows
        remap = np.fromiter((index.setdefault(t, len(index)) for t in c.vocab), dtype=np.int64, count=len(c.vocab))
        codes.append(remap[c.codes] if len(c.codes) else np.zeros(0, np.int64))
    return np.array(list(index), dtype=object), codes


def first_occurrence(key: np.ndarray) -> np.ndarray:
    """Mask of the first occurrence of each value. A plain sort proves the common case (no
    duplicates) cheaply; only then is the hash-based search run."""
    if key.size < 2:
        return np.ones(key.size, dtype=bool)
    s = np.sort(key)
    if not (s[1:] == s[:-1]).any():
        return np.ones(key.size, dtype=bool)
    del s
    return ~pd.Series(key, copy=False).duplicated(keep="first").to_numpy()


def n_distinct(codes: np.ndarray, n: int) -> int:
    """Number of distinct values among non-negative codes < n."""
    return int(np.count_nonzero(np.bincount(codes, minlength=n))) if codes.size else 0


def _compact(present: np.ndarray) -> np.ndarray:
    """old code → new contiguous id (or -1) keeping the old order."""
    new = np.cumsum(present, dtype=np.int64) - 1
    new[~present] = -1
    return new


def kcore_mask(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int, k: int) -> np.ndarray:
    """Rows kept by the iterative k-core: every kept user and item has ≥ k kept rows."""
    keep = np.ones(users.shape[0], dtype=bool)
    if k <= 1:
        return keep
    while True:
        uc = np.bincount(users[keep], minlength=n_users)
        ic = np.bincount(items[keep], minlength=n_items)
        bad = keep & ((uc[users] < k) | (ic[items] < k))
        if not bad.any():
            return keep
        keep &= ~bad


def build_dataset(raw: RawData, cfg: DataConfig, name: Optional[str] = None) -> KGDataset:
    """Filter, re-index and split ``raw`` as ``cfg`` says; ``meta`` records every step."""
    n_users_tok, n_items_tok = len(raw.user_tokens), len(raw.item_tokens)
    users, items = raw.users.astype(np.int64, copy=False), raw.items.astype(np.int64, copy=False)
    n0 = users.shape[0]
    keep = np.ones(n0, dtype=bool)
    filters: dict[str, Any] = {}
    report: list[str] = list(raw.notes)

    # ---- link table: one entity per item ------------------------------------------------
    link_ent = np.full(n_items_tok, UNLINKED, dtype=np.int64)
    if raw.link_items.size:
        dup = _first_duplicate(raw.link_items)
        if dup is not None:
            tok = raw.item_tokens[raw.link_items[dup]]
            raise DataError(f"item {tok!r} is linked to more than one entity (row {dup + 1} of the link table)", raw.files.get("link"))
        link_ent[raw.link_items] = raw.link_entities
    linked_tok = link_ent != UNLINKED

    # ---- filters on interactions ------------------------------------------------------------
    if cfg.dedup and n0:
        dkeep = first_occurrence(users * max(1, n_items_tok) + items)
        filters["dedup"] = {"interactions_removed": int(n0 - dkeep.sum())}
        keep &= dkeep
    if cfg.rating_threshold is not None:
        if raw.ratings is None:
            raise KtupError(f"data.rating_threshold={cfg.rating_threshold} is set but {raw.name} has no rating column")
        r = keep & (raw.ratings >= cfg.rating_threshold)
        filters["rating_threshold"] = {"threshold": cfg.rating_threshold, "interactions_removed": int(keep.sum() - r.sum())}
        keep = r
    if cfg.drop_unlinked:
        before_items = n_distinct(items[keep], n_items_tok)
        r = keep & linked_tok[items]
        after_items = n_distinct(items[r], n_items_tok)
        filters["drop_unlinked"] = {"interactions_removed": int(keep.sum() - r.sum()), "items_removed": int(before_items - after_items)}
        keep = r
    if cfg.k_core > 0:
        idx = np.flatnonzero(keep)
        m = kcore_mask(users[idx], items[idx], n_users_tok, n_items_tok, cfg.k_core)
        filters["k_core"] = {
            "k": cfg.k_core,
            "interactions_removed": int((~m).sum()),
            "users_removed": n_distinct(users[idx], n_users_tok) - n_distinct(users[idx[m]], n_users_tok),
            "items_removed": n_distinct(items[idx], n_items_tok) - n_distinct(items[idx[m]], n_items_tok),
        }
        keep[idx[~m]] = False
    for fname, rep in filters.items():
        report.append(f"filter {fname}: " + ", ".join(f"{k}={v}" for k, v in rep.items()))

    rows = slice(None) if keep.all() else np.flatnonzero(keep)   # no copy when nothing was filtered
    if not keep.any():
        raise KtupError(f"dataset {raw.name}: no interactions left after filtering ({_describe(filters)})")
    del keep
    users, items = users[rows], items[rows]

    # ---- contiguous ids -------------------------------------------------------------------
    u_present = np.zeros(n_users_tok, dtype=bool)
    u_present[users] = True
    i_present = np.zeros(n_items_tok, dtype=bool)
    i_present[items] = True
    u_new, i_new = _compact(u_present), _compact(i_present)
    users, items = u_new[users], i_new[items]
    user_map = IdMap(raw.user_tokens[u_present], kind="user")
    item_map = IdMap(raw.item_tokens[i_present], kind="item")
    n_users, n_items = len(user_map), len(item_map)

    # links naming items that have no interaction: reported, not fatal
    if raw.link_items.size:
        orphan = int((~i_present[raw.link_items]).sum())
        if orphan:
            report.append(f"{orphan} linked item(s) have no interaction and are ignored")
            filters.setdefault("links", {})["items_without_interactions"] = orphan

    # ---- KG: dedup, entities = heads/tails + entities linked to kept items -------------------
    triples = raw.triples.astype(np.int64, copy=False).reshape(-1, 3)
    kg_part = raw.kg_part
    rel_keep = select_relations(raw, cfg)
    if rel_keep is not None:
        rows_kept = rel_keep[triples[:, 1]] if triples.shape[0] else np.zeros(0, bool)
        filters["kg_relations"] = {"relations_kept": int(rel_keep.sum()), "triples_removed": int((~rows_kept).sum())}
        report.append(f"filter kg_relations: kept {', '.join(str(t) for t in raw.relation_tokens[rel_keep])} "
                      f"({int((~rows_kept).sum())} triples removed)")
        triples = triples[rows_kept]
        kg_part = None if kg_part is None else kg_part[rows_kept]
    if cfg.dedup and triples.shape[0]:
        ne, nr = max(1, len(raw.entity_tokens)), max(1, len(raw.relation_tokens))
        key = (triples[:, 0] * nr + triples[:, 1]) * ne + triples[:, 2]
        first = np.flatnonzero(first_occurrence(key))
        removed = triples.shape[0] - first.size
        if removed:
            triples = triples[first]
            kg_part = None if kg_part is None else kg_part[first]
        filters.setdefault("dedup", {})["triples_removed"] = int(removed)
        if removed:
            report.append(f"filter dedup: triples_removed={removed}")
    e_present = np.zeros(len(raw.entity_tokens), dtype=bool)
    e_present[triples[:, 0]] = True
    e_present[triples[:, 2]] = True
    item_ent_tok = link_ent[i_present]                      # (n_items,) entity codes or -1
    e_present[item_ent_tok[item_ent_tok != UNLINKED]] = True
    r_present = np.zeros(len(raw.relation_tokens), dtype=bool)
    r_present[triples[:, 1]] = True
    e_new, r_new = _compact(e_present), _compact(r_present)
    ent_map = IdMap(raw.entity_tokens[e_present], kind="entity")
    rel_map = IdMap(raw.relation_tokens[r_present], kind="relation")
    triples = np.stack([e_new[triples[:, 0]], r_new[triples[:, 1]], e_new[triples[:, 2]]], axis=1).astype(np.int64)
    item_entity = np.full(n_items, UNLINKED, dtype=np.int64)
    lk = item_ent_tok != UNLINKED
    item_entity[lk] = e_new[item_ent_tok[lk]]
    shared = int(n_items - n_distinct(item_entity[item_entity != UNLINKED], len(ent_map)) - (item_entity == UNLINKED).sum())
    if shared:
        report.append(f"{shared} item(s) share their entity with another item")

    # ---- split interactions ---------------------------------------------------------------
    ratings = None if raw.ratings is None else raw.ratings[rows]
    timestamps = None if raw.timestamps is None else raw.timestamps[rows]
    if raw.inter_part is not None:
        part = raw.inter_part[rows]
        parts = tuple(np.flatnonzero(part == k) for k in range(3))
        method, ratios = "given", None
    else:
        if cfg.split == "given":
            raise KtupError(f"data.split=given but {raw.source} has no pre-split files (NAME.train.inter, NAME.valid.inter, NAME.test.inter)")
        parts = S.split_interactions(users, n_users, cfg.split, cfg.split_ratios, cfg.split_seed, timestamps)
        method, ratios = cfg.split, [float(x) for x in cfg.split_ratios]

    def take(idx: np.ndarray) -> Interactions:
        return Interactions(
            users=users[idx], items=items[idx], n_users=n_users, n_items=n_items,
            ratings=None if ratings is None else ratings[idx].astype(np.float32),
            timestamps=None if timestamps is None else timestamps[idx],
        )

    # ---- split KG -------------------------------------------------------------------------
    if kg_part is not None:
        kg_parts = tuple(np.flatnonzero(kg_part == k) for k in range(3))
        kg_method, kg_ratios = "given", None
    else:
        kg_parts = S.split_kg(triples, len(ent_map), len(rel_map), cfg.kg_split_ratios, cfg.split_seed)
        kg_method, kg_ratios = "random", [float(x) for x in cfg.kg_split_ratios]

    titles = None
    if raw.item_titles:
        titles = [raw.item_titles.get(t) for t in item_map.tokens]
    entity_names = None
    if raw.entity_names:
        entity_names = [raw.entity_names.get(t) for t in ent_map.tokens]
    planted = None
    if "planted_relation" in raw.extra:
        pr = raw.extra["planted_relation"][rows]
        pr = np.where(pr >= 0, r_new[np.maximum(pr, 0)], -1).astype(np.int64)
        planted = {n: pr[p] for n, p in zip(PARTS, parts)}

    ds = KGDataset(
        name=name or raw.name,
        users=user_map, items=item_map, entities=ent_map, relations=rel_map,
        item_entity=item_entity,
        train=take(parts[0]), valid=take(parts[1]), test=take(parts[2]),
        kg_train=triples[kg_parts[0]], kg_valid=triples[kg_parts[1]], kg_test=triples[kg_parts[2]],
        item_info={"title": titles} if titles is not None else {},
        entity_names=entity_names,
        planted_relations=planted,
    )
    ds.meta = {
        "format": raw.format,
        "source": raw.source,
        "files": dict(raw.files),
        "raw": {"interactions": int(n0), "users": int(n_users_tok), "items": n_distinct(raw.items, n_items_tok),
                "triples": int(raw.triples.shape[0]), "links": int(raw.link_items.size)},
        "filters": filters,
        "split": {"method": method, "ratios": ratios, "seed": cfg.split_seed if method != "given" else None,
                  "kg_method": kg_method, "kg_ratios": kg_ratios,
                  "kg_seed": cfg.split_seed if kg_method != "given" else None},
        "relation_names": [raw.relation_names.get(t) for t in rel_map.tokens] if raw.relation_names else None,
        "report": report,
    }
    ds.meta["split"]["hash"] = S.split_hash(ds)
    for line in report:
        log.info("%s: %s", ds.name, line)
    return ds


def select_relations(raw: RawData, cfg: DataConfig) -> Optional[np.ndarray]:
    """(R,) bool mask of the relation codes kept by ``data.kg_relations`` (keep only these) and
    ``data.kg_drop_relations`` (then drop these); None when neither is set. An unknown name is an
    error naming the key and the known relations."""
    keep, drop = tuple(cfg.kg_relations), tuple(cfg.kg_drop_relations)
    if not keep and not drop:
        return None
    tokens = [str(t) for t in raw.relation_tokens]
    index = {t: i for i, t in enumerate(tokens)}
    for key, names in (("data.kg_relations", keep), ("data.kg_drop_relations", drop)):
        unknown = [str(n) for n in names if str(n) not in index]
        if unknown:
            raise KtupError(f"{key}: unknown relation(s) {', '.join(map(repr, unknown))} in {raw.name} "
                            f"(known: {', '.join(tokens)})")
    mask = np.zeros(len(tokens), dtype=bool) if keep else np.ones(len(tokens), dtype=bool)
    mask[[index[str(n)] for n in keep]] = True
    mask[[index[str(n)] for n in drop]] = False
    if not mask.any():
        raise KtupError(f"data.kg_relations / data.kg_drop_relations leave no relation of {raw.name}")
    return mask


def _first_duplicate(a: np.ndarray) -> Optional[int]:
    """Index of the first element equal to an earlier one, or None."""
    first = first_occurrence(a)
    return None if first.all() else int(np.flatnonzero(~first)[0])


def _describe(filters: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in filters.items()) or "no filters"


# ------------------------------------------------- shared by the readers (formats, layouts)
def empty_tokens() -> Tokens:
    return Tokens(np.zeros(0, np.int64), np.zeros(0, dtype=object))


def unique_links(link: dict[str, Tokens], file: Path, header_lines: int) -> dict[str, Tokens]:
    """Drop repeated identical (item, entity) rows; an item linked to two entities is an error."""
    items, ents = link["item"], link["entity"]
    pair_first = first_occurrence(items.codes * max(1, len(ents.vocab)) + ents.codes)
    if not pair_first.all():
        items = Tokens(items.codes[pair_first], items.vocab)
        ents = Tokens(ents.codes[pair_first], ents.vocab)
    is_first = first_occurrence(items.codes)
    if is_first.all():
        return {"item": items, "entity": ents}
    rows = np.flatnonzero(pair_first)                    # positions in the file's data rows
    k = int(np.flatnonzero(~is_first)[0])
    prev = int(np.flatnonzero(items.codes == items.codes[k])[0])
    raise DataError(
        f"item {items.vocab[items.codes[k]]!r} is linked to a second entity (first link on line "
        f"{line_of_row(file, int(rows[prev]), header_lines)}); each item may link to one entity",
        file, line_of_row(file, int(rows[k]), header_lines))
