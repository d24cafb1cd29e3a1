"""Slow or stalled clients cannot take the service down: half-sent requests (headers or body) are
cut after the request timeout, connections beyond the limit get 503, /health recovers, and the
log gets one line per kind of event per interval, not one per connection. Loopback only, small
counts."""

from __future__ import annotations

import logging
import socket
import time

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _serving_fakes import SlowRecommender  # noqa: E402
from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.guard import RateLimitedLog, ServerLimits  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def _half_sent(url_port: int, n: int, kind: str) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", url_port), timeout=5)
        if kind == "headers":
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")          # never finishes the headers
        else:
            s.sendall(b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{\"users\":")                 # 9 of 100 body bytes
        socks.append(s)
    return socks


def _closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        while True:
            data = s.recv(4096)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_half_sent_requests_are_cut_and_health_recovers():
    limits = ServerLimits(request_timeout=1.0, timeout_keep_alive=5, limit_concurrency=40, log_interval=60)
    seen = _Records()
    logger = logging.getLogger("uvicorn.error")
    server = BackgroundServer(create_app(SlowRecommender()), limits=limits, log_level="warning")
    logger.addHandler(seen)    # after uvicorn's logging set-up, which replaces the handlers
    try:
        with server as srv:
            socks = _half_sent(srv.port, 30, "headers") + _half_sent(srv.port, 30, "body")
            t0 = time.monotonic()
            assert all(_closed_by_server(s, 6.0) for s in socks), "a half-sent request kept its connection"
            cut_after = time.monotonic() - t0
            for s in socks:
                s.close()
            r = httpx.get(srv.url + "/health", timeout=5)
            assert r.status_code == 200
    finally:
        logger.removeHandler(seen)
    assert cut_after < 4.0
    warnings = [r.getMessage() for r in seen.records if r.levelno >= logging.WARNING]
    # 60 stalled connections, 20 over a 40-connection limit: one line per kind, not one per connection
    assert any("no complete request" in w for w in warnings), warnings
    assert len(warnings) <= 3, warnings


def test_connections_over_the_limit_get_503_then_health_recovers():
    limits = ServerLimits(request_timeout=1.0, limit_concurrency=10, log_interval=60)
    with BackgroundServer(create_app(SlowRecommender()), limits=limits) as srv:
        socks = _half_sent(srv.port, 12, "headers")
        time.sleep(0.2)
        r = httpx.get(srv.url + "/health", timeout=5)
        assert r.status_code == 503            # bounded: refused, not queued without end
        time.sleep(1.5)                        # the stalled ones are cut
        assert httpx.get(srv.url + "/health", timeout=5).status_code == 200
        for s in socks:
            s.close()


def test_rate_limited_log_filter():
    flt = RateLimitedLog(interval=0.2)
    rec = lambda: logging.LogRecord("uvicorn.error", logging.WARNING, __file__, 1, "Invalid HTTP request received.", (), None)  # noqa: E731
    passed = [flt.filter(rec()) for _ in range(100)]
    assert passed.count(True) == 1
    time.sleep(0.25)
    r = rec()
    assert flt.filter(r) and "99 similar messages suppressed" in r.getMessage()
    info = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, "GET /health", (), None)
    assert all(flt.filter(info) for _ in range(5))   # access logs follow --log-level, not the filter


def test_ktup_serve_exposes_the_connection_limits():
    import argparse

    from ktup.cli.serve import register

    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    args = p.parse_args(["serve", "RUN", "--request-timeout", "3", "--timeout-keep-alive", "2",
                         "--limit-concurrency", "50", "--max-header-bytes", "8192", "--log-interval", "10",
                         "--max-results", "500", "--max-explanations", "20", "--max-response-bytes", "100000"])
    assert (args.request_timeout, args.timeout_keep_alive, args.limit_concurrency, args.max_header_bytes,
            args.log_interval) == (3.0, 2, 50, 8192, 10.0)
    assert (args.max_results, args.max_explanations, args.max_response_bytes) == (500, 20, 100000)
    kw = ServerLimits(request_timeout=3, timeout_keep_alive=2, limit_concurrency=50).uvicorn_kwargs()
    assert kw["timeout_keep_alive"] == 2 and kw["limit_concurrency"] == 50 and kw["h11_max_incomplete_event_size"] == 16384
