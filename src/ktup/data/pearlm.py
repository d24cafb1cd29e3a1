"""``ml1m-dbpedia``: download the published ML-1M + DBpedia files, verify them, convert them.

The source is the preprocessed ML-1M + DBpedia data published with the PEARLM code (public
GitHub repository ``Chris1nexus/pearlm``, pinned at :data:`COMMIT`, folder
``data/ml1m/preprocessed/``), the data the path-reasoning explainable recommenders (PGPR, CAFE,
UCPR, ...) are compared on. :func:`fetch_ml1m_dbpedia` downloads every file of :data:`FILES`
from a base URL (``$KTUP_ML1M_DBPEDIA_BASE_URL`` or the ``base_url`` argument; ``file://``
works, for mirrors and tests), checks each sha256, and :func:`convert` writes RecBole atomic
pre-split files into the cache (atomically: a temporary folder renamed at the end).

What the conversion does (our own reading of the published files):
- ``mapping/{train,valid,test}.txt.gz``: ``user, item, 1, unix time`` with internal ids →
  ``NAME.{train,valid,test}.inter`` with the original ML-1M user and movie ids
  (``mapping/user.txt.gz``, ``mapping/product.txt.gz``), rows in the published order.
- ``kg_final.txt`` (head eid, relation id, tail eid) → ``NAME.kg`` with DBpedia resource names
  as entity ids (``e_map.txt``; a name held by several entities becomes ``name#eid`` for each of
  them) and readable relation names (``r_map.txt``); repeated triples are dropped (first kept).
- ``i2kg_map.txt`` → ``NAME.link`` (movie id → entity name); ``products.txt`` → ``NAME.item``
  (movie id, title, genre).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ktup.data.tables import Col, Tokens, line_of_row
from ktup.data.tables import _read as read_columns
from ktup.errors import DataError, KtupError

NAME = "ml1m-dbpedia"
REPO = "Chris1nexus/pearlm"
COMMIT = "60bdbb11a090deebc7a64250d4fcb086969ef7f3"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/{REPO}/{COMMIT}/data/ml1m/preprocessed/"
BASE_URL_ENV = "KTUP_ML1M_DBPEDIA_BASE_URL"
FILES = {  # path under the base URL -> sha256 of the published bytes
    "e_map.txt": "0eb575a451f23f3654b7ff1a3f85a8c4c976cb2316e9137a87544b7739b3dad1",
    "r_map.txt": "b41c5df16ca20f07d5624274c8b4150a118be3229a08c814db3d17f0ed9b7584",
    "i2kg_map.txt": "9a31c166c144582f48a1b32f67f69b752bbd1fbb75740955440bd507a39babc9",
    "kg_final.txt": "c370dd9e84fb5c8b85ba5877bcdacc524442cb60a6f1ea10f0e9e86748c3a098",
    "products.txt": "2a72ab2e042b6dd03595f6e7a473c040385f1d7bed3acd345f1ec7d943c5bf8f",
    "mapping/product.txt.gz": "c64188d0a8cd8d18ae023cf35f5358141277f171a1661d1712ce56b17c77ecb6",
    "mapping/user.txt.gz": "5b4d9aacbecb61efc7585bfa4ed8362b4cc6e46ff1c08ae86a37876eee46ccf4",
    "mapping/train.txt.gz": "63ed42ae02618250d683ef9ba260905dc37b20076d50d1ba723bae5d7c9916af",
    "mapping/valid.txt.gz": "2cc5654300dc40501055c3d0aabd18d6127a1cb1f534a61d13e6fcef4bd30e9c",
    "mapping/test.txt.gz": "bf6acfa63f8e0a6b26763f5eb0e7d632266f9187d99ea1961dc170884de6d324",
}
DESCRIPTION = (f"MovieLens-1M (2,983 movies linked to DBpedia, published temporal 60/20/20 split) + DBpedia KG; "
               f"fetched from github.com/{REPO} at {COMMIT[:10]} and converted")
TIMEOUT_S = 60


def base_url(override: Optional[str] = None) -> str:
    url = override or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return url if url.endswith("/") else url + "/"


# --------------------------------------------------------------------------- download
def download(base: str, dest: Path, files: Optional[dict[str, str]] = None) -> None:
    """Fetch every file of ``files`` (default :data:`FILES`) from ``base`` into ``dest``, checking each sha256."""
    hint = f"check the network, or set {BASE_URL_ENV} (or --base-url) to a mirror of {REPO}@{COMMIT[:10]}"
    for rel, want in (FILES if files is None else files).items():
        url = base + rel
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as src, open(out, "wb") as f:
                while chunk := src.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
        except urllib.error.HTTPError as e:
            what = "not found" if e.code == 404 else f"HTTP {e.code} {e.reason}"
            raise KtupError(f"fetching {NAME} failed: {rel}: {what} at {url}; {hint}") from None
        except urllib.error.URLError as e:
            reason = e.reason.strerror if isinstance(e.reason, OSError) and e.reason.strerror else e.reason
            if isinstance(e.reason, FileNotFoundError):
                raise KtupError(f"fetching {NAME} failed: {rel}: missing at {url}; {hint}") from None
            raise KtupError(f"fetching {NAME} failed: {rel}: cannot reach {url} ({reason}); {hint}") from None
        except (OSError, ValueError) as e:  # timeouts, resets, a malformed base URL
            raise KtupError(f"fetching {NAME} failed: {rel}: {url}: {e}; {hint}") from None
        got = h.hexdigest()
        if got != want:
            raise KtupError(f"fetching {NAME} failed: {rel} has sha256 {got}, expected {want} (a changed or "
                            f"damaged download); retry, or set {BASE_URL_ENV} to a mirror of {REPO}@{COMMIT[:10]}")


def _gunzip(path: Path) -> Path:
    out = path.with_suffix("")
    try:
        with gzip.open(path, "rb") as src, open(out, "wb") as dst:
            shutil.copyfileobj(src, dst)
    except (OSError, EOFError) as e:
        raise DataError(f"not a valid gzip file ({e})", path) from None
    return out


# --------------------------------------------------------------------------- conversion
def _read(path: Path, ncols: int, keep: list[int], header: bool) -> list[Tokens]:
    """Columns ``keep`` of a tab-separated file with ``ncols`` fields per line, as tokens (strict)."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        raise DataError("empty file", path)
    plan = [(Col(f"c{k}", (f"column {k + 1}",)), k) for k in keep]
    out = read_columns(path, ncols, plan, "\t", int(header))
    return [out[f"c{k}"] for k in keep]


