"""Tiny datasets and helpers shared by the training and resume tests (no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ktup.config import Config
from ktup.data.dataset import IdMap, Interactions, KGDataset


def tiny_dataset(seed: int = 0, n_users: int = 40, n_items: int = 50, n_clusters: int = 5) -> KGDataset:
    """Users like the items of one cluster; the KG ties each item to its cluster's attribute.

    Items 0..n_items-1 are linked to entities of the same index except the last two (unlinked);
    entities n_items.. are one attribute per cluster plus a few filler entities.
    """
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(n_items) % n_clusters
    user_cluster = rng.integers(0, n_clusters, n_users)
    pairs = []
    for u in range(n_users):  # test fixture, not a hot path
        liked = np.flatnonzero(item_cluster == user_cluster[u])
        others = np.flatnonzero(item_cluster != user_cluster[u])
        chosen = np.concatenate([rng.choice(liked, 7, replace=False), rng.choice(others, 2, replace=False)])
        pairs += [(u, i) for i in chosen]
    pairs = np.array(pairs, dtype=np.int64)
    rng.shuffle(pairs)
    n = len(pairs)
    a, b = int(0.8 * n), int(0.9 * n)
    mk = lambda p: Interactions(p[:, 0].copy(), p[:, 1].copy(), n_users, n_items)  # noqa: E731
    n_entities = n_items + n_clusters + 10
    attr = n_items + item_cluster
    kg = [np.stack([np.arange(n_items), np.zeros(n_items, dtype=np.int64), attr], 1)]
    kg.append(np.stack([rng.integers(0, n_entities, 80), rng.integers(1, 3, 80), rng.integers(0, n_entities, 80)], 1))
    kg = np.unique(np.concatenate(kg).astype(np.int64), axis=0)
    rng.shuffle(kg)
    m = len(kg)
    ka, kb = int(0.9 * m), int(0.95 * m)
    item_entity = np.arange(n_items, dtype=np.int64)
    item_entity[-2:] = -1
    return KGDataset(
        name="tiny", users=IdMap([f"u{i}" for i in range(n_users)], "user"),
        items=IdMap([f"i{i}" for i in range(n_items)], "item"),
        entities=IdMap([f"e{i}" for i in range(n_entities)], "entity"),
        relations=IdMap(["genre", "r1", "r2"], "relation"), item_entity=item_entity,
        train=mk(pairs[:a]), valid=mk(pairs[a:b]), test=mk(pairs[b:]),
        kg_train=kg[:ka], kg_valid=kg[ka:kb], kg_test=kg[kb:],
        item_info={"title": [f"Item {i}" for i in range(n_items)]})


def tiny_config(model: str = "ktup", **train) -> Config:
    t = {"epochs": 3, "batch_size": 64, "kg_batch_size": 64, "lr": 0.01, "seed": 7}
    t.update(train)
    return Config.from_dict({"model": {"model": model, "embedding_size": 16}, "train": t})


def train_one_epoch_runs(root: Path, models, make_dataset, embedding_size: int = 8) -> dict[str, str]:
    """{model: run_dir} of 1-epoch runs (quiet, no KG evaluation) on ``make_dataset()``: the small
    real runs that the serving, export and recommend tests load."""
    from ktup.training import train

    out = {}
    for m in models:
        cfg = Config.from_dict({"model": {"model": m, "embedding_size": embedding_size},
                                "train": {"epochs": 1, "batch_size": 16, "kg_batch_size": 16},
                                "eval": {"kg_eval": False}})
        out[m] = train(cfg, dataset=make_dataset(), out=str(Path(root) / m), progress="quiet").path
    return out


def write_atomic_files(ds: KGDataset, folder: Path) -> Path:
    """The dataset as RecBole atomic files (``folder/NAME.inter|.kg|.link``), all interactions."""
    folder.mkdir(parents=True, exist_ok=True)
    name = folder.name
    users = np.concatenate([ds.train.users, ds.valid.users, ds.test.users])
    items = np.concatenate([ds.train.items, ds.valid.items, ds.test.items])
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{ds.users.token(u)}\t{ds.items.token(i)}\t5\t{k}" for k, (u, i) in enumerate(zip(users, items))]
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    kg = ds.kg_all
    lines = ["head_id:token\trelation_id:token\ttail_id:token"]
    lines += [f"{ds.entities.token(h)}\t{ds.relations.token(r)}\t{ds.entities.token(t)}" for h, r, t in kg]
    (folder / f"{name}.kg").write_text("\n".join(lines) + "\n")
    lines = ["item_id:token\tentity_id:token"]
    lines += [f"{ds.items.token(i)}\t{ds.entities.token(e)}" for i, e in enumerate(ds.item_entity) if e >= 0]
    (folder / f"{name}.link").write_text("\n".join(lines) + "\n")
    return folder


def one_thread():
    """Generator for an autouse fixture: tiny models run fastest (and steadiest) on one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
