"""The service bounds what one request or one client can take: the body limit holds for chunked
bodies, work per request is capped with clear 413s, a heavy request neither blocks /health nor
light requests and stops when its client leaves, and ids with '/' reach the GET endpoints."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from _serving_fakes import SlowRecommender  # noqa: E402
from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402


# ------------------------------------------------------------------ 2: chunked bodies
def test_chunked_body_over_the_limit_is_refused_without_reading_it():
    app = create_app(SlowRecommender(), max_batch=5)          # body limit 64 KiB + 5 × 256 B
    sent = {"bytes": 0}

    def body():
        head = b'{"users": ["u0"], "exclude": ['
        sent["bytes"] += len(head)
        yield head
        chunk = b'"100",' * 10_000                             # 60 kB per chunk, up to 30 MB
        for _ in range(500):
            sent["bytes"] += len(chunk)
            yield chunk
        yield b'"100"]}'

    with BackgroundServer(app) as srv:
        r = httpx.post(srv.url + "/recommendations", content=body(), headers={"content-type": "application/json"},
                       timeout=60)
        assert r.status_code == 413, r.text[:200]
        assert "exceeds" in r.json()["error"]
        assert sent["bytes"] < 8 * 2**20, f"the server read {sent['bytes']} bytes before refusing"
        assert httpx.get(srv.url + "/health").status_code == 200


def test_declared_oversized_body_is_refused_at_once():
    with BackgroundServer(create_app(SlowRecommender(), max_batch=5)) as srv:
        r = httpx.post(srv.url + "/recommendations", content=b"x" * 200_000)
        assert r.status_code == 413 and "200000 bytes exceeds" in r.json()["error"]


# ------------------------------------------------------------------ 3: work per request
@pytest.fixture(scope="module")
def limited():
    app = create_app(SlowRecommender(), max_batch=6, max_results=30, max_explanations=8, max_response_bytes=2500)
    with BackgroundServer(app) as srv:
        yield srv.url


@pytest.mark.parametrize("req, fragment", [
    ({"users": ["u0", "u1", "u2", "u3"], "k": 9}, "36 results exceeds the limit of 30"),
    ({"users": ["u0", "u1"], "k": 6, "explain": True}, "12 explanations exceeds the limit of 8"),
    ({"users": ["u0", "u1", "u2"], "k": 9}, "the response would exceed 2500 bytes"),
])
def test_work_over_a_limit_is_a_clear_413(limited, req, fragment):
    r = httpx.post(limited + "/recommendations", json=req)
    assert r.status_code == 413, r.text
    assert fragment in r.json()["error"]


def test_limits_are_reported_and_requests_within_them_work(limited):
    limits = httpx.get(limited + "/health").json()["limits"]
    assert limits["max_results"] == 30 and limits["max_explanations"] == 8 and limits["max_response_bytes"] == 2500
    r = httpx.post(limited + "/recommendations", json={"users": ["u0", "u1"], "k": 4, "explain": True})
    assert r.status_code == 200 and [len(x["recommendations"]) for x in r.json()["results"]] == [4, 4]
    r = httpx.get(limited + "/users/u0/recommendations", params={"k": 9, "explain": "true"})
    assert r.status_code == 413 and "9 explanations" in r.json()["error"]


def _timed_get(url: str) -> tuple[int, float]:
    t = time.perf_counter()
    r = httpx.get(url, timeout=30)
    return r.status_code, time.perf_counter() - t


def test_a_heavy_request_does_not_block_light_ones():
    rec = SlowRecommender(per_explanation=0.08)
    app = create_app(rec, max_explanations=100, slice_explanations=5)   # 6 users × k=5: 6 slices of 0.4 s
    with BackgroundServer(app) as srv:
        heavy = ThreadPoolExecutor(1).submit(httpx.post, srv.url + "/recommendations",
                                             json={"users": [f"u{i}" for i in range(6)], "k": 5, "explain": True},
                                             timeout=30)
        time.sleep(0.3)
        status, light = _timed_get(srv.url + "/users/u1/recommendations?k=1")
        status_h, health = _timed_get(srv.url + "/health")
        assert heavy.result().status_code == 200
    assert status == 200 and status_h == 200
    assert light < 1.0, f"a light request waited {light:.2f} s behind a heavy one (2.4 s in all)"
    assert health < 0.5, f"/health waited {health:.2f} s"


def test_health_answers_while_many_requests_wait_for_the_model():
    rec = SlowRecommender(per_user=0.05)
    app = create_app(rec)
    with BackgroundServer(app) as srv, httpx.Client(limits=httpx.Limits(max_connections=100)) as client:
        pool = ThreadPoolExecutor(48)
        futures = [pool.submit(client.post, srv.url + "/recommendations", json={"users": ["u0"], "k": 2}, timeout=60)
                   for _ in range(48)]     # 48 × 0.05 s of model time, more than the thread pool's 40 threads
        time.sleep(0.4)
        t = time.perf_counter()
        assert httpx.get(srv.url + "/health", timeout=30).status_code == 200
        health = time.perf_counter() - t
        assert all(f.result().status_code == 200 for f in futures)
        pool.shutdown()
    assert health < 0.5, f"/health waited {health:.2f} s behind queued model requests"


def test_work_stops_when_the_client_disconnects():
    rec = SlowRecommender(per_explanation=0.05)
    app = create_app(rec, max_explanations=100, slice_explanations=5)   # 6 slices of 0.25 s
    with BackgroundServer(app) as srv:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(srv.url + "/recommendations", json={"users": [f"u{i}" for i in range(6)], "k": 5, "explain": True},
                       timeout=0.35)
        time.sleep(2.0)
        assert httpx.get(srv.url + "/health").status_code == 200
    assert rec.users_served <= 3, f"{rec.users_served} of 6 users were still worked on after the client left"


# ------------------------------------------------------------------ 10: ids with '/'
def test_ids_with_slashes_reach_the_get_endpoints():
    rec = SlowRecommender(users=["a/b", "u1", "a"], items=["x/y", "items/z", "3"])
    with BackgroundServer(create_app(rec)) as srv:
        r = httpx.get(srv.url + "/users/a%2Fb/recommendations?k=2")
        assert r.status_code == 200, r.text
        assert r.json()["user"] == "a/b" and len(r.json()["recommendations"]) == 2
        r = httpx.get(srv.url + "/users/a%2Fb/items/x%2Fy/explanation")
        assert r.status_code == 200, r.text
        assert (r.json()["user"], r.json()["item"]) == ("a/b", "x/y")
        r = httpx.get(srv.url + "/users/a%2Fb/items/items%2Fz/explanation")
        assert r.status_code == 200 and r.json()["item"] == "items/z"
        r = httpx.get(srv.url + "/users/a/b/recommendations")            # unencoded: still the id "a/b"
        assert r.status_code == 200 and r.json()["user"] == "a/b"
        r = httpx.get(srv.url + "/users/a%2Fc/recommendations")
        assert r.status_code == 404 and r.json()["error"] == "unknown user 'a/c'"
        r = httpx.post(srv.url + "/recommendations", json={"users": ["a/b"], "k": 1})
        assert r.status_code == 200 and r.json()["results"][0]["user"] == "a/b"

