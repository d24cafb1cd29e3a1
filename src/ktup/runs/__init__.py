"""Run directories: what a training run leaves behind, and how to load it back.

Layout (``docs/ARCHITECTURE.md``)::

    RUN/config.yaml          resolved config
    RUN/run.json             id, model, dataset, ktup version, status, split hash, times
    RUN/split.npz            the exact split (internal ids) and the id-map tokens
    RUN/checkpoints/last.pt  end of the latest epoch (resume point)
    RUN/checkpoints/best.pt  best validation epoch (used for test and by load_run)
    RUN/checkpoints/prev.pt  the previous last.pt (resume falls back to it if last.pt is damaged)
    RUN/metrics.jsonl        one JSON line per evaluation, a final line with test metrics
    RUN/final.json           test metrics of the best checkpoint
    RUN/train.log, RUN/plots/loss.png, RUN/plots/valid.png
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ktup.config import Config
from ktup.errors import ConfigError, KtupError, RunError

SPLIT_FORMAT = 1


@dataclass
class Run:
    """A training run: its directory, config, dataset (exact split) and trained model."""

    path: Path
    config: Config
    dataset: Any
    model: Any
    info: dict[str, Any] = field(default_factory=dict)
    final: Optional[dict[str, Any]] = None   # test metrics (final.json) when the run finished

    @property
    def test_metrics(self) -> dict[str, Any]:
        return {} if self.final is None else self.final.get("test", {})

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, model={self.info.get('model')}, status={self.info.get('status')})"


# ------------------------------------------------------------------ paths
def checkpoint_path(run_dir: str | os.PathLike, which: str) -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove a file can be written there (one-line RunError if not)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise RunError(f"{folder}: output directory is not writable ({e.strerror or e})") from None


def prepare_run_dir(out: Path, resume: bool = False) -> Path:
    """Create the run directory and prove it is writable before any training starts."""
    if not resume and (out / "run.json").exists():
        raise RunError(f"{out}: already holds a run; resume it with --resume {out} or choose another --out")
    check_writable(out)
    for sub in ("checkpoints", "plots"):
        check_writable(out / sub)
    return out


def discard_unstarted(out: Path, existed: bool) -> None:
    """Remove what a new run wrote before it failed to start (bad data, bad config), so a failed
    ``ktup train --out DIR`` leaves no half-made run directory: the folder itself when this run
    created it, else only the files and sub-folders a run writes."""
    import shutil

    out = Path(out)
    if not out.is_dir() or (out / "checkpoints" / "last.pt").exists():
        return
    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for name in ("run.json", "config.yaml", "split.npz", "train.log", "metrics.jsonl", ".ktup.lock"):
        (out / name).unlink(missing_ok=True)
    for sub in ("checkpoints", "plots"):
        try:
            (out / sub).rmdir()
        except OSError:
            pass


def remove_stale_temps(run_dir: Path) -> int:
    """Delete temp files a killed run left (``.NAME.tmp-PID``); the real files are untouched."""
    n = 0
    for d in (Path(run_dir), Path(run_dir) / "checkpoints"):
        for f in d.glob(".*.tmp-*"):
            try:
                f.unlink()
                n += 1
            except OSError:
                pass
    return n


RESUME_ORDER = ("last", "prev", "best")


def resume_checkpoint(run_dir: Path, map_location: Any = "cpu") -> tuple[Optional[dict[str, Any]], Optional[Path], list[str]]:
    """The newest intact checkpoint among last.pt, prev.pt and best.pt: ``(state, file, notes)``;
    ``(None, None, notes)`` when the run has no checkpoint at all (it restarts from epoch 0).

    A truncated or corrupt ``last.pt`` (checksum) is reported in ``notes`` and the run resumes
    from the newest good one; training from an earlier epoch reproduces the same result, since
    each epoch's randomness derives from (seed, epoch).
    """
    from ktup.runs.checkpoint import load_checkpoint

    found: list[tuple[int, int, dict[str, Any], Path]] = []
    bad: list[str] = []
    for rank, which in enumerate(RESUME_ORDER):
        f = checkpoint_path(run_dir, which)
        if not f.exists():
            continue
        try:
            state = load_checkpoint(f, map_location=map_location)
        except RunError as e:
            bad.append(str(e))
            continue
        found.append((int(state.get("epoch", 0)), -rank, state, f))
    if not found:
        if bad:
            raise RunError(f"{run_dir}: no intact checkpoint to resume from ({'; '.join(bad)})")
        # killed before its first epoch ended: the config and split are saved, so start it over
        return None, None, [f"{run_dir}: no checkpoint yet (the run stopped before its first epoch ended); "
                            "restarting from epoch 0"]
    epoch, _, state, f = max(found, key=lambda x: (x[0], x[1]))
    notes = [f"{b}; resuming from {f.name} (epoch {epoch})" for b in bad]
    return state, f, notes


def read_json(path: Path, what: str = "a complete ktup run directory") -> dict[str, Any]:
    """A JSON file of a run (or of ``what``); a missing or corrupt file is a one-line ``RunError``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing (not {what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: corrupt JSON ({e})") from None


def check_run_dir(run_dir: str | os.PathLike) -> Path:
    path = Path(run_dir)
    if not path.exists():
        raise RunError(f"{path}: no such run directory")
    if not path.is_dir():
        raise RunError(f"{path}: not a directory")
    for name in ("run.json", "config.yaml", "split.npz"):
        if not (path / name).exists():
            raise RunError(f"{path}: not a ktup run directory ({name} missing)")
    return path


def read_config(run_dir: Path) -> Config:
    try:
        return Config.from_yaml(run_dir / "config.yaml", saved=True)
    except ConfigError as e:
        raise RunError(f"{run_dir / 'config.yaml'}: {e}") from None


# ------------------------------------------------------------------ split.npz
def _tokens_digest(tokens: list[str]) -> str:
    h = hashlib.sha256()
    for t in tokens:
        h.update(t.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


def dataset_fingerprint(dataset) -> dict[str, str]:
    """Digests of the id maps: a reloaded dataset must match them to reuse a saved split."""
    return {k: _tokens_digest(getattr(dataset, k).tokens) for k in ("users", "items", "entities", "relations")}


def split_hash(dataset) -> str:
    """Digest of the exact split arrays (interactions and KG), as ``ktup.data.splits`` defines it."""
    from ktup.data.splits import split_hash as _split_hash

    return _split_hash(dataset)


def save_split(path: Path, dataset) -> None:
    """Everything needed to rebuild the dataset's exact split, loadable without pickle."""
    arrays: dict[str, np.ndarray] = {"format": np.array(SPLIT_FORMAT)}
    for name in ("train", "valid", "test"):
        part = getattr(dataset, name)
        arrays[f"{name}_users"] = np.asarray(part.users, dtype=np.int64)
        arrays[f"{name}_items"] = np.asarray(part.items, dtype=np.int64)
    for name in ("kg_train", "kg_valid", "kg_test"):
        arrays[name] = np.asarray(getattr(dataset, name), dtype=np.int64).reshape(-1, 3)
    arrays["item_entity"] = np.asarray(dataset.item_entity, dtype=np.int64)
    for kind in ("users", "items", "entities", "relations"):
        arrays[f"{kind}_tokens"] = np.array(getattr(dataset, kind).tokens, dtype=str)
    titles = dataset.item_info.get("title") if dataset.item_info else None
    if titles is not None:
        arrays["item_titles"] = np.array(["" if t is None else str(t) for t in titles], dtype=str)
    if dataset.entity_names is not None:
        arrays["entity_names"] = np.array(["" if t is None else str(t) for t in dataset.entity_names], dtype=str)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def read_npz(path: Path, missing: str = "missing", unreadable: str = "cannot read") -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` file, or a one-line :class:`RunError` (``missing`` / ``unreadable``
    say what the file is) instead of numpy's or zipfile's exceptions."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise RunError(f"{path}: {missing}") from None
    except Exception as e:  # noqa: BLE001 - a damaged zip raises several kinds
        raise RunError(f"{path}: {unreadable} ({type(e).__name__}: {e})") from None


def _read_split(path: Path) -> dict[str, np.ndarray]:
    return read_npz(path, unreadable="cannot read the saved split")


def _timestamp_lookup(dataset):
    """``(users, items) -> timestamps`` from the reloaded source (the saved split keeps only ids),
    or None when the source has no timestamps. A pair seen several times takes its latest time."""
    parts = [dataset.train, dataset.valid, dataset.test]
    if any(p.timestamps is None for p in parts) or sum(len(p) for p in parts) == 0:
        return None
    n_items = max(1, dataset.n_items)
    keys = np.concatenate([p.users.astype(np.int64) * n_items + p.items for p in parts])
    ts = np.concatenate([np.asarray(p.timestamps, dtype=np.float64) for p in parts])
    order = np.lexsort((ts, keys))
    keys, ts = keys[order], ts[order]
    last = np.r_[keys[1:] != keys[:-1], True]          # the latest time of each distinct pair
    keys, ts = keys[last], ts[last]

    def when(users: np.ndarray, items: np.ndarray) -> np.ndarray:
        q = users * n_items + items
        pos = np.minimum(np.searchsorted(keys, q), keys.shape[0] - 1)
        return np.where(keys[pos] == q, ts[pos], np.nan)   # NaN: a pair the source no longer has

    return when


def apply_split(dataset, path: Path):
    """Replace the dataset's splits by the saved ones after checking the id maps match (timestamps
    follow their (user, item) pairs, so a reloaded run can still order a history by time)."""
    from ktup.data.dataset import Interactions

    z = _read_split(path)
    for kind in ("users", "items", "entities", "relations"):
        saved = [str(t) for t in z[f"{kind}_tokens"].tolist()]
        if saved != getattr(dataset, kind).tokens:
            raise RunError(f"{path}: the dataset's {kind} no longer match the run's "
                           f"({len(getattr(dataset, kind))} now vs {len(saved)} saved); "
                           "the data files or filters changed since training")
    when = _timestamp_lookup(dataset)
    for name in ("train", "valid", "test"):
        users, items = z[f"{name}_users"].astype(np.int64), z[f"{name}_items"].astype(np.int64)
        setattr(dataset, name, Interactions(users, items, dataset.n_users, dataset.n_items,
                                            timestamps=None if when is None else when(users, items)))
    for name in ("kg_train", "kg_valid", "kg_test"):
        setattr(dataset, name, z[name].astype(np.int64).reshape(-1, 3))
    dataset.item_entity = z["item_entity"].astype(np.int64)
    dataset.planted_relations = None  # aligned with the generator's split, not necessarily this one
    return dataset


def dataset_from_split(path: Path, name: str):
    """Rebuild a dataset from split.npz alone (runs trained on an in-memory dataset)."""
    from ktup.data.dataset import IdMap, Interactions, KGDataset

    z = _read_split(path)
    maps = {k: IdMap([str(t) for t in z[f"{k}_tokens"].tolist()], kind=k[:-1] if k != "entities" else "entity")
            for k in ("users", "items", "entities", "relations")}
    nu, ni = len(maps["users"]), len(maps["items"])
    parts = {s: Interactions(z[f"{s}_users"].astype(np.int64), z[f"{s}_items"].astype(np.int64), nu, ni)
             for s in ("train", "valid", "test")}
    item_info = {}
    if "item_titles" in z:
        item_info["title"] = [t or None for t in z["item_titles"].tolist()]
    entity_names = [t or None for t in z["entity_names"].tolist()] if "entity_names" in z else None
    return KGDataset(name=name, users=maps["users"], items=maps["items"], entities=maps["entities"],
                     relations=maps["relations"], item_entity=z["item_entity"].astype(np.int64),
                     train=parts["train"], valid=parts["valid"], test=parts["test"],
                     kg_train=z["kg_train"].astype(np.int64).reshape(-1, 3),
                     kg_valid=z["kg_valid"].astype(np.int64).reshape(-1, 3),
                     kg_test=z["kg_test"].astype(np.int64).reshape(-1, 3),
                     item_info=item_info, entity_names=entity_names,
                     meta={"source": "split.npz", "split": {"method": "saved", "path": str(path)}})


def load_run_dataset(run_dir: Path, config: Config, info: dict[str, Any]):
    """The run's dataset with its exact split.

    Runs trained from a config reload the source (titles, side data) and swap in the saved split;
    runs trained on an in-memory dataset (Python API, synthetic data) rebuild from split.npz.
    """
    split_file = run_dir / "split.npz"
    if info.get("dataset_source") == "config":
        from ktup.data import load_dataset

        try:
            dataset = load_dataset(config.data)
        except KtupError as e:
            raise RunError(f"{run_dir}: cannot reload dataset {config.data.dataset!r}: {e}") from None
        return apply_split(dataset, split_file)
    dataset = dataset_from_split(split_file, info.get("dataset", "dataset"))
    if isinstance(info.get("split"), dict) and info["split"].get("method"):
        dataset.meta["split"] = dict(info["split"])   # how the saved split was made (run.json)
    return dataset


# ------------------------------------------------------------------ loading
def load_run(run_dir: str | os.PathLike, checkpoint: str = "best", device: str = "cpu") -> Run:
    """Load a trained run: config, dataset with the exact split, model (eval mode) from a checkpoint.

    ``checkpoint`` is ``"best"``, ``"last"`` or a path to a ``.pt`` file.
    """
    import torch

    from ktup.models import build_model
    from ktup.runs.checkpoint import load_checkpoint

    path = check_run_dir(run_dir)
    info = read_json(path / "run.json")
    config = read_config(path)
    ckpt_file = Path(checkpoint) if checkpoint.endswith(".pt") else checkpoint_path(path, checkpoint)
    if not ckpt_file.exists():
        hint = " (the run has not finished an epoch yet)" if info.get("status") == "running" else ""
        raise RunError(f"{ckpt_file}: checkpoint not found{hint}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RunError("device cuda requested but no CUDA device is available")
    state = load_checkpoint(ckpt_file, map_location=device)
    dataset = load_run_dataset(path, config, info)
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's RNG alone
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, dataset)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        from ktup.models.base import describe_load_error

        raise RunError(f"{ckpt_file}: weights do not fit model {config.model.model} as config.yaml describes it "
                       f"({describe_load_error(e)})") from None
    model.to(device).eval()
    with torch.no_grad():
        model.prepare_inference()
    final = None
    if (path / "final.json").exists():
        final = read_json(path / "final.json")
    return Run(path=path, config=config, dataset=dataset, model=model, info=info, final=final)


# ------------------------------------------------------------------ metrics.jsonl
def jsonable(x):
    """Plain JSON data from numpy/torch scalars, tuples and result objects."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x)
    if hasattr(x, "tolist"):  # numpy arrays, torch tensors
        return x.tolist()
    if x is None or isinstance(x, (str, int, bool)):
        return x
    if hasattr(x, "to_dict"):
        return jsonable(x.to_dict())
    return str(x)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (a line cut short by a kill is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a kill
    return out


def truncate_metrics(path: Path, epoch: int) -> None:
    """Drop lines a killed run wrote after its last checkpoint (and an old final line)."""
    from ktup.runs.checkpoint import atomic_write_text

    keep = [r for r in read_metrics(path) if not r.get("final") and r.get("epoch", 0) <= epoch]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
