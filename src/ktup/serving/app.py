"""The HTTP service: FastAPI around one loaded recommender.

The model is loaded once (by the caller) and every model call runs under one lock and
``torch.no_grad()``: requests are served by Starlette's thread pool, and a lock is the simplest
way to make that safe whatever the recommender caches (torch itself parallelises each call over
its intra-op threads, so the lock costs little on CPU). Bad input never becomes a 500: ids are
checked against the id maps before the model is touched (404 naming the id), parameters are
validated (422, or 413 for an oversized batch, 400 for a malformed body or an explanation the
model cannot give), and every error body is JSON ``{"error": "..."}``.

The recommender is anything shaped like :class:`ktup.explain.Recommender`:
``recommend(users, k, filter_seen, exclude, explain) -> list[list[dict]]``, ``explain(user, item) -> dict``,
and attributes ``model`` (with ``name``, ``explains``) and ``dataset`` (with ``users``/``items`` id maps).
"""

# No ``from __future__ import annotations``: FastAPI must resolve the handlers' annotations,
# which name schema classes local to create_app.
import logging
import threading
import time
from typing import Any, Optional, Union

import numpy as np

from ktup.errors import KtupError

log = logging.getLogger("ktup.serving")

DEFAULT_MAX_BATCH = 1000


def require_serve_extra() -> None:
    """Fail with one clear line when the optional ``serve`` extra is not installed."""
    missing = []
    for mod in ("fastapi", "uvicorn", "fastapi_offline"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise KtupError(f"serving needs the optional extra: pip install 'ktup[serve]' (missing: {', '.join(missing)})")


def plain(obj: Any) -> Any:
    """numpy / torch scalars and arrays → plain Python (so any recommender output serialises)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch.Tensor without importing torch here
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def describe(recommender: Any) -> dict[str, Any]:
    """Model name, dataset and run id of a recommender, whatever run-info attribute it carries."""
    info: dict[str, Any] = {}
    for attr in ("info", "run_info"):
        val = getattr(recommender, attr, None)
        if isinstance(val, dict):
            info = val
            break
    run = getattr(recommender, "run", None)
    if not info and run is not None and isinstance(getattr(run, "info", None), dict):
        info = run.info
    model = getattr(recommender, "model", None)
    dataset = getattr(recommender, "dataset", None)
    return {
        "model": str(info.get("model") or getattr(model, "name", "unknown")),
        "dataset": str(info.get("dataset") or getattr(dataset, "name", "unknown")),
        "run_id": info.get("run_id") or info.get("id"),
    }


class _ApiError(Exception):
    """Raised inside handlers; turned into ``{"error": message}`` with the status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _format_validation(errors: list[dict]) -> tuple[int, str]:
    """Pydantic errors → (status, one line): 400 for an unparseable body, 422 otherwise."""
    parts = []
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            return 400, f"malformed JSON body: {ctx.get('error', err.get('msg', 'invalid JSON'))}"
        loc = [str(x) for x in err.get("loc", ()) if x not in ("body",)]
        msg = err.get("msg", "invalid value")
        if loc and loc[-1] in ("str", "int"):   # a member of the "string or integer id" union
            loc, msg = loc[:-1], "expected an id (a string or an integer)"
        line = f"{'.'.join(loc) if loc else 'request'}: {msg}"
        if line not in parts:
            parts.append(line)
    return 422, "; ".join(parts) or "invalid request"


def create_app(recommender: Any, *, max_batch: int = DEFAULT_MAX_BATCH, title: str = "ktup", info: Optional[dict] = None):
    """Build the FastAPI app serving ``recommender`` (already loaded; it is never reloaded).

    ``max_batch`` bounds the number of users in one ``POST /recommendations`` (413 beyond it).
    ``info`` overrides what ``/health`` reports (model, dataset, run_id).
    """
    require_serve_extra()
    import torch
    from fastapi import Body, Path, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi_offline import FastAPIOffline  # /docs and /redoc with their assets served locally, no CDN
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ktup import __version__

    if max_batch <= 0:
        raise KtupError(f"max_batch must be > 0, got {max_batch}")
    dataset = recommender.dataset
    model = recommender.model
    n_items = len(dataset.items)
    explains = bool(getattr(model, "explains", False))
    about = {**describe(recommender), **(info or {})}
    started = time.monotonic()
    lock = threading.Lock()

    # ------------------------------------------------------------- schemas
    class Recommendation(BaseModel):
        model_config = ConfigDict(extra="allow")  # "explanation" and any extra field pass through
        item: str
        title: Optional[str] = None
        score: float
        rank: int

    class UserRecommendations(BaseModel):
        user: str
        recommendations: list[Recommendation]

    class RecommendationsResponse(BaseModel):
        user: str
        k: int
        recommendations: list[Recommendation]

    class BatchRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        users: list[Union[StrictStr, StrictInt]] = Field(..., description=f"original user ids (at most {max_batch})")
        k: Optional[StrictInt] = Field(None, description="items per user (1 .. catalogue size; default 10, or the catalogue if smaller)")
        explain: bool = False
        filter_seen: bool = True
        exclude: list[Union[StrictStr, StrictInt]] = Field(default_factory=list, description="item ids never to recommend")

    class BatchResponse(BaseModel):
        k: int
        results: list[UserRecommendations]

    class ExplanationResponse(BaseModel):
        user: str
        item: str
        explanation: dict[str, Any]

    class Health(BaseModel):
        status: str
        model: str
        dataset: str
        run_id: Optional[str]
        uptime_seconds: float
        users: int
        items: int
        explains: bool
        version: str

    class ErrorBody(BaseModel):
        error: str

    errors_doc = {code: {"model": ErrorBody} for code in (400, 404, 413, 422)}

    # ------------------------------------------------------------- helpers
    def check_user(user: str) -> str:
        if user not in dataset.users:
            raise _ApiError(404, f"unknown user {user!r}")
        return user

    def check_item(item: str, what: str = "item") -> str:
        if item not in dataset.items:
            raise _ApiError(404, f"unknown {what} {item!r}")
        return item

    def check_k(k: int) -> None:
        if k <= 0:
            raise _ApiError(422, f"k: must be a positive integer, got {k}")
        if k > n_items:
            raise _ApiError(422, f"k: {k} exceeds the catalogue size ({n_items} items)")

    def check_explain() -> None:
        if not explains:
            raise _ApiError(400, f"model {about['model']!r} gives no explanations (explain needs a ktup or tup model)")

    def call_model(fn, *args, **kwargs):
        """One model call at a time, without autograd; recommender errors → JSON errors."""
        try:
            with lock, torch.no_grad():
                return fn(*args, **kwargs)
        except KtupError as e:
            msg = str(e)
            raise _ApiError(404 if msg.startswith("unknown ") else 400, msg) from None

    def recommend(users: list[str], k: int, explain: bool, filter_seen: bool, exclude: list[str]) -> list[list[dict]]:
        out = call_model(recommender.recommend, users, k=k, filter_seen=filter_seen, exclude=exclude or None, explain=explain)
        return [[{**plain(rec), "item": str(rec["item"])} for rec in per_user] for per_user in out]

    # ------------------------------------------------------------- the app
    app = FastAPIOffline(
        title=title,
        version=__version__,
        description="Recommendations explained by knowledge-graph relations (KTUP). Ids are the dataset's original tokens.",
    )

    max_body = 64 * 1024 + max_batch * 256   # generous for max_batch ids and an exclude list

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        """Refuse an oversized body before it is read (a client could otherwise send gigabytes)."""
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > max_body:
            return JSONResponse(status_code=413, content={"error": f"request body of {size} bytes exceeds {max_body} bytes"})
        return await call_next(request)

    @app.exception_handler(_ApiError)
    async def _api_error(request: Request, exc: _ApiError):
        return JSONResponse(status_code=exc.status, content={"error": exc.message})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        status, message = _format_validation(list(exc.errors()))
        return JSONResponse(status_code=status, content={"error": message})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return JSONResponse(status_code=exc.status_code, content={"error": message}, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # only true bugs reach here
        log.exception("internal error serving %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={"error": f"internal error: {type(exc).__name__}"})

    @app.get("/health", response_model=Health, summary="Liveness and what is being served")
    def health() -> dict:
        return {
            "status": "ok",
            "model": about["model"],
            "dataset": about["dataset"],
            "run_id": None if about.get("run_id") is None else str(about["run_id"]),
            "uptime_seconds": round(time.monotonic() - started, 3),
            "users": len(dataset.users),
            "items": n_items,
            "explains": explains,
            "version": __version__,
        }

    @app.get(
        "/users/{user_id}/recommendations",
        response_model=RecommendationsResponse,
        responses=errors_doc,
        summary="Top-k items for one user",
    )
    def user_recommendations(
        user_id: str = Path(..., description="original user id"),
        k: Optional[int] = Query(None, description="number of items (1 .. catalogue size; default 10, or the catalogue if smaller)"),
        explain: bool = Query(False, description="attach the KG relation explaining each item"),
        filter_seen: bool = Query(True, description="leave out items the user interacted with"),
        exclude: list[str] = Query([], description="item ids never to recommend (repeat the parameter)"),
    ) -> dict:
        check_user(user_id)
        k = min(10, n_items) if k is None else k
        check_k(k)
        for item in exclude:
            check_item(item, "excluded item")
        if explain:
            check_explain()
        (recs,) = recommend([user_id], k, explain, filter_seen, list(exclude))
        return {"user": user_id, "k": k, "recommendations": recs}

    @app.get(
        "/users/{user_id}/items/{item_id}/explanation",
        response_model=ExplanationResponse,
        responses=errors_doc,
        summary="Why the model scores this item for this user",
    )
    def explanation(user_id: str = Path(...), item_id: str = Path(...)) -> dict:
        check_user(user_id)
        check_item(item_id)
        check_explain()
        exp = call_model(recommender.explain, user_id, item_id)
        return {"user": user_id, "item": item_id, "explanation": plain(exp)}

    @app.post(
        "/recommendations",
        response_model=BatchResponse,
        responses=errors_doc,
        summary=f"Top-k items for many users at once (at most {max_batch})",
    )
    def batch_recommendations(body: BatchRequest = Body(...)) -> dict:
        if len(body.users) > max_batch:
            raise _ApiError(413, f"users: {len(body.users)} users in one request exceeds the limit of {max_batch}")
        if not body.users:
            raise _ApiError(422, "users: list at least one user id")
        users = [check_user(str(u)) for u in body.users]
        k = min(10, n_items) if body.k is None else body.k
        check_k(k)
        exclude = [check_item(str(i), "excluded item") for i in body.exclude]
        if body.explain:
            check_explain()
        recs = recommend(users, k, body.explain, body.filter_seen, exclude)
        return {"k": k, "results": [{"user": u, "recommendations": r} for u, r in zip(users, recs)]}

    from ktup.serving.explorer import explorer_router

    app.include_router(explorer_router(recommender, about))   # the page at / and the JSON it reads
    app.state.recommender = recommender
    app.state.max_batch = max_batch
    return app
