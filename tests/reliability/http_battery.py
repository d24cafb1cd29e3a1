"""Concurrent load plus malformed requests against a running ktup HTTP service (loopback only).

:func:`battery` sends a bounded mix of good and bad requests from several threads and returns
counts per (kind, status class); any 5xx, a good request not answered 200, a bad one not
answered 4xx, or a dropped connection is listed in ``problems``. Raw-socket cases cover what an
HTTP client library refuses to send (non-UTF-8 bytes in the path, a broken request line, a bad
Content-Length).
"""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional
from urllib.parse import urlparse


def _requests(users: list[str], items: list[str], max_batch: int) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(name, expected "good"|"bad", method, httpx kwargs + "path")`` cases."""
    u, u2, it = users[0], users[-1], items[0]
    deep = "[" * 50_000 + "]" * 50_000
    big_users = json.dumps({"users": [u] * (max_batch + 1)})
    return [
        ("health", "good", "GET", {"path": "/health"}),
        ("recommend", "good", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": 5}}),
        ("recommend-explain", "good", "GET", {"path": f"/users/{u2}/recommendations", "params": {"k": 3, "explain": "true"}}),
        ("explain", "good", "GET", {"path": f"/users/{u}/items/{it}/explanation"}),
        ("batch", "good", "POST", {"path": "/recommendations", "json": {"users": [u, u2], "k": 4}}),
        ("unknown-user", "bad", "GET", {"path": "/users/nobody-here/recommendations"}),
        ("unknown-item", "bad", "GET", {"path": f"/users/{u}/items/no-such-item/explanation"}),
        ("unknown-exclude", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"exclude": "zzz"}}),
        ("k-zero", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": 0}}),
        ("k-negative", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": -3}}),
        ("k-huge", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": 10 ** 12}}),
        ("k-huger-than-int64", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": "9" * 40}}),
        ("k-text", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"k": "ten"}}),
        ("explain-not-bool", "bad", "GET", {"path": f"/users/{u}/recommendations", "params": {"explain": "maybe"}}),
        ("batch-users-not-list", "bad", "POST", {"path": "/recommendations", "json": {"users": u}}),
        ("batch-users-float", "bad", "POST", {"path": "/recommendations", "json": {"users": [1.5]}}),
        ("batch-k-string", "bad", "POST", {"path": "/recommendations", "json": {"users": [u], "k": "5"}}),
        ("batch-k-huge", "bad", "POST", {"path": "/recommendations", "json": {"users": [u], "k": 10 ** 30}}),
        ("batch-empty-users", "bad", "POST", {"path": "/recommendations", "json": {"users": []}}),
        ("batch-extra-key", "bad", "POST", {"path": "/recommendations", "json": {"users": [u], "kk": 1}}),
        ("batch-unknown-user", "bad", "POST", {"path": "/recommendations", "json": {"users": [u, "ghost"]}}),
        ("batch-too-many", "bad", "POST", {"path": "/recommendations", "content": big_users,
                                           "headers": {"content-type": "application/json"}}),
        ("garbage-json", "bad", "POST", {"path": "/recommendations", "content": b"{users: [1,",
                                         "headers": {"content-type": "application/json"}}),
        ("non-utf8-json", "bad", "POST", {"path": "/recommendations", "content": b'{"users": ["\xff\xfe"]}',
                                          "headers": {"content-type": "application/json"}}),
        ("json-array", "bad", "POST", {"path": "/recommendations", "json": [1, 2, 3]}),
        ("deeply-nested-json", "bad", "POST", {"path": "/recommendations", "content": deep,
                                               "headers": {"content-type": "application/json"}}),
        ("empty-body", "bad", "POST", {"path": "/recommendations", "content": b"",
                                       "headers": {"content-type": "application/json"}}),
        ("oversized-body", "bad", "POST", {"path": "/recommendations", "content": b" " * (4 << 20),
                                           "headers": {"content-type": "application/json"}}),
        ("wrong-method-delete", "bad", "DELETE", {"path": "/health"}),
        ("wrong-method-get-batch", "bad", "GET", {"path": "/recommendations"}),
        ("wrong-method-put", "bad", "PUT", {"path": f"/users/{u}/recommendations"}),
        ("no-such-endpoint", "bad", "GET", {"path": "/admin"}),
        ("percent-non-utf8-path", "bad", "GET", {"path": "/users/%FF%FE/recommendations"}),
    ]


RAW = [
    ("raw-non-utf8-path", b"GET /users/\xff\xfe/recommendations HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    ("raw-garbage-request-line", b"HELLO THERE\r\n\r\n"),
    ("raw-bad-content-length", b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
                               b"Connection: close\r\n\r\n{}"),
    ("raw-huge-header", b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\nConnection: close\r\n\r\n"),
    ("raw-http-0.9", b"GET /health\r\n\r\n"),
]


def raw_request(url: str, data: bytes, timeout: float = 10.0) -> Optional[int]:
    """Send raw bytes; the status code of the answer, or None when the server just closed."""
    p = urlparse(url)
    with socket.create_connection((p.hostname, p.port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        buf = b""
        try:
            while b"\r\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        except OSError:
            pass
    line = buf.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


def battery(url: str, users: list[str], items: list[str], max_batch: int = 1000, rounds: int = 4,
            threads: int = 8, deadline_s: float = 120.0) -> dict[str, Any]:
    """Send every case ``rounds`` times from ``threads`` threads (good ones 3x as often)."""
    import httpx

    cases = _requests(users, items, max_batch)
    work: list[tuple[str, str, str, dict]] = []
    for _ in range(rounds):
        for c in cases:
            work += [c] * (3 if c[1] == "good" else 1)
    counts: Counter = Counter()
    statuses: dict[str, Counter] = {}
    problems: list[str] = []
    t_end = time.monotonic() + deadline_s
    local = {}

    def client() -> "httpx.Client":
        import threading

        tid = threading.get_ident()
        if tid not in local:
            local[tid] = httpx.Client(base_url=url, timeout=30.0)
        return local[tid]

    def one(case) -> None:
        name, kind, method, kw = case
        if time.monotonic() > t_end:
            counts["skipped (deadline)"] += 1
            return
        kw = dict(kw)
        path = kw.pop("path")
        try:
            r = client().request(method, path, **kw)
            code = r.status_code
            body_ok = True
            try:
                body = r.json()
                if code >= 400:
                    body_ok = isinstance(body, dict) and isinstance(body.get("error"), str) and "\n" not in body["error"]
            except ValueError:
                body_ok = False
        except httpx.HTTPError as e:
            code, body_ok = None, False
            problems.append(f"{name}: connection error {type(e).__name__}")
        statuses.setdefault(name, Counter())[code] += 1
        cls = "none" if code is None else f"{code // 100}xx"
        counts[f"{kind} -> {cls}"] += 1
        if code is not None and code >= 500:
            problems.append(f"{name}: {code}")
        elif kind == "good" and code != 200:
            problems.append(f"{name}: expected 200, got {code}")
        elif kind == "bad" and code is not None and not 400 <= code < 500:
            problems.append(f"{name}: expected 4xx, got {code}")
        if code is not None and not body_ok:
            problems.append(f"{name}: response body is not JSON with a one-line error")

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(one, work))
        raw_cases = [c for c in RAW for _ in range(2)]
        raw_codes = list(ex.map(lambda c: (c[0], raw_request(url, c[1])), raw_cases))
    for c in local.values():
        c.close()
    for name, code in raw_codes:
        statuses.setdefault(name, Counter())[code] += 1
        cls = "closed" if code is None else f"{code // 100}xx"
        counts[f"raw -> {cls}"] += 1
        if code is not None and not 400 <= code < 500:
            problems.append(f"{name}: expected 4xx or a closed connection, got {code}")
    import httpx as _h

    alive = _h.get(url + "/health", timeout=10).status_code == 200
    if not alive:
        problems.append("server not healthy after the battery")
    return {"requests": len(work) + len(raw_codes), "seconds": round(time.perf_counter() - t0, 2),
            "counts": dict(counts), "statuses": {k: dict(v) for k, v in statuses.items()},
            "problems": sorted(set(problems)), "alive": alive}


def serve_and_battery(recommender: Any, **kw) -> dict[str, Any]:
    """Start a real uvicorn on a free 127.0.0.1 port, run the battery, stop it."""
    from ktup.serving.app import create_app
    from ktup.serving.server import BackgroundServer

    app = create_app(recommender, max_batch=kw.get("max_batch", 1000))
    with BackgroundServer(app) as srv:
        users = list(recommender.dataset.users.tokens[:5])
        items = list(recommender.dataset.items.tokens[:5])
        return battery(srv.url, users, items, **kw)
