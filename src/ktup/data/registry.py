"""Dataset names → files, fetching ``ml-100k`` into the cache, and :func:`load_dataset`.

Resolution order for ``cfg.dataset`` (``cfg.data_dir`` first when given: ``DIR/NAME`` or ``DIR``):
synthetic presets (generated, seeded) → an existing directory path → the cache
(``$KTUP_CACHE_DIR`` or ``~/.cache/ktup``, under ``datasets/NAME``) → the project's shared data
folder (``$KTUP_SHARED_DATASETS`` or ``../shared/datasets`` beside the repository) → fetching
(``ml-100k``: RecBole 1.2.1's wheel from PyPI ships it; ``ml-100k-recbole-split``: rebuilt from
``ml-100k`` by :mod:`ktup.data.recbole_split`, checked against RecBole's own split; ``ml1m-dbpedia``:
the published PEARLM files, downloaded, checked and converted by :mod:`ktup.data.pearlm`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ktup.config import DataConfig
from ktup.data import pearlm
from ktup.data.dataset import KGDataset
from ktup.errors import KtupError

RECBOLE_WHEEL = "recbole==1.2.1"
RECBOLE_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
RECBOLE_PREFIX = "recbole/dataset_example/ml-100k/"

BUILTIN = {
    "ml-100k": "MovieLens-100K + Freebase KG (KB4Rec) in RecBole atomic files; fetched from RecBole 1.2.1's wheel on PyPI",
    "ml1m-dbpedia": pearlm.DESCRIPTION,
    "ml-100k-recbole-split": "RecBole 1.2.1's exact 8:1:1 split of ml-100k (unlinked items dropped, seed 2020); "
                             "rebuilt from ml-100k on first use, checked file for file against RecBole's",
}

_said: set[str] = set()


def _say(msg: str) -> None:
    """Tell the user once per process where data comes from (stderr, never stdout)."""
    if msg not in _said:
        _said.add(msg)
        print(f"ktup: {msg}", file=sys.stderr)


def cache_root() -> Path:
    return Path(os.environ.get("KTUP_CACHE_DIR") or Path.home() / ".cache" / "ktup") / "datasets"


def shared_root() -> Optional[Path]:
    """The project's shared data folder when present (tests and CI use it instead of fetching)."""
    env = os.environ.get("KTUP_SHARED_DATASETS")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[4] / "shared" / "datasets")
    for c in cands:
        if c.is_dir():
            return c
    return None


def _has_data(d: Path) -> bool:
    from ktup.data.formats import detect_format

    try:
        detect_format(d)
        return True
    except KtupError:
        return False


@dataclass
class Resolved:
    name: str
    kind: str                 # "synthetic" | "dir"
    path: Optional[Path] = None
    origin: str = ""          # data-dir | path | cache | shared | fetched | generated


def resolve(name: str, data_dir: Optional[str] = None, fetch: bool = True) -> Resolved:
    """Find where dataset ``name`` lives (fetching ``ml-100k`` when allowed and needed)."""
    from ktup.data.synthetic import PRESETS

    if data_dir:
        d = Path(data_dir).expanduser()
        if (d / name).is_dir() and _has_data(d / name):
            return Resolved(name, "dir", d / name, "data-dir")
        if d.is_dir() and _has_data(d):
            return Resolved(name, "dir", d, "data-dir")
        raise KtupError(f"--data-dir {d}: neither {d / name} nor {d} holds a dataset")
    if name in PRESETS:
        return Resolved(name, "synthetic", None, "generated")
    p = Path(name).expanduser()
    if p.is_dir() and (name not in BUILTIN or _has_data(p)):  # a stray ./ml-100k folder does not hide the registry
        return Resolved(p.resolve().name, "dir", p, "path")
    if os.sep in name or name.startswith("."):
        raise KtupError(f"dataset path {name}: no such directory")
    cached = cache_root() / name
    if cached.is_dir() and _has_data(cached):
        return Resolved(name, "dir", cached, "cache")
    shared = shared_root()
    if shared is not None and (shared / name).is_dir() and _has_data(shared / name):
        _say(f"using the local copy of {name} in {shared / name}")
        return Resolved(name, "dir", shared / name, "shared")
    if name in FETCHABLE:
        if not fetch:
            raise KtupError(f"{name} is not downloaded yet: run `ktup datasets fetch {name}`")
        return Resolved(name, "dir", fetch_dataset(name), "fetched")
    if name == "ml-100k-recbole-split":
        return Resolved(name, "dir", build_recbole_split(fetch=fetch), "fetched")
    known = ", ".join(list(BUILTIN) + list(PRESETS))
    raise KtupError(f"unknown dataset {name!r}: not a directory, not in {cache_root()}; known names: {known}")


FETCHABLE = ("ml-100k", "ml1m-dbpedia")


