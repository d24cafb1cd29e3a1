"""The HTTP service on real tiny runs (ktup, tup, bpr) and on an export folder: what the server
returns equals what ktup.explain.Recommender computes, and ``ktup serve`` runs as a command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ktup.data.dataset import IdMap, Interactions, KGDataset  # noqa: E402
from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.export import export_run  # noqa: E402
from ktup.serving.loading import load_recommender  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402

MODELS = ("ktup", "tup", "bpr")


def make_dataset(seed: int = 0) -> KGDataset:
    """12 users, 15 items (13 linked to entities), 3 relations, a random KG and interactions."""
    rng = np.random.default_rng(seed)
    nu, ni, ne, nr = 12, 15, 20, 3
    ie = np.arange(ni, dtype=np.int64)
    ie[-2:] = -1
    pairs = np.array([(u, i) for u in range(nu) for i in rng.choice(ni, 6, replace=False)], dtype=np.int64)
    rng.shuffle(pairs)
    a, b = int(len(pairs) * 0.7), int(len(pairs) * 0.85)

    def part(p):
        return Interactions(p[:, 0].copy(), p[:, 1].copy(), nu, ni)

    kg = np.stack([rng.integers(0, 13, 60), rng.integers(0, nr, 60), rng.integers(13, ne, 60)], 1).astype(np.int64)
    kg = np.unique(kg, axis=0)
    return KGDataset("tiny", IdMap([f"u{i}" for i in range(nu)], "user"), IdMap([str(100 + i) for i in range(ni)], "item"),
                     IdMap([f"m.{i}" for i in range(ne)], "entity"), IdMap(["film.director", "film.genre", "film.actor"], "relation"),
                     ie, part(pairs[:a]), part(pairs[a:b]), part(pairs[b:]), kg[:-6], kg[-6:-3], kg[-3:],
                     item_info={"title": [f"Film {i}" for i in range(ni)]})


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory):
    """{model: run_dir} of 1-epoch runs on the tiny dataset."""
    from test_train_support import train_one_epoch_runs

    return train_one_epoch_runs(tmp_path_factory.mktemp("serving-runs"), MODELS, make_dataset, embedding_size=8)


@pytest.fixture(scope="module", params=MODELS)
def served(request, tiny_runs):
    rec = load_recommender(tiny_runs[request.param])
    with BackgroundServer(create_app(rec, max_batch=20)) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        yield request.param, rec, client


def test_health_names_the_run(served):
    name, rec, client = served
    body = client.get("/health").json()
    assert body["model"] == name and body["dataset"] == "tiny"
    assert body["run_id"] == rec.run.info["run_id"]
    assert body["explains"] is (name != "bpr")


def test_recommendations_equal_the_recommender(served):
    name, rec, client = served
    for user in ("u0", "u5"):
        got = client.get(f"/users/{user}/recommendations", params={"k": 5}).json()["recommendations"]
        want = rec.recommend(user, k=5)
        assert [r["item"] for r in got] == [r["item"] for r in want]
        assert [r["title"] for r in got] == [r["title"] for r in want]
        np.testing.assert_allclose([r["score"] for r in got], [r["score"] for r in want], rtol=1e-6)


def test_exclude_and_batch_on_real_model(served):
    name, rec, client = served
    top = [r["item"] for r in rec.recommend("u1", k=3)]
    got = client.get("/users/u1/recommendations", params=[("k", "3"), ("exclude", top[0])]).json()["recommendations"]
    assert top[0] not in [r["item"] for r in got] and got[0]["item"] == top[1]
    batch = client.post("/recommendations", json={"users": ["u1", "u2", "u3"], "k": 4}).json()["results"]
    assert [[r["item"] for r in b["recommendations"]] for b in batch] == [[r["item"] for r in x] for x in rec.recommend(["u1", "u2", "u3"], k=4)]


def test_explanations_or_a_clear_refusal(served):
    name, rec, client = served
    r = client.get("/users/u0/items/101/explanation")
    rr = client.get("/users/u0/recommendations", params={"k": 2, "explain": "true"})
    if name == "bpr":
        assert r.status_code == 400 and "bpr" in r.json()["error"]
        assert rr.status_code == 400
        return
    assert r.status_code == 200
    want = rec.explain("u0", "101")
    assert set(r.json()["explanation"]) == set(want)
    assert rr.status_code == 200 and all("explanation" in x for x in rr.json()["recommendations"])


def test_errors_on_a_real_model(served):
    name, rec, client = served
    assert client.get("/users/ghost/recommendations").status_code == 404
    assert client.get("/users/u0/items/nope/explanation").status_code == 404
    assert client.get("/users/u0/recommendations", params={"k": 16}).status_code == 422   # 15 items
    assert client.post("/recommendations", json={"users": ["u0"] * 21}).status_code == 413
    assert client.put("/recommendations", json={}).status_code == 405


def test_concurrent_requests_equal_sequential_on_real_model(tiny_runs):
    rec = load_recommender(tiny_runs["ktup"])
    reqs = [(f"u{i % 12}", 1 + i % 7, i % 4 == 0) for i in range(50)]

    def get(client, q):
        return client.get(f"/users/{q[0]}/recommendations", params={"k": q[1], "explain": str(q[2]).lower()})

    with BackgroundServer(create_app(rec)) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        seq = [get(client, q).json() for q in reqs]
        with ThreadPoolExecutor(8) as pool:
            resp = list(pool.map(lambda q: get(client, q), reqs))
    assert all(r.status_code == 200 for r in resp)
    assert [r.json() for r in resp] == seq


def test_export_folder_serves_the_same_scores(tiny_runs, tmp_path):
    run_rec = load_recommender(tiny_runs["ktup"])
    export_rec = load_recommender(export_run(tiny_runs["ktup"], tmp_path / "exp"))
    with BackgroundServer(create_app(export_rec)) as srv:
        body = httpx.get(srv.url + "/users/u3/recommendations", params={"k": 6, "explain": "true"}, timeout=20).json()
        health = httpx.get(srv.url + "/health", timeout=20).json()
    want = run_rec.recommend("u3", k=6, explain=True)
    assert [r["item"] for r in body["recommendations"]] == [r["item"] for r in want]
    np.testing.assert_allclose([r["score"] for r in body["recommendations"]], [r["score"] for r in want], rtol=1e-6)
    assert health["model"] == "ktup" and health["run_id"] == run_rec.run.info["run_id"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ktup_serve_command(tiny_runs):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ktup", "serve", str(tiny_runs["tup"]), "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("ktup serve did not start: " + proc.communicate(timeout=5)[0].decode(errors="replace"))
                time.sleep(0.2)
        assert r.status_code == 200 and r.json()["model"] == "tup"
        assert httpx.get(f"http://127.0.0.1:{port}/users/u2/recommendations?k=3", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ktup_serve_bad_path_is_one_line(tmp_path, capsys):
    from ktup.cli import main

    assert main(["serve", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ktup: error:") and "missing" in err and len(err.strip().splitlines()) == 1
