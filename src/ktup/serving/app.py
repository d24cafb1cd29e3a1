"""The HTTP service: FastAPI around one loaded recommender.

The model is loaded once (by the caller). Model work runs in Starlette's thread pool under
``torch.no_grad()``, one call at a time (an ``asyncio.Lock``, fair: waiters are served in
order), and a request's work is cut into slices — a few thousand results or a few
explanations per model call — so a heavy request does not hold the model for long: light
requests get their turn between its slices, ``/health`` never waits for the model (it runs on
the event loop), and a request whose client has disconnected stops at the next slice.

Bounds (:class:`ktup.serving.common.AppLimits`, 413 beyond each, checked before any model work):
users per batch, users × k per request, explanations per request, response bytes (checked
while the response is built), and the request body (counted as it streams, chunked or not:
:class:`ktup.serving.guard.BodyLimit`).

Bad input never becomes a 500: ids are checked against the id maps before the model is touched
(404 naming the id), parameters are validated (422, 413 for oversized work, 400 for a malformed
body or an explanation the model cannot give), and every error body is JSON ``{"error": "..."}``.
Ids may contain ``/``: percent-encode it (``%2F``) in the GET paths.

The recommender is anything shaped like :class:`ktup.explain.Recommender`:
``recommend(users, k, filter_seen, exclude, explain) -> list[list[dict]]``, ``explain(user, item) -> dict``,
and attributes ``model`` (with ``name``, ``explains``) and ``dataset`` (with ``users``/``items`` id maps).
"""

# No ``from __future__ import annotations``: FastAPI must resolve the handlers' annotations,
# which name schema classes local to create_app.
import asyncio
import json
import logging
import re
import time
import weakref
from typing import Any, Optional, Union
from urllib.parse import unquote

from ktup.errors import KtupError
from ktup.serving.common import (DEFAULT_MAX_BATCH, ApiError, AppLimits, describe, format_validation, plain,  # noqa: F401
                                 require_serve_extra)

log = logging.getLogger("ktup.serving")

_RAW_RECS = re.compile(r"^/users/([^/]*)/recommendations/?$")
_RAW_EXPLAIN = re.compile(r"^/users/([^/]*)/items/([^/]*)/explanation/?$")


class _ClientGone(Exception):
    """The client disconnected while its request was being worked on."""


