"""The explorer's JSON endpoints and files (no browser): run summary, plots, users by activity,
histories newest first, the page's assets from package data, /docs without a CDN."""

from __future__ import annotations

import re
from contextlib import contextmanager

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("fastapi_offline")

from ktup.data.dataset import IdMap, Interactions, KGDataset  # noqa: E402
from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.explorer import static_text  # noqa: E402
from ktup.serving.loading import load_recommender  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402


@contextmanager
def served(app):
    """A real server on loopback and an httpx client for it."""
    with BackgroundServer(app) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        yield c


def explorer_dataset(seed: int = 0, timestamps: bool = True) -> KGDataset:
    """12 users (u0 has the most interactions), 15 titled items, 3 relations, timestamps."""
    rng = np.random.default_rng(seed)
    nu, ni, ne = 12, 15, 20
    per_user = [9] + [3 + u % 4 for u in range(1, nu)]
    pairs = np.array([(u, i) for u in range(nu) for i in rng.choice(ni, per_user[u], replace=False)], dtype=np.int64)
    ts = rng.permutation(pairs.shape[0]).astype(np.float64) * 3600 + 8.8e8
    order = rng.permutation(pairs.shape[0])
    pairs, ts = pairs[order], ts[order]
    a, b = int(len(pairs) * 0.7), int(len(pairs) * 0.85)

    def part(sl):
        return Interactions(pairs[sl, 0].copy(), pairs[sl, 1].copy(), nu, ni, timestamps=ts[sl].copy() if timestamps else None)

    ie = np.arange(ni, dtype=np.int64)
    ie[-2:] = -1
    kg = np.stack([rng.integers(0, 13, 80), rng.integers(0, 3, 80), rng.integers(13, ne, 80)], 1).astype(np.int64)
    kg = np.unique(kg, axis=0)
    return KGDataset("tiny-explorer", IdMap([f"u{i}" for i in range(nu)], "user"), IdMap([str(100 + i) for i in range(ni)], "item"),
                     IdMap([f"m.{i}" for i in range(ne)], "entity"), IdMap(["film.director", "film.genre", "film.actor"], "relation"),
                     ie, part(slice(0, a)), part(slice(a, b)), part(slice(b, None)), kg[:-6], kg[-6:-3], kg[-3:],
                     item_info={"title": [f"Film {i}" for i in range(ni)]})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from test_train_support import train_one_epoch_runs

    return train_one_epoch_runs(tmp_path_factory.mktemp("explorer-runs"), ("ktup", "bpr"), explorer_dataset, embedding_size=8)


@pytest.fixture(scope="module")
def client(runs):
    with served(create_app(load_recommender(runs["ktup"]))) as c:
        yield c


