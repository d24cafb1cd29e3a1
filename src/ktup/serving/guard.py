"""Connection-level protection for the HTTP service: request and keep-alive timeouts, a
connection limit, a streaming body limit, and logging that does not grow per connection.

- :class:`ServerLimits` — the uvicorn settings ``ktup serve`` and :class:`BackgroundServer`
  use (``timeout_keep_alive``, ``limit_concurrency``, ``h11_max_incomplete_event_size``) plus
  ``request_timeout``, which uvicorn lacks: a connection that has not delivered a complete
  request (headers *and* body) within that many seconds of opening, or of the first byte of a
  later request, is closed. uvicorn's own keep-alive timer stops at the first byte, so a client
  sending half a request would otherwise hold its socket forever.
- :class:`BodyLimit` — ASGI middleware counting body bytes as they arrive, chunked or not: 413
  as soon as the limit is crossed, the rest is never read (the connection is then closed).
- :class:`RateLimitedLog` — a logging filter passing each kind of message once per interval
  and reporting how many were suppressed, installed on uvicorn's, asyncio's and our loggers.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Optional

from ktup.errors import KtupError

log = logging.getLogger("ktup.serving")

_ENV_REQUEST_TIMEOUT = "KTUP_SERVE_REQUEST_TIMEOUT"


@dataclass(frozen=True)
class ServerLimits:
    """Per-connection limits of the HTTP server (seconds, counts, bytes)."""

    request_timeout: float = 10.0          # to receive one complete request (headers + body)
    timeout_keep_alive: int = 5            # idle time between requests on a kept-alive connection
    limit_concurrency: int = 256           # open connections / running requests beyond → 503
    max_header_bytes: int = 16 * 1024      # h11's bound on an incomplete request line + headers
    log_interval: float = 60.0             # each kind of server warning is logged once per interval

    def check(self) -> "ServerLimits":
        for name, value in asdict(self).items():
            if not value > 0:
                raise KtupError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        return self

    def uvicorn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config``; then :meth:`apply` to the config built."""
        return {"timeout_keep_alive": self.timeout_keep_alive, "limit_concurrency": self.limit_concurrency,
                "h11_max_incomplete_event_size": self.max_header_bytes, "http": guarded_protocol()}

    def apply(self, config: Any) -> Any:
        """Give a ``uvicorn.Config`` the request timeout (worker processes also read it from the
        environment) and rate-limit the server's warnings."""
        config.ktup_request_timeout = self.request_timeout
        os.environ[_ENV_REQUEST_TIMEOUT] = str(self.request_timeout)
        self.apply_logging()
        return config

    def apply_logging(self) -> None:
        install_log_limits(self.log_interval)


def guarded_protocol() -> type:
    """:class:`ktup.serving.h11guard.GuardedH11Protocol` (imports uvicorn, hence not at import time)."""
    from ktup.serving.h11guard import GuardedH11Protocol

    return GuardedH11Protocol


# ------------------------------------------------------------------ body limit
class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body larger than ``max_body`` bytes gets 413 — at once when
    Content-Length says so, else as soon as the streamed (e.g. chunked) bytes cross the limit;
    the remainder is never read."""

    def __init__(self, app: Any, max_body: int):
        self.app = app
        self.max_body = int(max_body)

    def _too_large(self, size: str) -> tuple[dict, dict]:
        body = json.dumps({"error": f"request body of {size} bytes exceeds {self.max_body} bytes"}).encode()
        return ({"type": "http.response.start", "status": 413,
                 "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                             (b"connection", b"close")]},
                {"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                for message in self._too_large(value.decode()):
                    await send(message)
                return
        seen = 0
        state = {"started": False, "refused": False}

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    if not state["started"]:
                        state["refused"] = True
                        for m in self._too_large(f"more than {self.max_body}"):
                            await send(m)
                    raise _BodyTooLarge()
            return message

        async def guarded_send(message: dict) -> None:
            if state["refused"]:
                return  # the 413 is already out; drop whatever the app answers to the aborted read
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not state["refused"]:
                raise


# ------------------------------------------------------------------ logging
class RateLimitedLog(logging.Filter):
    """Pass each kind of record (logger + message template) at most once per ``interval``
    seconds; the next one that passes says how many were suppressed meanwhile."""

    def __init__(self, interval: float = 60.0):
        super().__init__()
        self.interval = float(interval)
        self._last: dict[tuple[str, Any], float] = {}
        self._dropped: dict[tuple[str, Any], int] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True          # access logs and info lines are the operator's choice (--log-level)
        key = (record.name, record.msg if isinstance(record.msg, str) else type(record.msg).__name__)
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            self._last[key] = now
            dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} similar messages suppressed in the last {self.interval:g} s)"
            record.args = ()
        return True


GUARDED_LOGGERS = ("uvicorn.error", "uvicorn", "asyncio", "ktup.serving")


def install_log_limits(interval: float = 60.0) -> RateLimitedLog:
    """Attach one :class:`RateLimitedLog` to the server's loggers (replacing an earlier one)."""
    flt = RateLimitedLog(interval)
    for name in GUARDED_LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, RateLimitedLog)]:
            logger.removeFilter(old)
        logger.addFilter(flt)
    return flt
