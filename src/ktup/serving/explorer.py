"""The recommendation explorer: the page at ``/`` and the small JSON endpoints it reads.

The page (``static/explorer.html``, ``.css``, ``.js``; package data, no build step, nothing
fetched from elsewhere) calls the service's own API: ``/users/{id}/recommendations`` and
``/users/{id}/items/{item}/explanation`` for the lists and the reasons, and the endpoints below
for what the API did not have:

- ``GET /run`` — what is served: model, dataset, run id, test metrics with their protocol, the
  run's training-curve plots;
- ``GET /run/plots/{name}`` — one of those PNG files (only names listed by ``/run``);
- ``GET /users?offset=&limit=&q=`` — users by activity (most interactions first), optionally
  those whose id starts with ``q``;
- ``GET /users/{id}/history?limit=`` — the user's interactions with titles, newest first when
  the data has timestamps.

Everything here reads numpy arrays prepared once; no model call, so no lock is needed. Errors go
through the app's handlers as ``{"error": "..."}``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ktup.explain.names import display_title

MAX_LIST = 1000          # users or history items in one response
_SPLITS = ("train", "valid", "test")
_ASSETS = {  # URL name -> (package file, media type); nothing else is served
    "explorer.css": ("explorer.css", "text/css; charset=utf-8"),
    "explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
}


def static_text(name: str) -> str:
    """A file of ``ktup/serving/static`` (package data, present in a non-editable install)."""
    return resources.files("ktup.serving").joinpath("static", name).read_text(encoding="utf-8")


class _Activity:
    """Per-user interaction counts and histories (newest first), built once from the splits."""

    def __init__(self, dataset: Any):
        parts = [(s, dataset.split(s)) for s in _SPLITS if _has_split(dataset, s)]
        n_users = len(dataset.users)
        if parts:
            users = np.concatenate([p.users for _, p in parts]).astype(np.int64)
            items = np.concatenate([p.items for _, p in parts]).astype(np.int64)
            split = np.concatenate([np.full(len(p), k, dtype=np.int8) for k, (_, p) in enumerate(parts)])
            has_ts = all(getattr(p, "timestamps", None) is not None for _, p in parts)
            ts = np.concatenate([np.asarray(p.timestamps, dtype=np.float64) for _, p in parts]) if has_ts else None
        else:
            users = items = np.zeros(0, dtype=np.int64)
            split, ts, has_ts = np.zeros(0, dtype=np.int8), None, False
        self.split_names = [s for s, _ in parts]
        self.timed = bool(has_ts)
        # newest first: by time (unknown times last) when there are timestamps; else the later split
        # first (test, valid, train), the source order within a split
        if ts is not None:
            key_time = np.where(np.isnan(ts), -np.inf, ts)
            order = np.lexsort((np.arange(users.shape[0]), -key_time, users))
        else:
            order = np.lexsort((np.arange(users.shape[0]), -split.astype(np.int64), users))
        self.items, self.split = items[order], split[order]
        self.ts = None if ts is None else ts[order]
        counts = np.bincount(users, minlength=n_users)
        self.indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum(counts, out=self.indptr[1:])
        self.counts = counts
        self.by_activity = np.lexsort((np.arange(n_users), -counts))   # most active first, ties by id order


def _has_split(dataset: Any, name: str) -> bool:
    try:
        return dataset.split(name) is not None
    except Exception:  # noqa: BLE001 - an object shaped like a dataset without that split
        return False


def _run_of(recommender: Any):
    return getattr(recommender, "run", None)


def _plots_dir(recommender: Any) -> Optional[Path]:
    run = _run_of(recommender)
    path = getattr(run, "path", None)
    return None if path is None else Path(path) / "plots"


def list_plots(recommender: Any) -> list[str]:
    """PNG files in the run's ``plots/`` folder (names only, sorted)."""
    folder = _plots_dir(recommender)
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file() and not p.is_symlink())


