"""Export a trained run's embedding tables with their original ids, and load an export back.

An export folder holds, for a ``ktup`` model (other models hold the subset they have)::

    users.npz  items.npz  entities.npz  relations.npz  relation_normals.npz
    preferences.npz  preference_normals.npz        (or *.parquet with --format parquet)
    extra.npz          non-table tensors (buffers, padding rows), for an exact reload
    model.json         model name, config, dimensions, item→entity links, tables, ktup version
    catalogue.json     id maps in internal order, item titles, entity names
    interactions.npz   the run's train/valid/test interactions (history to filter when serving)
    kg.npz             the run's KG triples (evidence for explanations)

Each ``TABLE.npz`` holds ``ids`` (original tokens, str) and ``embeddings`` (rows × d, float32);
each ``TABLE.parquet`` has an ``id`` column and ``e0 .. e{d-1}``. Rows are in the model's order,
but :func:`load_export` places rows by id, so a table re-sorted by another tool still loads.
Preference ids are the bound relation's token (ktup) or ``p0, p1, ...`` (tup).

Folders are written to a temporary sibling and renamed into place, so a reader never sees half
an export.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ktup.errors import KtupError, RunError

EXPORT_FORMAT = 1
FORMATS = ("npz", "parquet")

# File stems of the built-in models' tables (model.tables() gives the id kind); a table of
# another name is written as ``<submodule name>.npz``. "*_norm" tables are hyperplane normals.
_STEMS = {"user": "users", "item": "items", "entity": "entities", "relation": "relations",
          "relation_norm": "relation_normals", "preference": "preferences", "preference_norm": "preference_normals"}


def is_export_dir(path: str | os.PathLike) -> bool:
    p = Path(path)
    return (p / "model.json").is_file() and (p / "catalogue.json").is_file() and not (p / "run.json").exists()


# ================================================================== writing
def _id_tokens(kind: str, model: Any, dataset: Any) -> Optional[list[str]]:
    if kind in ("users", "items", "entities", "relations"):
        return list(getattr(dataset, kind).tokens)
    if kind == "preferences":
        bound = model.preference_relation
        n = int(model.num_preferences or 0)
        if bound:
            return [dataset.relations.token(r) for r in bound]
        return [f"p{k}" for k in range(n)] if n else None
    return None


def collect_tables(model: Any, dataset: Any) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Split a model's state into id-labelled tables and the rest.

    Returns ``(tables, extra)``: ``tables[stem] = {"parameter", "kind", "ids", "embeddings"}`` for
    every 2-D float tensor whose rows are users/items/entities/relations/preferences (rows beyond
    the id map, like ktup's zero padding entity, go to ``extra`` as ``PARAM@tail``); ``extra``
    holds every other tensor by its state-dict key.
    """
    tables: dict[str, dict] = {}
    extra: dict[str, np.ndarray] = {}
    kinds = model.tables()
    for key, tensor in model.state_dict().items():
        arr = tensor.detach().cpu().numpy()
        module = key[: -len(".weight")] if key.endswith(".weight") else None
        kind = kinds.get(module) if module else None
        stem = _STEMS.get(module, module) if module else None
        ids = _id_tokens(kind, model, dataset) if kind else None
        if arr.ndim == 2 and np.issubdtype(arr.dtype, np.floating) and module:
            if ids is not None and arr.shape[0] >= len(ids):
                if arr.shape[0] > len(ids):
                    extra[f"{key}@tail"] = arr[len(ids):]
                tables[stem] = {"parameter": key, "kind": kind, "ids": ids, "embeddings": arr[: len(ids)]}
                continue
            # a table of unknown meaning: rows are labelled by position
            tables[stem.replace(".", "_")] = {"parameter": key, "kind": "rows",
                                              "ids": [str(i) for i in range(arr.shape[0])], "embeddings": arr}
            continue
        extra[key] = arr
    return tables, extra


def _write_table(folder: Path, stem: str, ids: list[str], emb: np.ndarray, fmt: str) -> str:
    emb = np.ascontiguousarray(emb)
    if fmt == "npz":
        np.savez(folder / f"{stem}.npz", ids=np.array(ids, dtype=str), embeddings=emb)
        return f"{stem}.npz"
    import pandas as pd

    frame = pd.DataFrame(emb, columns=[f"e{j}" for j in range(emb.shape[1])])
    frame.insert(0, "id", pd.Series(ids, dtype=str))
    try:
        frame.to_parquet(folder / f"{stem}.parquet", index=False)
    except ImportError as e:
        raise KtupError(f"--format parquet needs pyarrow (pip install pyarrow): {e}") from None
    return f"{stem}.parquet"