def _lookup(tok: Tokens, mapping: dict[str, str], file: Path, what: str, mapfile: Path, header: bool) -> np.ndarray:
    """Map each row's token through ``mapping``; an unknown token is a DataError at its line."""
    new = np.array([mapping.get(v) for v in tok.vocab], dtype=object)
    bad = np.flatnonzero(new == None)  # noqa: E711 - elementwise
    if bad.size:
        row = int(np.flatnonzero(np.isin(tok.codes, bad))[0])
        raise DataError(f"{what} {tok.vocab[tok.codes[row]]!r} is not in {mapfile.name}", file,
                        line_of_row(file, row, int(header)))
    return new[tok.codes]


def _mapping(path: Path, ncols: int, key: int, val: int) -> dict[str, str]:
    k, v = _read(path, ncols, [key, val], header=True)
    if np.unique(k.codes).size != len(k):
        row = int(np.flatnonzero(np.bincount(k.codes) > 1)[0])
        dup = k.vocab[row]
        first = np.flatnonzero(k.codes == row)[1]
        raise DataError(f"id {dup!r} appears twice", path, line_of_row(path, int(first), 1))
    return dict(zip(k.vocab[k.codes].tolist(), v.vocab[v.codes].tolist()))


def _check_numbers(tok: Tokens, path: Path, what: str, header: bool) -> None:
    ok = np.array([v.isdigit() for v in tok.vocab], dtype=bool)
    if not ok.all():
        row = int(np.flatnonzero(~ok[tok.codes])[0])
        raise DataError(f"{what} {tok.vocab[tok.codes[row]]!r} is not a whole number", path, line_of_row(path, row, int(header)))