def run_summary(recommender: Any, about: dict) -> dict:
    """Model, dataset, run id, test metrics and protocol, plots: what the page shows on top."""
    run = _run_of(recommender)
    final = getattr(run, "final", None) or {}
    info = getattr(run, "info", None) or {}
    protocol = final.get("protocol") or {}
    d = recommender.dataset
    model = recommender.model
    return {
        "model": about.get("model"),
        "dataset": about.get("dataset"),
        "run_id": None if about.get("run_id") is None else str(about["run_id"]),
        "status": info.get("status"),
        "explains": bool(getattr(model, "explains", False)),
        "users": len(d.users),
        "items": len(d.items),
        "epochs": final.get("epochs", info.get("epochs_done")),
        "best_epoch": final.get("best_epoch", info.get("best_epoch")),
        "valid_metric": final.get("valid_metric"),
        "best_valid": final.get("best_valid"),
        "test": final.get("test") or None,
        "protocol": {"name": protocol.get("name"), "description": protocol.get("description")} if protocol else None,
        "plots": list_plots(recommender),
    }


def explorer_router(recommender: Any, about: dict):
    """An ``APIRouter`` with the page, its assets and the endpoints listed in the module doc."""
    from fastapi import APIRouter, HTTPException, Path as PathParam, Query
    from fastapi.responses import FileResponse, HTMLResponse, Response

    dataset = recommender.dataset
    page = static_text("explorer.html")
    assets = {name: (static_text(file), media) for name, (file, media) in _ASSETS.items()}
    state: dict[str, _Activity] = {}

    def activity() -> _Activity:
        if "a" not in state:  # built on first use (a few ms on ml-100k)
            state["a"] = _Activity(dataset)
        return state["a"]

    def user_index(user: str) -> int:
        if user not in dataset.users:
            raise HTTPException(404, f"unknown user {user!r}")
        return int(dataset.users.index(user))

    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/explorer/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name not in assets:
            raise HTTPException(404, f"no explorer file named {name!r}")
        text, media = assets[name]
        return Response(text, media_type=media)

    @router.get("/run", summary="What is served: model, dataset, test metrics with their protocol, plots")
    def run() -> dict:
        return run_summary(recommender, about)

    @router.get("/run/plots/{name}", summary="One of the run's training-curve PNGs (names from /run)")
    def plot(name: str = PathParam(..., description="a file name listed in /run's plots")):
        if name not in list_plots(recommender):
            raise HTTPException(404, f"no plot named {name!r} in this run")
        return FileResponse(_plots_dir(recommender) / name, media_type="image/png")

    @router.get("/users", summary="Users by activity (most interactions first)")
    def users(
        offset: int = Query(0, ge=0, description="skip this many users"),
        limit: int = Query(50, ge=1, le=MAX_LIST, description=f"users to list (1 .. {MAX_LIST})"),
        q: str = Query("", max_length=200, description="only users whose id starts with this"),
    ) -> dict:
        a = activity()
        order = a.by_activity
        if q:
            tokens = dataset.users.tokens
            order = order[np.fromiter((tokens[u].startswith(q) for u in order.tolist()), dtype=bool, count=order.shape[0])]
        page_ids = order[offset:offset + limit].tolist()
        return {
            "total": int(order.shape[0]),
            "offset": offset,
            "users": [{"user": dataset.users.token(u), "interactions": int(a.counts[u])} for u in page_ids],
        }

    @router.get("/users/{user_id}/history", summary="The user's interactions with titles, newest first")
    def history(
        user_id: str = PathParam(..., description="original user id"),
        limit: int = Query(50, ge=1, le=MAX_LIST, description=f"items to list (1 .. {MAX_LIST})"),
    ) -> dict:
        u = user_index(user_id)
        a = activity()
        lo, hi = int(a.indptr[u]), int(a.indptr[u + 1])
        rows = range(lo, min(hi, lo + limit))
        out = []
        for r in rows:
            i = int(a.items[r])
            t = None if a.ts is None or np.isnan(a.ts[r]) else float(a.ts[r])
            title = dataset.item_title(i)
            out.append({"item": dataset.items.token(i), "title": title, "display_title": display_title(title),
                        "split": a.split_names[int(a.split[r])], "timestamp": t})
        return {
            "user": user_id,
            "total": hi - lo,
            "order": "newest first" if a.timed else "no timestamps: test, then valid, then train interactions",
            "items": out,
        }

    return router