def create_app(recommender: Any, *, max_batch: int = DEFAULT_MAX_BATCH, max_results: int = AppLimits.max_results,
               max_explanations: int = AppLimits.max_explanations,
               max_response_bytes: int = AppLimits.max_response_bytes, slice_results: int = AppLimits.slice_results,
               slice_explanations: int = AppLimits.slice_explanations, title: str = "ktup",
               info: Optional[dict] = None):
    """Build the FastAPI app serving ``recommender`` (already loaded; it is never reloaded).

    Limits per request (413 beyond each; see :class:`ktup.serving.common.AppLimits`):
    ``max_batch`` users in one ``POST /recommendations``, ``max_results`` users × k,
    ``max_explanations`` users × k with ``explain=true``, ``max_response_bytes`` of JSON; the body
    may hold ``64 KiB + 256 B × max_batch``. ``slice_*``: results / explanations per model call.
    ``info`` overrides what ``/health`` reports (model, dataset, run_id).
    """
    require_serve_extra()
    import torch
    from fastapi import Body, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from fastapi_offline import FastAPIOffline  # /docs and /redoc with their assets served locally, no CDN
    from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from ktup import __version__
    from ktup.serving.guard import BodyLimit

    if max_batch <= 0:
        raise KtupError(f"max_batch must be > 0, got {max_batch}")
    limits = AppLimits(max_batch=max_batch, max_results=max_results, max_explanations=max_explanations,
                       max_response_bytes=max_response_bytes, slice_results=slice_results,
                       slice_explanations=slice_explanations).check()
    dataset = recommender.dataset
    model = recommender.model
    n_items = len(dataset.items)
    explains = bool(getattr(model, "explains", False))
    about = {**describe(recommender), **(info or {})}
    started = time.monotonic()
    locks: "weakref.WeakKeyDictionary[Any, asyncio.Lock]" = weakref.WeakKeyDictionary()

    def model_lock() -> asyncio.Lock:
        """One model call at a time; FIFO, so slices of requests interleave (one lock per event
        loop: an app may be served by several loops one after another, e.g. in tests)."""
        loop = asyncio.get_running_loop()
        if loop not in locks:
            locks[loop] = asyncio.Lock()
        return locks[loop]

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
        limits: dict[str, int]

    class ErrorBody(BaseModel):
        error: str

    errors_doc = {code: {"model": ErrorBody} for code in (400, 404, 413, 422)}

    # ------------------------------------------------------------- helpers
    def check_user(user: str) -> str:
        if user not in dataset.users:
            raise ApiError(404, f"unknown user {user!r}")
        return user

    def check_item(item: str, what: str = "item") -> str:
        if item not in dataset.items:
            raise ApiError(404, f"unknown {what} {item!r}")
        return item

    def check_k(k: int) -> None:
        if k <= 0:
            raise ApiError(422, f"k: must be a positive integer, got {k}")
        if k > n_items:
            raise ApiError(422, f"k: {k} exceeds the catalogue size ({n_items} items)")

    def check_work(n_users: int, k: int, explain: bool) -> None:
        if n_users * k > limits.max_results:
            raise ApiError(413, f"{n_users} users × k={k} = {n_users * k} results exceeds the limit of "
                                f"{limits.max_results} per request; ask for fewer users or a smaller k")
        if explain:
            if not explains:
                raise ApiError(400, f"model {about['model']!r} gives no explanations (explain needs a ktup or tup model)")
            if n_users * k > limits.max_explanations:
                raise ApiError(413, f"{n_users} users × k={k} = {n_users * k} explanations exceeds the limit of "
                                    f"{limits.max_explanations} per request; lower k or explain fewer users")

    def _run(fn, args, kwargs):
        try:
            with torch.no_grad():
                return fn(*args, **kwargs)
        except KtupError as e:
            msg = str(e)
            raise ApiError(404 if msg.startswith("unknown ") else 400, msg) from None

    async def call_model(fn, *args, **kwargs):
        """One model call at a time, in the thread pool, without autograd; recommender errors → JSON errors."""
        async with model_lock():
            return await run_in_threadpool(_run, fn, args, kwargs)

    async def recommend(request: Request, users: list[str], k: int, explain: bool, filter_seen: bool,
                        exclude: list[str]):
        """Yield ``(user, recommendations)`` slice by slice; stops if the client disconnects."""
        per_slice = max(1, (limits.slice_explanations if explain else limits.slice_results) // k)
        for start in range(0, len(users), per_slice):
            if start and await request.is_disconnected():
                raise _ClientGone()
            part = users[start:start + per_slice]
            out = await call_model(recommender.recommend, part, k=k, filter_seen=filter_seen,
                                   exclude=exclude or None, explain=explain)
            for user, per_user in zip(part, out):
                yield user, [{**plain(rec), "item": str(rec["item"])} for rec in per_user]

    def encode(obj: Any) -> bytes:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")

    def too_big(size: int) -> ApiError:
        return ApiError(413, f"the response would exceed {limits.max_response_bytes} bytes (at {size} so far); "
                             "ask for fewer users or a smaller k")

    def json_response(content: bytes) -> Any:
        if len(content) > limits.max_response_bytes:
            raise too_big(len(content))
        return Response(content=content, media_type="application/json")

    def path_ids(request: Request, pattern: "re.Pattern[str]", n: int) -> Optional[tuple[str, ...]]:
        """Ids from the raw (still percent-encoded) path, so an encoded ``/`` stays inside its id."""
        raw = request.scope.get("raw_path")
        root = request.scope.get("root_path", "")
        if not raw:
            return None
        m = pattern.match(raw.decode("latin-1")[len(root):])
        return tuple(unquote(g) for g in m.groups()) if m and len(m.groups()) == n else None

    # ------------------------------------------------------------- the app
    app = FastAPIOffline(
        title=title,
        version=__version__,
        description="Recommendations explained by knowledge-graph relations (KTUP). Ids are the dataset's original "
                    "tokens (percent-encode '/' in paths). Limits per request: " +
                    ", ".join(f"{k}={v}" for k, v in limits.__dict__.items() if k.startswith("max_")) + ".",
    )
    max_body = 64 * 1024 + max_batch * 256   # generous for max_batch ids and an exclude list
    app.add_middleware(BodyLimit, max_body=max_body)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return JSONResponse(status_code=exc.status, content={"error": exc.message})

    @app.exception_handler(_ClientGone)
    async def _client_gone(request: Request, exc: _ClientGone):
        log.info("stopped %s %s: the client disconnected", request.method, request.url.path)
        return Response(status_code=499)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        status, message = format_validation(list(exc.errors()))
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

    @app.get("/health", response_model=Health, summary="Liveness, what is being served and the request limits")
    async def health() -> dict:   # on the event loop: answers even while the model is busy
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
            "limits": {k: v for k, v in limits.__dict__.items() if k.startswith("max_")} | {"max_body_bytes": max_body},
        }

    @app.get(
        "/users/{user_id:path}/recommendations",
        response_model=RecommendationsResponse,
        responses=errors_doc,
        summary="Top-k items for one user (percent-encode a '/' in the id as %2F)",
    )
    async def user_recommendations(
        request: Request,
        user_id: str,
        k: Optional[int] = Query(None, description="number of items (1 .. catalogue size; default 10, or the catalogue if smaller)"),
        explain: bool = Query(False, description="attach the KG relation explaining each item"),
        filter_seen: bool = Query(True, description="leave out items the user interacted with"),
        exclude: list[str] = Query([], description="item ids never to recommend (repeat the parameter)"),
    ):
        (user_id,) = path_ids(request, _RAW_RECS, 1) or (user_id,)
        check_user(user_id)
        k = min(10, n_items) if k is None else k
        check_k(k)
        for item in exclude:
            check_item(item, "excluded item")
        check_work(1, k, explain)
        recs = [r async for _, r in recommend(request, [user_id], k, explain, filter_seen, list(exclude))][0]
        return json_response(encode({"user": user_id, "k": k, "recommendations": recs}))

    @app.get(
        "/users/{user_id:path}/items/{item_id:path}/explanation",
        response_model=ExplanationResponse,
        responses=errors_doc,
        summary="Why the model scores this item for this user (percent-encode a '/' in an id as %2F)",
    )
    async def explanation(request: Request, user_id: str, item_id: str):
        user_id, item_id = path_ids(request, _RAW_EXPLAIN, 2) or (user_id, item_id)
        check_user(user_id)
        check_item(item_id)
        check_work(1, 1, True)
        exp = await call_model(recommender.explain, user_id, item_id)
        return json_response(encode({"user": user_id, "item": item_id, "explanation": plain(exp)}))

    @app.post(
        "/recommendations",
        response_model=BatchResponse,
        responses=errors_doc,
        summary=f"Top-k items for many users at once (at most {max_batch})",
    )
    async def batch_recommendations(request: Request, body: BatchRequest = Body(...)):
        if len(body.users) > max_batch:
            raise ApiError(413, f"users: {len(body.users)} users in one request exceeds the limit of {max_batch}")
        if not body.users:
            raise ApiError(422, "users: list at least one user id")
        users = [check_user(str(u)) for u in body.users]
        k = min(10, n_items) if body.k is None else body.k
        check_k(k)
        exclude = [check_item(str(i), "excluded item") for i in body.exclude]
        check_work(len(users), k, body.explain)
        head = f'{{"k":{k},"results":['.encode()
        parts, size = [head], len(head) + 2
        async for user, recs in recommend(request, users, k, body.explain, body.filter_seen, exclude):
            piece = encode({"user": user, "recommendations": recs})
            size += len(piece) + 1
            if size > limits.max_response_bytes:
                raise too_big(size)      # stop the work here rather than after the last slice
            parts.append(piece if len(parts) == 1 else b"," + piece)
        parts.append(b"]}")
        return json_response(b"".join(parts))

    from ktup.serving.explorer import explorer_router

    app.include_router(explorer_router(recommender, about))   # the page at / and the JSON it reads
    app.state.recommender = recommender
    app.state.max_batch = max_batch
    app.state.limits = limits
    return app