def test_page_and_assets_come_from_package_data(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script src="/explorer/explorer.js"' in page.text and 'href="/explorer/explorer.css"' in page.text
    js = client.get("/explorer/explorer.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert client.get("/explorer/explorer.css").headers["content-type"].startswith("text/css")
    r = client.get("/explorer/secrets.txt")
    assert r.status_code == 404 and r.json() == {"error": "no explorer file named 'secrets.txt'"}
    assert client.get("/explorer/..%2Fapp.py").status_code == 404


def test_page_loads_nothing_from_elsewhere():
    """No CDN, no external fonts: every URL in the page's files is the service's own (the SVG
    namespace is a name, not a fetch)."""
    for name in ("explorer.html", "explorer.css", "explorer.js"):
        text = static_text(name).replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|@font-face", text, re.I), name


def test_docs_are_served_without_a_cdn(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "cdn" not in docs.text.lower()
    js = re.search(r'src="([^"]+swagger-ui-bundle\.js)"', docs.text).group(1)
    css = re.search(r'href="([^"]+swagger-ui\.css)"', docs.text).group(1)
    assert not js.startswith("http") and not css.startswith("http")
    assert client.get(js).status_code == 200 and len(client.get(js).content) > 100_000
    assert client.get(css).status_code == 200
    assert "cdn" not in client.get("/redoc").text.lower()


def test_run_summary_names_metrics_protocol_and_plots(client, runs):
    body = client.get("/run").json()
    assert (body["model"], body["dataset"], body["explains"]) == ("ktup", "tiny-explorer", True)
    assert body["users"] == 12 and body["items"] == 15 and body["status"] == "finished"
    assert "ndcg@10" in body["test"] and body["protocol"]["name"] and body["protocol"]["description"]
    assert body["plots"] and all(p.endswith(".png") for p in body["plots"])
    png = client.get(f"/run/plots/{body['plots'][0]}")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png" and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    for bad in ("nope.png", "..%2Frun.json", "..%2F..%2Fetc%2Fpasswd"):
        r = client.get(f"/run/plots/{bad}")
        assert r.status_code == 404 and "error" in r.json(), bad


def test_users_by_activity_and_paging(client):
    d = explorer_dataset()
    counts = sum(np.bincount(p.users, minlength=12) for p in (d.train, d.valid, d.test))
    body = client.get("/users", params={"limit": 1000}).json()
    assert body["total"] == 12 and body["users"][0] == {"user": "u0", "interactions": 9}
    got = [u["interactions"] for u in body["users"]]
    assert got == sorted(got, reverse=True) and sum(got) == counts.sum()
    assert {u["user"]: u["interactions"] for u in body["users"]} == {f"u{i}": int(c) for i, c in enumerate(counts)}
    page2 = client.get("/users", params={"offset": 5, "limit": 3}).json()["users"]
    assert page2 == body["users"][5:8]
    only = client.get("/users", params={"q": "u1"}).json()
    assert {u["user"] for u in only["users"]} == {"u1", "u10", "u11"} and only["total"] == 3
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "x"}):
        r = client.get("/users", params=params)
        assert r.status_code == 422 and r.json()["error"].startswith(("query.limit", "query.offset")), params


def test_history_has_titles_and_every_interaction(client):
    d = explorer_dataset()
    body = client.get("/users/u0/history").json()
    assert body["total"] == 9 and len(body["items"]) == 9
    want = set()
    for p in (d.train, d.valid, d.test):
        want |= {d.items.token(i) for i in p.items[p.users == 0]}
    assert {h["item"] for h in body["items"]} == want
    assert all(h["title"] == f"Film {int(h['item']) - 100}" for h in body["items"])
    # a run trained on an in-memory dataset keeps no timestamps: later splits come first
    rank = {"test": 0, "valid": 1, "train": 2}
    assert [rank[h["split"]] for h in body["items"]] == sorted(rank[h["split"]] for h in body["items"])
    assert body["order"].startswith("no timestamps")
    assert len(client.get("/users/u0/history", params={"limit": 2}).json()["items"]) == 2
    r = client.get("/users/ghost/history")
    assert r.status_code == 404 and r.json() == {"error": "unknown user 'ghost'"}
    assert client.get("/users/u0/history", params={"limit": 0}).status_code == 422


def test_history_is_newest_first_with_timestamps():
    from ktup.explain import Recommender
    from ktup.models import build_model
    from ktup.config import ModelConfig

    d = explorer_dataset()
    rec = Recommender(build_model(ModelConfig(model="bpr", embedding_size=4), d), d)
    with served(create_app(rec)) as c:
        body = c.get("/users/u3/history").json()
    assert body["order"] == "newest first"
    ts = [h["timestamp"] for h in body["items"]]
    assert len(ts) == body["total"] > 2 and ts == sorted(ts, reverse=True)


def test_a_reloaded_run_keeps_its_timestamps(tmp_path, tiny_dataset):
    """The saved split holds ids only; apply_split takes each pair's time from the reloaded source."""
    from ktup.runs import apply_split, save_split

    save_split(tmp_path / "split.npz", tiny_dataset)
    want = {s: getattr(tiny_dataset, s).timestamps.copy() for s in ("train", "valid", "test")}
    fresh = tiny_dataset
    fresh.train, fresh.test = fresh.test, fresh.train        # the source's own split differs
    out = apply_split(fresh, tmp_path / "split.npz")
    for s in ("train", "valid", "test"):
        np.testing.assert_array_equal(getattr(out, s).timestamps, want[s])


def test_bpr_and_export_folders_serve_the_explorer(runs, tmp_path):
    from ktup.serving.export import export_run

    with served(create_app(load_recommender(runs["bpr"]))) as c:
        assert c.get("/run").json()["explains"] is False
        assert c.get("/").status_code == 200
    export_run(runs["ktup"], tmp_path / "exp")
    with served(create_app(load_recommender(tmp_path / "exp"))) as c:
        body = c.get("/run").json()
        assert body["model"] == "ktup" and body["test"] is None and body["plots"] == []
        assert c.get("/users").json()["total"] == 12
        assert c.get("/run/plots/loss.png").status_code == 404


def test_page_files_are_package_data():
    """A non-editable install must carry the page: pyproject declares static/ as package data."""
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ktup.serving"]
    static = root / "src" / "ktup" / "serving" / "static"
    files = sorted(p.name for p in static.iterdir())
    assert files == ["explorer.css", "explorer.html", "explorer.js"]
    assert all(any(Path(f"static/{f}").match(pat) for pat in data) for f in files)
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(x.startswith("fastapi-offline") for x in extras["serve"]) and any(x.startswith("selenium") for x in extras["test"])