def _write(path: Path, header: list[str], cols: list[np.ndarray]) -> None:
    lines = map("\t".join, zip(*(c.tolist() for c in cols)))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for line in lines:
            f.write(line + "\n")


def convert(src: Path, out: Path, name: str = NAME) -> None:
    """Write ``out/NAME.{train,valid,test}.inter, .kg, .link, .item`` from the published files in ``src``."""
    src, out = Path(src), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gz = {p: (src / p) for p in FILES if p.endswith(".gz")}
    plain = {p: _gunzip(f) if f.suffix == ".gz" and f.exists() else f for p, f in gz.items()}
    for p, f in plain.items():
        if not f.exists():
            raise DataError("file not found", f)
    users = _mapping(plain["mapping/user.txt.gz"], 2, 0, 1)
    items = _mapping(plain["mapping/product.txt.gz"], 2, 0, 1)
    for part in ("train", "valid", "test"):
        f = plain[f"mapping/{part}.txt.gz"]
        u, i, t = _read(f, 4, [0, 1, 3], header=False)
        _check_numbers(t, f, "timestamp", header=False)
        _write(out / f"{name}.{part}.inter", ["user_id:token", "item_id:token", "timestamp:float"],
               [_lookup(u, users, f, "user", plain["mapping/user.txt.gz"], False),
                _lookup(i, items, f, "item", plain["mapping/product.txt.gz"], False), t.vocab[t.codes]])

    emap_file, rmap_file, kg_file = src / "e_map.txt", src / "r_map.txt", src / "kg_final.txt"
    eid, ename = _read(emap_file, 3, [0, 1], header=True)
    if np.unique(eid.codes).size != len(eid):
        raise DataError("an entity id appears twice", emap_file)
    names = ename.vocab[ename.codes].astype(object)
    ids = eid.vocab[eid.codes].astype(object)
    shared = np.bincount(ename.codes)[ename.codes] > 1          # a name held by several entities
    names[shared] = names[shared] + "#" + ids[shared]
    entities = dict(zip(ids.tolist(), names.tolist()))
    relations = _mapping(rmap_file, 3, 0, 2)

    h, r, t = _read(kg_file, 3, [0, 1, 2], header=True)
    heads = _lookup(h, entities, kg_file, "head entity", emap_file, True)
    rels = _lookup(r, relations, kg_file, "relation", rmap_file, True)
    tails = _lookup(t, entities, kg_file, "tail entity", emap_file, True)
    # drop repeated triples, keeping the first occurrence, in file order (ids, not names: exact)
    key = np.stack([h.codes, r.codes, t.codes], axis=1)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)
    _write(out / f"{name}.kg", ["head_id:token", "relation_id:token", "tail_id:token"],
           [heads[keep], rels[keep], tails[keep]])

    link_file = src / "i2kg_map.txt"
    le, lp = _read(link_file, 4, [0, 1], header=True)
    _write(out / f"{name}.link", ["item_id:token", "entity_id:token"],
           [lp.vocab[lp.codes], _lookup(le, entities, link_file, "entity", emap_file, True)])

    prod_file = src / "products.txt"
    pid, title, genre = _read(prod_file, 6, [0, 1, 3], header=True)
    _write(out / f"{name}.item", ["item_id:token", "movie_title:token_seq", "genre:token_seq"],
           [pid.vocab[pid.codes], title.vocab[title.codes], genre.vocab[genre.codes]])


# --------------------------------------------------------------------------- fetch
def fetch_ml1m_dbpedia(root: Path, force: bool = False, base: Optional[str] = None,
                       has_data: Callable[[Path], bool] = lambda d: True,
                       say: Callable[[str], None] = lambda m: None) -> Path:
    """Download, verify and convert into ``root/ml1m-dbpedia`` (returns it; cached unless ``force``)."""
    dest = Path(root) / NAME
    if dest.is_dir() and has_data(dest) and not force:
        return dest
    url = base_url(base)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    say(f"downloading {NAME}: {len(FILES)} files (about 9 MB) from {url}, converting into {dest}")
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=root) as tmp:
        tmp = Path(tmp)
        download(url, tmp / "src")
        convert(tmp / "src", tmp / NAME)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp / NAME, dest)
    return dest
