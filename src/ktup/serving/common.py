"""Helpers shared by the HTTP service's parts: plain-data conversion, run description, error
formatting, and the per-request work limits (:class:`AppLimits`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ktup.errors import KtupError

DEFAULT_MAX_BATCH = 1000


@dataclass(frozen=True)
class AppLimits:
    """What one request may ask of the model; beyond any of them the answer is 413, before any
    model work (the response size is checked as the response is built, and work stops there).

    ``max_batch`` users per ``POST /recommendations``; ``max_results`` = users × k per request;
    ``max_explanations`` = users × k per request with ``explain=true``; ``max_response_bytes``
    of JSON per response. The work is done in slices (``slice_results`` results or
    ``slice_explanations`` explanations per model call) so other requests are served in
    between and a request whose client has gone away stops at the next slice.
    """

    max_batch: int = DEFAULT_MAX_BATCH
    max_results: int = 100_000
    max_explanations: int = 100
    max_response_bytes: int = 16 * 2**20
    slice_results: int = 5_000
    slice_explanations: int = 10

    def check(self) -> "AppLimits":
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value <= 0:
                raise KtupError(f"{name} must be a positive integer, got {value!r}")
        return self


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
        return plain(obj.item())
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


class ApiError(Exception):
    """Raised inside handlers; turned into ``{"error": message}`` with the status code."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def format_validation(errors: list[dict]) -> tuple[int, str]:
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


