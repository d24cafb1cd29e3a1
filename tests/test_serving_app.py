"""The HTTP service against a fake recommender of the real shape, on a real uvicorn server on
a free loopback port: every endpoint, every error case, concurrency."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ktup.data.dataset import IdMap  # noqa: E402
from ktup.errors import KtupError  # noqa: E402
from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402

N_USERS, N_ITEMS = 6, 9
RELATIONS = ["director", "genre", "actor"]


class FakeModel:
    def __init__(self, name: str, explains: bool):
        self.name = name
        self.explains = explains


class FakeDataset:
    name = "fake"

    def __init__(self):
        self.users = IdMap([f"u{i}" for i in range(N_USERS)], "user")
        self.items = IdMap([str(100 + i) for i in range(N_ITEMS)], "item")


class FakeRecommender:
    """Same shape as ktup.explain.Recommender; scores from a fixed random matrix."""

    def __init__(self, name: str = "ktup", explains: bool = True):
        self.model = FakeModel(name, explains)
        self.dataset = FakeDataset()
        self.info = {"run_id": "run-123", "model": name, "dataset": "fake"}
        rng = np.random.default_rng(0)
        self.scores = rng.normal(size=(N_USERS, N_ITEMS)).astype(np.float32)
        self.seen = {0: {1, 2}, 3: {0}}

    def recommend(self, users, k=10, filter_seen=True, exclude=None, explain=False):
        out = []
        for u in users:
            ui = self.dataset.users.index(u)
            s = self.scores[ui].copy()
            if filter_seen:
                s[list(self.seen.get(ui, ()))] = -np.inf
            for it in exclude or ():
                s[self.dataset.items.index(it)] = -np.inf
            order = [int(i) for i in np.argsort(-s, kind="stable") if np.isfinite(s[i])][:k]
            recs = []
            for rank, i in enumerate(order, 1):
                rec = {"item": self.dataset.items.token(i), "title": f"Film {i}", "score": s[i], "rank": rank}
                if explain:
                    rec["explanation"] = self.explain(u, self.dataset.items.token(i))
                recs.append(rec)
            out.append(recs)
        return out

    def explain(self, user, item):
        if not self.model.explains:
            raise KtupError(f"model {self.model.name} has no explanations")
        ui, ii = self.dataset.users.index(user), self.dataset.items.index(item)
        weights = np.abs(np.array([ui + 1, ii + 1, 1.0]))
        weights = weights / weights.sum()
        return {"relation": RELATIONS[int(np.argmax(weights))], "weights": weights}  # numpy inside on purpose


@pytest.fixture(scope="module")
def server():
    with BackgroundServer(create_app(FakeRecommender(), max_batch=5)) as srv:
        yield srv


@pytest.fixture(scope="module")
def bpr_server():
    with BackgroundServer(create_app(FakeRecommender("bpr", explains=False))) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_server_binds_loopback_only(server):
    assert server.host == "127.0.0.1"


def test_health_reports_model_dataset_run_and_uptime(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["model"] == "ktup" and body["dataset"] == "fake"
    assert body["run_id"] == "run-123" and body["uptime_seconds"] >= 0
    assert body["items"] == N_ITEMS and body["explains"] is True


def test_openapi_schema_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert {"/health", "/users/{user_id}/recommendations", "/users/{user_id}/items/{item_id}/explanation", "/recommendations"} <= set(schema["paths"])
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_user_recommendations_match_the_recommender(client):
    r = client.get("/users/u1/recommendations", params={"k": 4})
    assert r.status_code == 200
    body = r.json()
    expected = FakeRecommender().recommend(["u1"], k=4)[0]
    assert body["user"] == "u1" and body["k"] == 4
    assert [x["item"] for x in body["recommendations"]] == [x["item"] for x in expected]
    assert [x["rank"] for x in body["recommendations"]] == [1, 2, 3, 4]
    assert body["recommendations"][0]["title"].startswith("Film")
    np.testing.assert_allclose([x["score"] for x in body["recommendations"]], [float(x["score"]) for x in expected], rtol=1e-6)
    assert "explanation" not in body["recommendations"][0]


def test_seen_items_are_filtered_unless_asked_not_to(client):
    seen = {"101", "102"}
    items = [x["item"] for x in client.get("/users/u0/recommendations", params={"k": N_ITEMS}).json()["recommendations"]]
    assert not seen & set(items) and len(items) == N_ITEMS - 2
    unfiltered = client.get("/users/u0/recommendations", params={"k": N_ITEMS, "filter_seen": "false"}).json()
    assert seen <= {x["item"] for x in unfiltered["recommendations"]}


def test_exclude_removes_items(client):
    top = client.get("/users/u2/recommendations", params={"k": 3}).json()["recommendations"]
    excl = [top[0]["item"], top[1]["item"]]
    r = client.get("/users/u2/recommendations", params=[("k", "3"), ("exclude", excl[0]), ("exclude", excl[1])])
    assert r.status_code == 200
    items = [x["item"] for x in r.json()["recommendations"]]
    assert not set(excl) & set(items) and items[0] == top[2]["item"]


def test_recommendations_with_explanations(client):
    r = client.get("/users/u1/recommendations", params={"k": 2, "explain": "true"})
    assert r.status_code == 200
    for rec in r.json()["recommendations"]:
        assert rec["explanation"]["relation"] in RELATIONS
        assert len(rec["explanation"]["weights"]) == 3


def test_explanation_endpoint(client):
    r = client.get("/users/u1/items/103/explanation")
    assert r.status_code == 200
    body = r.json()
    assert body["user"] == "u1" and body["item"] == "103"
    assert body["explanation"] == json.loads(json.dumps(FakeRecommender().explain("u1", "103"), default=lambda a: a.tolist()))


def test_batch_recommendations_equal_single_ones(client):
    r = client.post("/recommendations", json={"users": ["u1", "u2", "u1"], "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["k"] == 3 and [x["user"] for x in body["results"]] == ["u1", "u2", "u1"]
    for res in body["results"]:
        single = client.get(f"/users/{res['user']}/recommendations", params={"k": 3}).json()
        assert res["recommendations"] == single["recommendations"]


@pytest.mark.parametrize(
    "path, needle",
    [
        ("/users/nobody/recommendations", "nobody"),
        ("/users/nobody/items/101/explanation", "nobody"),
        ("/users/u1/items/999999/explanation", "999999"),
        ("/users/u1/recommendations?exclude=424242", "424242"),
    ],
)
def test_unknown_ids_give_404_naming_the_id(client, path, needle):
    r = client.get(path)
    assert r.status_code == 404
    assert needle in r.json()["error"]


def test_unknown_user_in_batch_gives_404(client):
    r = client.post("/recommendations", json={"users": ["u1", "ghost"], "k": 2})
    assert r.status_code == 404 and "ghost" in r.json()["error"]


@pytest.mark.parametrize("k", ["0", "-3", str(N_ITEMS + 1), "abc", "2.5", ""])
def test_bad_k_gives_422(client, k):
    r = client.get("/users/u1/recommendations", params={"k": k})
    assert r.status_code == 422
    assert "k" in r.json()["error"]


@pytest.mark.parametrize(
    "body, status",
    [
        ({"users": ["u1"] * 6, "k": 2}, 413),                 # over max_batch=5
        ({"users": [], "k": 2}, 422),
        ({"users": ["u1"], "k": 0}, 422),
        ({"users": ["u1"], "k": N_ITEMS + 1}, 422),
        ({"users": ["u1"], "k": "ten"}, 422),
        ({"users": "u1", "k": 2}, 422),
        ({"users": [["u1"]], "k": 2}, 422),
        ({"users": [True], "k": 2}, 422),
        ({"k": 2}, 422),
        ({"users": ["u1"], "k": 2, "bogus": 1}, 422),
        ([1, 2, 3], 422),
    ],
)
def test_bad_batch_bodies_give_json_errors(client, body, status):
    r = client.post("/recommendations", json=body)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]


def test_integer_user_ids_in_batch_are_tokens(client):
    # JSON numbers are accepted as ids: the tokens are strings, "100" and 100 mean the same item
    r = client.post("/recommendations", json={"users": ["u3"], "k": 2, "exclude": [100]})
    assert r.status_code == 200


def test_oversized_body_is_refused_before_parsing(client):
    raw = b'{"users": [' + b",".join([b'"u1"'] * 40000) + b'], "k": 2}'
    r = client.post("/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "exceeds" in r.json()["error"]


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"users": ["u1"], "k": 2'])
def test_malformed_json_gives_400(client, raw):
    r = client.post("/recommendations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    assert r.json()["error"]


def test_wrong_method_gives_405_json(client):
    for r in (client.post("/health"), client.get("/recommendations"), client.delete("/users/u1/recommendations")):
        assert r.status_code == 405
        assert "not allowed" in r.json()["error"]


def test_unknown_endpoint_gives_404_json(client):
    r = client.get("/nope")
    assert r.status_code == 404 and "/nope" in r.json()["error"]


def test_explain_unavailable_for_bpr(bpr_server):
    with httpx.Client(base_url=bpr_server.url, timeout=10) as c:
        assert c.get("/users/u1/recommendations", params={"k": 2}).status_code == 200
        for r in (
            c.get("/users/u1/recommendations", params={"k": 2, "explain": "true"}),
            c.get("/users/u1/items/101/explanation"),
            c.post("/recommendations", json={"users": ["u1"], "k": 2, "explain": True}),
        ):
            assert r.status_code == 400
            assert "bpr" in r.json()["error"] and "explanation" in r.json()["error"]


def test_true_bugs_give_json_500():
    class Broken(FakeRecommender):
        def recommend(self, *a, **kw):
            raise RuntimeError("boom")

    with BackgroundServer(create_app(Broken())) as srv:
        r = httpx.get(srv.url + "/users/u1/recommendations", timeout=10)
    assert r.status_code == 500
    assert r.json() == {"error": "internal error: RuntimeError"}


def test_concurrent_requests_equal_sequential(client, server):
    requests = [(f"u{i % N_USERS}", 1 + i % 5, i % 3 == 0) for i in range(50)]

    def fetch(c, req):
        user, k, explain = req
        r = c.get(f"/users/{user}/recommendations", params={"k": k, "explain": str(explain).lower()})
        return r.status_code, r.json()

    sequential = [fetch(client, req) for req in requests]
    with httpx.Client(base_url=server.url, timeout=10) as shared, ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(lambda req: fetch(shared, req), requests))
    assert all(status == 200 for status, _ in concurrent)
    assert concurrent == sequential


def test_missing_serve_extra_is_one_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "fastapi", None)   # as if not installed
    with pytest.raises(KtupError, match=r"ktup\[serve\].*fastapi"):
        create_app(FakeRecommender())