def fetch_dataset(name: str, force: bool = False, base_url: Optional[str] = None) -> Path:
    """Download ``name`` (one of :data:`FETCHABLE`) into the cache; returns its folder."""
    if name == "ml-100k":
        if base_url:
            raise KtupError("--base-url applies to ml1m-dbpedia only (ml-100k comes from PyPI through pip)")
        return fetch_ml100k(force=force)
    if name == "ml1m-dbpedia":
        return pearlm.fetch_ml1m_dbpedia(cache_root(), force=force, base=base_url, has_data=_has_data, say=_say)
    raise KtupError(f"{name} cannot be fetched (fetchable: {', '.join(FETCHABLE)})")


def fetch_ml100k(force: bool = False) -> Path:
    """Download RecBole 1.2.1's wheel with pip, verify it, extract ml-100k atomically into the cache."""
    root = cache_root()
    dest = root / "ml-100k"
    if dest.is_dir() and _has_data(dest) and not force:
        return dest
    root.mkdir(parents=True, exist_ok=True)
    _say(f"downloading ml-100k: the {RECBOLE_WHEEL} wheel from PyPI (pip download, about 2 MB), "
         f"extracting {RECBOLE_PREFIX}* into {dest}")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        tmp = Path(tmp)
        cmd = [sys.executable, "-m", "pip", "download", RECBOLE_WHEEL, "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(tmp / "wheel")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise KtupError(f"fetching ml-100k failed: {e}") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise KtupError(f"fetching ml-100k failed (pip download {RECBOLE_WHEEL}): {last}")
        wheels = list((tmp / "wheel").glob("recbole-1.2.1-*.whl"))
        if not wheels:
            raise KtupError("fetching ml-100k failed: pip did not produce the recbole 1.2.1 wheel")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != RECBOLE_SHA256:
            raise KtupError(f"fetching ml-100k failed: {wheels[0].name} has sha256 {digest}, expected {RECBOLE_SHA256}")
        out = tmp / "ml-100k"
        out.mkdir()
        with zipfile.ZipFile(wheels[0]) as z:
            members = [m for m in z.namelist() if m.startswith(RECBOLE_PREFIX) and not m.endswith("/")]
            for m in members:
                base = Path(m).name
                if "/" in m[len(RECBOLE_PREFIX):] or base in ("", ".", ".."):
                    continue
                with z.open(m) as src, open(out / base, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        if not _has_data(out):
            raise KtupError(f"fetching ml-100k failed: the wheel holds no {RECBOLE_PREFIX} dataset")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(out, dest)
    return dest


def build_recbole_split(force: bool = False, fetch: bool = True) -> Path:
    """``ml-100k-recbole-split`` in the cache, rebuilt from ``ml-100k`` (fetched when needed and allowed)."""
    from ktup.data import recbole_split

    dest = cache_root() / recbole_split.NAME
    if dest.is_dir() and _has_data(dest) and not force:
        return dest
    source = resolve("ml-100k", fetch=fetch).path
    _say(f"building {recbole_split.NAME} from {source}: RecBole 1.2.1's seeded shuffle and 8:1:1 split per user, "
         f"into {dest}")
    return recbole_split.build(source, dest)


def load_dataset(cfg: DataConfig) -> KGDataset:
    """The main entry: resolve ``cfg.dataset``, read its format, filter and split as ``cfg`` says."""
    from ktup.data.builder import build_dataset
    from ktup.data.formats import read_dir
    from ktup.data.synthetic import preset_raw

    res = resolve(cfg.dataset, cfg.data_dir)
    if res.kind == "synthetic":
        raw = preset_raw(res.name)
    else:
        raw = read_dir(res.path, split_seed=cfg.split_seed, name=res.name)
    ds = build_dataset(raw, cfg, name=res.name)
    ds.meta["origin"] = res.origin
    return ds


def list_datasets(data_dir: Optional[str] = None) -> list[dict]:
    """Known names with where each would come from (nothing is fetched)."""
    from ktup.data.synthetic import PRESETS

    rows = []
    shared = shared_root()
    for name, desc in BUILTIN.items():
        if (cache_root() / name).is_dir() and _has_data(cache_root() / name):
            where = f"cached: {cache_root() / name}"
        elif shared is not None and (shared / name).is_dir():
            where = f"local: {shared / name}"
        else:
            where = "fetchable" if name in FETCHABLE else "fetchable (built from ml-100k)"
        rows.append({"name": name, "status": where, "description": desc})
    for name, args in PRESETS.items():
        rows.append({"name": name, "status": "generated",
                     "description": f"synthetic, planted relations: {args['n_users']} users, {args['n_items']} items, "
                                    f"{args['n_interactions']} interactions, {args['n_relations']} relations"})
    roots = [Path(data_dir).expanduser()] if data_dir else [cache_root()]
    if shared is not None and not data_dir:
        roots.append(shared)
    for root in roots:
        if not root.is_dir():
            continue
        for d in sorted(root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and d.name not in BUILTIN and _has_data(d):
                rows.append({"name": d.name, "status": f"directory: {d}", "description": ""})
    return rows