def _jsonable(obj: Any) -> Any:
    from ktup.serving.app import plain

    return json.loads(json.dumps(plain(obj), default=str))


def export_model(model: Any, dataset: Any, to: str | os.PathLike, *, config: Any = None, fmt: str = "npz",
                 force: bool = False, run_info: Optional[dict] = None) -> Path:
    """Write ``model`` (trained on ``dataset``) to the folder ``to``; see the module docstring."""
    from ktup import __version__

    if fmt not in FORMATS:
        raise KtupError(f"--format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    target = Path(to)
    if target.exists() and not target.is_dir():
        raise KtupError(f"{target}: exists and is not a directory")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise KtupError(f"{target}: directory is not empty (use --force to replace it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o777 & ~_umask())   # mkdtemp makes it 0700; the export is a normal folder
    except OSError as e:
        blocker = next((q for q in target.parents if q.exists() and not q.is_dir()), None)
        why = f"{blocker} is a file, not a directory" if blocker is not None else (e.strerror or str(e))
        raise KtupError(f"{target}: cannot write there ({why})") from None
    try:
        tables, extra = collect_tables(model, dataset)
        listing = {}
        for stem, t in tables.items():
            listing[stem] = {"file": _write_table(tmp, stem, t["ids"], t["embeddings"], fmt), "parameter": t["parameter"],
                             "ids": t["kind"], "rows": int(t["embeddings"].shape[0]), "dim": int(t["embeddings"].shape[1])}
        np.savez(tmp / "extra.npz", **extra)
        np.savez(tmp / "interactions.npz", **{f"{s}_{c}": np.asarray(getattr(getattr(dataset, s), c), dtype=np.int64)
                                             for s in ("train", "valid", "test") for c in ("users", "items")})
        np.savez(tmp / "kg.npz", **{s: np.asarray(getattr(dataset, s), dtype=np.int64).reshape(-1, 3)
                                   for s in ("kg_train", "kg_valid", "kg_test")})
        ie = np.asarray(dataset.item_entity)
        linked = np.flatnonzero(ie >= 0)
        cfg_dict = config.to_dict() if config is not None else None
        manifest = {
            "format": EXPORT_FORMAT,
            "ktup_version": __version__,
            "model": str(model.name),
            "table_format": fmt,
            "config": cfg_dict,
            "dimensions": {
                "embedding_size": int(model.embedding_size or 0),
                "users": len(dataset.users), "items": len(dataset.items),
                "entities": len(dataset.entities), "relations": len(dataset.relations),
                "preferences": len(_id_tokens("preferences", model, dataset) or []),
            },
            "tables": listing,
            "extra": sorted(extra),
            "item_entity": [[dataset.items.token(i), dataset.entities.token(ie[i])] for i in linked.tolist()],
            "run": _jsonable(run_info or {}),
        }
        titles = (dataset.item_info or {}).get("title")
        catalogue = {
            "name": getattr(dataset, "name", "dataset"),
            **{k: list(getattr(dataset, k).tokens) for k in ("users", "items", "entities", "relations")},
            "item_titles": None if titles is None else [None if t is None else str(t) for t in titles],
            "entity_names": None if dataset.entity_names is None else [None if t is None else str(t) for t in dataset.entity_names],
            "meta": _jsonable(getattr(dataset, "meta", {}) or {}),
        }
        (tmp / "model.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        (tmp / "catalogue.json").write_text(json.dumps(catalogue), encoding="utf-8")
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move the finished folder into place; an old one (``--force``) is removed only afterwards."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_run(run_dir: str | os.PathLike, to: str | os.PathLike, fmt: str = "npz", force: bool = False,
               checkpoint: str = "best") -> Path:
    """Export a run directory's model (``checkpoint``: best | last | a .pt path) to ``to``."""
    from ktup.runs import load_run

    run = load_run(run_dir, checkpoint=checkpoint)
    info = {**run.info, "checkpoint": checkpoint, "source": str(Path(run_dir).resolve())}
    return export_model(run.model, run.dataset, to, config=run.config, fmt=fmt, force=force, run_info=info)


# ================================================================== reading
def _read_json(path: Path) -> dict:
    from ktup.runs import read_json

    return read_json(path, what="a ktup export folder")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    from ktup.runs import read_npz

    return read_npz(path, missing="missing (incomplete export)")


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    if path.suffix == ".npz":
        z = _read_npz(path)
        if "ids" not in z or "embeddings" not in z:
            raise RunError(f"{path}: expected arrays 'ids' and 'embeddings'")
        return [str(t) for t in z["ids"].tolist()], z["embeddings"]
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise RunError(f"{path}: missing (incomplete export)") from None
    except Exception as e:  # noqa: BLE001
        raise RunError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    cols = [c for c in frame.columns if c != "id"]
    if "id" not in frame.columns or cols != [f"e{j}" for j in range(len(cols))]:
        raise RunError(f"{path}: expected columns id, e0 .. e{{d-1}}")
    return frame["id"].astype(str).tolist(), frame[cols].to_numpy()


def read_manifest(path: str | os.PathLike) -> dict:
    """``model.json`` of an export folder."""
    return _read_json(Path(path) / "model.json")


def load_export(path: str | os.PathLike, device: str = "cpu"):
    """Load an export folder back: ``(model, dataset)`` with the model in eval mode.

    The model is rebuilt from the exported config and filled from the tables (rows placed by
    id), so its scores equal the exported run's; the dataset carries the id maps, titles,
    item→entity links, the run's interactions and KG triples.
    """
    import torch

    from ktup.config import Config
    from ktup.data.dataset import UNLINKED, IdMap, Interactions, KGDataset
    from ktup.models import build_model

    folder = Path(path)
    if not folder.is_dir():
        raise RunError(f"{folder}: no such export folder")
    manifest = read_manifest(folder)
    if manifest.get("format") != EXPORT_FORMAT:
        raise RunError(f"{folder / 'model.json'}: unsupported export format {manifest.get('format')!r}")
    cat = _read_json(folder / "catalogue.json")
    kinds = {"users": "user", "items": "item", "entities": "entity", "relations": "relation"}
    maps = {k: IdMap([str(t) for t in cat[k]], kind=v) for k, v in kinds.items()}
    nu, ni = len(maps["users"]), len(maps["items"])
    inter = _read_npz(folder / "interactions.npz")
    kg = _read_npz(folder / "kg.npz")
    item_entity = np.full(ni, UNLINKED, dtype=np.int64)
    links = manifest.get("item_entity") or []
    if links:
        item_entity[maps["items"].lookup([a for a, _ in links])] = maps["entities"].lookup([b for _, b in links])
    dataset = KGDataset(
        name=cat.get("name", "dataset"), item_entity=item_entity, **maps,
        **{s: Interactions(inter[f"{s}_users"], inter[f"{s}_items"], nu, ni) for s in ("train", "valid", "test")},
        **{s: kg[s].reshape(-1, 3) for s in ("kg_train", "kg_valid", "kg_test")},
        item_info={} if cat.get("item_titles") is None else {"title": cat["item_titles"]},
        entity_names=cat.get("entity_names"),
        meta={**(cat.get("meta") or {}), "export": str(folder.resolve())},
    )
    try:
        config = Config.from_dict(manifest["config"], saved=True)
    except (KeyError, TypeError):
        raise RunError(f"{folder / 'model.json'}: no usable model config") from None
    model = build_model(config.model, dataset)
    state = {k: torch.as_tensor(v) for k, v in _read_npz(folder / "extra.npz").items() if "@" not in k}
    extra = _read_npz(folder / "extra.npz")
    for stem, spec in manifest.get("tables", {}).items():
        ids, emb = _read_table(folder / spec["file"])
        order = _row_order(ids, spec, model, dataset, folder / spec["file"])
        rows = np.empty_like(emb)
        rows[order] = emb
        tail = extra.get(f"{spec['parameter']}@tail")
        if tail is not None:
            rows = np.concatenate([rows, tail.astype(rows.dtype)], axis=0)
        state[spec["parameter"]] = torch.as_tensor(rows)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        from ktup.models.base import describe_load_error

        raise RunError(f"{folder}: tables do not fit model {config.model.model} ({describe_load_error(e)})") from None
    model.to(device).eval()
    with torch.no_grad():
        model.prepare_inference()
    return model, dataset


def _row_order(ids: list[str], spec: dict, model: Any, dataset: Any, where: Path) -> np.ndarray:
    """Internal row of each exported row, found by its id (so re-sorted tables still load)."""
    expected = _id_tokens(spec["ids"], model, dataset) if spec["ids"] != "rows" else [str(i) for i in range(len(ids))]
    if expected is None or sorted(expected) != sorted(ids):
        raise RunError(f"{where}: ids do not match the catalogue's {spec['ids']}")
    index = {t: i for i, t in enumerate(expected)}
    return np.fromiter((index[t] for t in ids), dtype=np.int64, count=len(ids))
