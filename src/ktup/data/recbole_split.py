"""``ml-100k-recbole-split``: RecBole 1.2.1's exact split of ml-100k, rebuilt from the fetched data.

RecBole's knowledge-aware pipeline with its default settings (seed 2020) does, in order:

1. keep the interactions of ``ml-100k.inter`` in file order, dropping those whose item has no
   KG entity in ``ml-100k.link`` (84 items, 2,446 ratings; 97,554 remain);
2. seed torch's CPU generator with 2020 and shuffle the rows with one ``randperm`` of that length;
3. group the shuffled rows by user (each user's rows keep their shuffled order) and cut each
   user's list 8:1:1: ``valid = floor(0.1 n)``, ``test = floor(0.1 n)``, ``train`` the rest, except
   that a part whose exact share is in (0, 1) gets one row taken from train while train keeps
   more than one row.

:func:`build` does the same with our own vectorised code and writes the three pre-split files in
RecBole's atomic naming (rows sorted by user then item token, as the project's reference copy
is) plus the unchanged ``.kg``, ``.link`` and ``.item`` files. The result is checked against the
sha256 of the reference files (:data:`SPLIT_SHA256`): were a future torch to change its
``randperm`` stream, the build stops with an error instead of yielding a different split.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ktup.errors import KtupError

NAME = "ml-100k-recbole-split"
SEED = 2020
RATIOS = (0.8, 0.1, 0.1)
#: sha256 of the reference files (RecBole 1.2.1's split as the project's shared data folder holds it)
SPLIT_SHA256 = {
    "train": "c9074befb6e74b32afd6ef1d6886af8fa05071aafaf05d451e76f3fe921647cf",
    "valid": "e2cd04cd02e6e421d4a48169207c568039f8a68cc46ede24f4f085f38ee75c2f",
    "test": "1fab0166c3c2194673ff3e4c228f7023d091c9e6ba2e127ecc68aaf6793e1ef6",
}


def part_sizes(n: np.ndarray, ratios=RATIOS) -> np.ndarray:
    """(U, 3) rows of each user's train/valid/test part, RecBole's rounding (see the module doc)."""
    n = np.asarray(n, dtype=np.int64)
    total = sum(ratios)
    r = [x / total for x in ratios]
    size = np.stack([np.zeros_like(n)] + [(r[i] * n).astype(np.int64) for i in (1, 2)], axis=1)  # floor
    size[:, 0] = n - size[:, 1] - size[:, 2]
    for i in (2, 1):   # the last part first, as RecBole does
        share = r[i] * n
        bump = (size[:, 0] > 1) & (share > 0) & (share < 1)
        size[:, i] += bump
        size[:, 0] -= bump
    return size


def split_labels(users: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(order, part)``: the shuffled-and-grouped row order and each of its rows' part (0/1/2)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(users), generator=gen).numpy()
    u = np.asarray(users)[perm]
    _, first, inv = np.unique(u, return_index=True, return_inverse=True)
    grouped = np.argsort(first[inv], kind="stable")   # users by first appearance, shuffled order within
    key = first[inv][grouped]
    starts = np.r_[0, np.flatnonzero(key[1:] != key[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(key)])
    within = np.arange(len(key)) - np.repeat(starts, counts)
    size = part_sizes(counts)
    c0, c1 = np.repeat(size[:, 0], counts), np.repeat(size[:, 1], counts)
    part = np.where(within < c0, 0, np.where(within < c0 + c1, 1, 2))
    return perm[grouped], part


def _read_tokens(path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        raise KtupError(f"{path}: cannot read ({str(e).splitlines()[0]})") from None
    names = {c.split(":")[0]: c for c in df.columns}
    missing = [c for c in columns if c not in names]
    if missing:
        raise KtupError(f"{path}:1: missing column(s) {', '.join(missing)}")
    return [df[names[c]].to_numpy() for c in columns]


def build(source: Path, dest: Path) -> Path:
    """Write the split of ``source`` (ml-100k atomic files) into ``dest`` atomically; returns ``dest``."""
    import pandas as pd

    source, dest = Path(source), Path(dest)
    users, items = _read_tokens(source / "ml-100k.inter", ("user_id", "item_id"))
    (linked,) = _read_tokens(source / "ml-100k.link", ("item_id",))
    keep = np.isin(items, linked)
    users, items = users[keep], items[keep]
    order, part = split_labels(users)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=dest.parent) as tmp:
        out = Path(tmp) / NAME
        out.mkdir()
        for k, name in enumerate(("train", "valid", "test")):
            sel = order[part == k]
            u, i = users[sel].astype(str), items[sel].astype(str)
            srt = np.lexsort((i, u))   # by user token, then item token (string order)
            table = pd.DataFrame({"user_id:token": u[srt], "item_id:token": i[srt]})
            data = table.to_csv(sep="\t", index=False, lineterminator="\n").encode("utf-8")
            digest = hashlib.sha256(data).hexdigest()
            if digest != SPLIT_SHA256[name]:
                raise KtupError(f"rebuilding {NAME}: the {name} part differs from RecBole 1.2.1's (sha256 {digest}); "
                                "this torch's randperm stream may differ from the one RecBole used")
            (out / f"ml-100k.{name}.inter").write_bytes(data)
        for ext in ("kg", "link", "item"):
            if (source / f"ml-100k.{ext}").exists():
                shutil.copyfile(source / f"ml-100k.{ext}", out / f"ml-100k.{ext}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(out, dest)
    return dest
