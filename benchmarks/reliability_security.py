"""Security cases of the reliability battery (issue 17, items 1-4 and 10), each returning a
``Tally`` plus the figures it measured. Run alone (before/after comparisons):

    python benchmarks/reliability_security.py --run RUN_DIR [--json out.json]

or as part of ``python benchmarks/reliability.py``. Every case degrades to what an older ktup
offers (no ``limits=`` argument, no create_app limits), so the same script measures the code
before a fix; a case that cannot run there says so.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))


def _battery():
    """benchmarks/reliability.py as a module (its name is shadowed by the tests/reliability package)."""
    import importlib.util

    mod = sys.modules.get("ktup_reliability_battery")
    if mod is None:
        spec = importlib.util.spec_from_file_location("ktup_reliability_battery", ROOT / "benchmarks" / "reliability.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules["ktup_reliability_battery"] = mod
        spec.loader.exec_module(mod)
    return mod


def _tally(name: str):
    return _battery().Tally(name)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _server(app: Any, **limits: Any):
    """BackgroundServer with ServerLimits when this ktup has them (else its defaults)."""
    from ktup.serving.server import BackgroundServer

    try:
        from ktup.serving.guard import ServerLimits

        return BackgroundServer(app, limits=ServerLimits(**limits))
    except ImportError:
        return BackgroundServer(app)


def _app(rec: Any, **limits: Any):
    from ktup.serving.app import create_app

    try:
        return create_app(rec, **limits)
    except TypeError:  # an older ktup without per-request limits
        return create_app(rec)


# ------------------------------------------------------------------ 1: loading never runs code
def unsafe_files(tmp: Path, run: Path) -> tuple[Any, dict]:
    from ktup.runs import load_run
    from reliability.unsafe_files import entry_points, plant_malicious_checkpoints

    t = _tally("hostile checkpoints (17.1)")
    user = load_run(run).dataset.users.tokens[0]
    figures: dict[str, Any] = {}
    for magic in (b"KTUPCKP2", b"KTUPCKP1"):
        marker = tmp / f"PWNED-{magic.decode()}"
        bad = plant_malicious_checkpoints(run, tmp / f"bad-{magic.decode()}", marker, magic=magic)
        ran = 0
        for name, call in entry_points(bad, user, tmp / f"out-{magic.decode()}").items():
            (tmp / f"out-{magic.decode()}").mkdir(exist_ok=True)
            rc, err = call()
            code_ran = marker.exists()
            ran += code_ran
            marker.unlink(missing_ok=True)
            lines = [x for x in err.splitlines() if x.strip()]
            ok = not code_ran and rc == 2 and len(lines) == 1 and "refused to load" in err
            t.add("refused, no code ran" if ok else ("CODE RAN" if code_ran else "WRONG"), ok,
                  f"{magic.decode()} {name}: rc={rc} {err.strip()[-150:]}", lost=code_ran)
        figures[f"{magic.decode()}_code_ran"] = ran
    return t, figures


# ------------------------------------------------------------------ 2: chunked body
def chunked_body(rec: Any, mb: int = 50) -> tuple[Any, dict]:
    import httpx

    t = _tally("chunked oversized body (17.2)")
    sent = {"bytes": 0}

    def body():
        head = b'{"users": [' + json.dumps(rec.dataset.users.tokens[0]).encode() + b'], "exclude": ['
        sent["bytes"] += len(head)
        yield head
        one = json.dumps(rec.dataset.items.tokens[0]).encode() + b","
        chunk = one * (2**20 // len(one))
        for _ in range(mb):
            sent["bytes"] += len(chunk)
            yield chunk
        yield one[:-1] + b"]}"

    rss0 = _rss_mb()
    with _server(_app(rec)) as srv:
        t0 = time.perf_counter()
        try:
            r = httpx.post(srv.url + "/recommendations", content=body(), timeout=300,
                           headers={"content-type": "application/json"})
            status = r.status_code
        except httpx.HTTPError as e:
            status = type(e).__name__
        secs = time.perf_counter() - t0
        alive = httpx.get(srv.url + "/health", timeout=10).status_code == 200
    figures = {"status": status, "bytes_sent_mb": round(sent["bytes"] / 2**20, 2), "seconds": round(secs, 2),
               "rss_growth_mb": round(_rss_mb() - rss0, 1)}
    ok = status == 413 and sent["bytes"] < 8 * 2**20 and alive
    t.add(f"answered {status}", ok, f"{mb} MB chunked: {figures}")
    return t, figures


# ------------------------------------------------------------------ 3: heavy requests
_LIMITS = {"max_results": 100_000, "max_explanations": 100}   # the defaults (AppLimits)
class _Counting:
    """Delegates to a recommender, counting users served (to see work stop on disconnect)."""

    def __init__(self, rec: Any):
        self._rec, self.users_served = rec, 0
        self.model, self.dataset = rec.model, rec.dataset
        self.info = getattr(getattr(rec, "run", None), "info", None) or {}

    def recommend(self, users, **kw):
        out = []
        for u in users:                       # per user, so a stop between slices is visible
            out += self._rec.recommend([u], **kw)
            self.users_served += 1
        return out

    def explain(self, user, item):
        return self._rec.explain(user, item)


def heavy_requests(rec: Any) -> tuple[Any, dict]:
    import httpx

    t = _tally("heavy requests (17.3)")
    users, n_items = rec.dataset.users.tokens, len(rec.dataset.items)
    figures: dict[str, Any] = {}
    counting = _Counting(rec)
    with _server(_app(counting)) as srv:
        cases = {"6 users, k=all, explain": {"users": users[:6], "k": n_items, "explain": True},
                 "1000 users, k=all": {"users": users[:1000], "k": n_items}}
        for name, req in cases.items():
            t0 = time.perf_counter()
            try:
                r = httpx.post(srv.url + "/recommendations", json=req, timeout=300)
                status, size = r.status_code, len(r.content)
            except httpx.HTTPError as e:
                status, size = type(e).__name__, 0
            secs = time.perf_counter() - t0
            figures[name] = {"status": status, "seconds": round(secs, 2), "response_mb": round(size / 2**20, 2)}
            n = len(req["users"]) * req["k"]
            expect = 413 if n > (_LIMITS["max_explanations"] if req.get("explain") else _LIMITS["max_results"]) else 200
            ok = status == expect and secs < (2 if expect == 413 else 60)
            t.add(f"{status} in {secs:.1f} s", ok, f"{name}: {figures[name]}")
        # three allowed but slow requests at once: /health and a light request meanwhile
        heavy = {"users": users[:10], "k": 10, "explain": True}
        pool = ThreadPoolExecutor(3)
        t_heavy = time.perf_counter()
        futs = [pool.submit(httpx.post, srv.url + "/recommendations", json=heavy, timeout=300) for _ in range(3)]
        time.sleep(0.3)
        t0 = time.perf_counter()
        h = httpx.get(srv.url + "/health", timeout=60)
        health_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        light = httpx.get(srv.url + f"/users/{users[1]}/recommendations", params={"k": 5}, timeout=60)
        light_s = time.perf_counter() - t0
        [f.result() for f in futs]
        heavy_s = time.perf_counter() - t_heavy
        pool.shutdown()
        key = "during 3 × (10 users × k=10 explained)"
        figures[key] = {"heavy_seconds": round(heavy_s, 2), "health_seconds": round(health_s, 3),
                        "light_seconds": round(light_s, 3)}
        ok = h.status_code == 200 and light.status_code == 200 and health_s < 0.5 and light_s < heavy_s / 3
        t.add("health + light served meanwhile" if ok else "WAITED", ok, f"interleave: {figures[key]}")
        # a client that hangs up: the work stops
        counting.users_served = 0
        try:
            httpx.post(srv.url + "/recommendations", json={"users": users[:20], "k": 5, "explain": True}, timeout=0.3)
        except httpx.TimeoutException:
            pass
        time.sleep(3.0)
        figures["disconnect: users served of 20"] = counting.users_served
        ok = counting.users_served < 20
        t.add(f"stopped after {counting.users_served}/20 users", ok, f"disconnect: {counting.users_served}/20 served")
    return t, figures


# ------------------------------------------------------------------ 4: slow clients
def slow_clients(rec: Any, n: int = 200) -> tuple[Any, dict]:
    import httpx

    t = _tally("half-sent requests (17.4)")
    records: list[logging.LogRecord] = []

    class _H(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = _H(logging.WARNING)
    figures: dict[str, Any] = {}
    server = _server(_app(rec), request_timeout=2.0, limit_concurrency=max(10, n // 2), log_interval=60)
    for name in ("uvicorn.error", "asyncio"):   # after the server's config has set up logging
        logging.getLogger(name).addHandler(handler)
    try:
        with server as srv:
            socks = []
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " if i % 2 else
                          b"POST /recommendations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{")
                socks.append(s)
            t0 = time.perf_counter()
            cut = 0
            for s in socks:     # closed by the server (after a 503 or without an answer) within 8 s
                try:
                    while True:
                        s.settimeout(max(0.05, 8.0 - (time.perf_counter() - t0)))
                        if s.recv(4096) == b"":
                            cut += 1
                            break
                except ConnectionResetError:
                    cut += 1
                except socket.timeout:
                    pass
            figures["cut_of"] = f"{cut}/{n}"
            figures["seconds_to_cut"] = round(time.perf_counter() - t0, 2)
            try:
                figures["health_after"] = httpx.get(srv.url + "/health", timeout=5).status_code
            except httpx.HTTPError as e:
                figures["health_after"] = type(e).__name__
            for s in socks:
                s.close()
    finally:
        for name in ("uvicorn.error", "asyncio"):
            logging.getLogger(name).removeHandler(handler)
    figures["log_lines"] = len(records)
    ok = cut == n and figures["health_after"] == 200 and len(records) <= 5
    t.add(f"cut {cut}/{n}, {len(records)} log lines", ok, f"{n} half-sent: {figures}")
    return t, figures


# ------------------------------------------------------------------ 10: ids with '/'
def slash_ids() -> tuple[Any, dict]:
    import httpx
    from _serving_fakes import SlowRecommender

    t = _tally("ids with '/' on GET (17.10)")
    rec = SlowRecommender(users=["a/b", "u1"], items=["x/y", "2"])
    figures = {}
    with _server(_app(rec)) as srv:
        for path in ("/users/a%2Fb/recommendations?k=1", "/users/a/b/recommendations?k=1",
                     "/users/a%2Fb/items/x%2Fy/explanation"):
            st = httpx.get(srv.url + path, timeout=10).status_code
            figures[path] = st
            t.add(f"{st}", st == 200, f"{path}: {st}")
    return t, figures


def run_all(tmp: Path, run: Path, quick: bool = False) -> tuple[list, dict]:
    """Every security case; ``quick`` skips the slow ones (heavy explanations)."""
    import torch

    from ktup.explain import Recommender

    torch.set_num_threads(1)
    tallies, figures = [], {}
    rec = Recommender.load(run)
    cases = [("unsafe_files", lambda: unsafe_files(tmp, run)), ("chunked_body", lambda: chunked_body(rec)),
             ("heavy_requests", lambda: heavy_requests(rec)), ("slow_clients", lambda: slow_clients(rec)),
             ("slash_ids", slash_ids)]
    for name, fn in cases:
        if quick and name == "heavy_requests":
            continue
        s = time.perf_counter()
        try:
            tally, figs = fn()
        except Exception as e:  # noqa: BLE001 - an older ktup may lack what a case needs
            tally, figs = _tally(name), {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            tally.add("COULD NOT RUN", False, figs["error"])
        tallies.append(tally)
        figures[name] = figs
        print(f"[{name}: {time.perf_counter() - s:.1f} s] {json.dumps(figs, default=str)}", file=sys.stderr, flush=True)
    return tallies, figures


def main(argv=None) -> int:
    format_table = _battery().format_table
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run directory (ml-100k for realistic figures)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="ktup-security-") as d:
        tallies, figures = run_all(Path(d), a.run, quick=a.quick)
    rows = [t.row() for t in tallies]
    print(format_table(rows))
    bad = [f"{r['category']}: {f}" for r in rows for f in r["failures"]]
    for b in bad[:20]:
        print("  " + b)
    if a.json:
        a.json.write_text(json.dumps({"summary": rows, "figures": figures}, indent=2, default=str) + "\n")
    return 0 if not bad else 1


if __name__ == "__main__":
    threading.current_thread().name = "main"
    raise SystemExit(main())
