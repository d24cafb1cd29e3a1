"""The explorer page in a real headless Chromium against a real server on loopback: pick a user,
see the top-k with titles, open an explanation (relation name, weight chart, SVG evidence edges),
change k, and see the API's error text for bad input. Skipped (one line) where no browser runs.

The ml-100k test also takes the README's screenshot: it is written to docs/explorer.png when that
file is missing or KTUP_UPDATE_SCREENSHOT=1 (else only to the test's temporary folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi_offline")

from _browser import chromium, ktup_serve, wait_for  # noqa: E402
from conftest import shared_datasets_dir  # noqa: E402
from test_explorer_api import explorer_dataset  # noqa: E402

from ktup.serving.app import create_app  # noqa: E402
from ktup.serving.loading import load_recommender  # noqa: E402
from ktup.serving.server import BackgroundServer  # noqa: E402

DOCS_SHOT = Path(__file__).resolve().parents[1] / "docs" / "explorer.png"


def by(css):
    from selenium.webdriver.common.by import By

    return By.CSS_SELECTOR, css


def items_shown(d) -> list:
    return d.find_elements(*by("#recs li.rec"))


def pick(d, user: str, k=None, expect=None) -> None:
    """Type the user (and k) and press Enter; wait for ``expect`` items or, if None, for an error."""
    from selenium.webdriver.common.keys import Keys

    before = d.execute_script("return state.seq")
    if k is not None:
        box = d.find_element(*by("#k"))
        box.clear()
        box.send_keys(str(k))
    box = d.find_element(*by("#user"))
    box.clear()
    box.send_keys(user, Keys.ENTER)
    wait_for(d, lambda d: d.execute_script("return state.seq") > before, what="the request to start")
    if expect is None:
        wait_for(d, lambda d: d.find_element(*by("#error")).is_displayed(), what="an error message")
    else:
        wait_for(d, lambda d: d.find_element(*by("#user-h")).text == f"User {user}" and len(items_shown(d)) == expect
                 and not d.find_element(*by("#error")).is_displayed(), what=f"{expect} recommendations for {user}")


def error_text(d) -> str:
    return d.find_element(*by("#error")).text


def open_why(d, item: str):
    """Open the explanation of ``item`` with the keyboard (focus its button, press Enter)."""
    from selenium.webdriver.common.keys import Keys

    li = d.find_element(*by(f'#recs li.rec[data-item="{item}"]'))
    btn = li.find_element(*by("button.why"))
    btn.send_keys(Keys.ENTER)
    assert btn.get_attribute("aria-expanded") == "true"
    panel = li.find_element(*by(".explanation"))
    wait_for(d, lambda d: panel.find_elements(*by(".exp-text, .exp-empty")), what=f"the explanation of item {item}")
    return panel


def severe_logs(d) -> list:
    try:
        return [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]
    except Exception:  # noqa: BLE001 - a driver without log access
        return []


# ---------------------------------------------------------------------- synthetic runs
@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from test_train_support import train_one_epoch_runs

    return train_one_epoch_runs(tmp_path_factory.mktemp("explorer-browser"), ("ktup", "tup", "bpr"), explorer_dataset, embedding_size=8)


@pytest.fixture(scope="module")
def browser():
    with chromium() as d:
        yield d


@pytest.mark.parametrize("model", ["ktup", "tup", "bpr"])
def test_every_model_in_the_browser(model, runs, browser):
    d = browser
    rec = load_recommender(runs[model])
    with BackgroundServer(create_app(rec)) as srv, httpx.Client(base_url=srv.url, timeout=30) as api:
        severe_logs(d)                                          # drain what earlier tests logged
        d.get(srv.url + "/")
        wait_for(d, lambda d: d.find_element(*by("#run-line")).text.startswith(f"{model} on tiny-explorer"), what="the run line")
        wait_for(d, lambda d: len(d.find_elements(*by("#user-list button"))) == 12, what="the user list")
        first = d.find_elements(*by("#user-list button"))[0]
        assert first.get_attribute("data-user") == "u0" and "9 interactions" in first.text
        first.click()                                           # browse by activity: the most active user
        wait_for(d, lambda d: d.find_element(*by("#user-h")).text == "User u0" and items_shown(d), what="user u0")
        seen = {h["item"] for h in api.get("/users/u0/history").json()["items"]}
        assert len(items_shown(d)) == 15 - len(seen)           # k=10 asked, only the unseen are left
        assert not seen & {li.get_attribute("data-item") for li in items_shown(d)}
        assert len(d.find_elements(*by("#history li"))) == len(seen)

        pick(d, "u4", k=4, expect=4)
        want = api.get("/users/u4/recommendations", params={"k": 4}).json()["recommendations"]
        assert [li.find_element(*by(".rec-title")).text for li in items_shown(d)] == [r["display_title"] for r in want]
        assert not severe_logs(d)
        panel = open_why(d, want[0]["item"])
        if model == "bpr":
            assert "No explanation" in panel.text and "bpr" in panel.text and "no preferences" in panel.text
            assert not panel.find_elements(*by("svg"))
        else:
            x = api.get(f"/users/u4/items/{want[0]['item']}/explanation").json()["explanation"]
            assert x["top"]["relation_name"] in panel.text
            chart = panel.find_element(*by("svg.weights"))
            assert chart.get_attribute("role") == "img" and chart.find_elements(*by("title"))
            if model == "tup":
                assert "latent" in panel.text and not panel.find_elements(*by("svg.evidence"))

        pick(d, "ghost", expect=None)
        assert error_text(d) == "unknown user 'ghost'"
        assert not d.find_element(*by("#user-view")).is_displayed()
        pick(d, "u4", k=99, expect=None)
        assert error_text(d) == "k: 99 exceeds the catalogue size (15 items)"
        pick(d, "u4", k=0, expect=None)
        assert error_text(d) == "k: must be a positive integer, got 0"
        pick(d, "u4", k=2, expect=2)                            # recovers: the error box is gone


def test_keyboard_navigation_and_deep_link(runs, browser):
    from selenium.webdriver.common.keys import Keys

    d = browser
    with BackgroundServer(create_app(load_recommender(runs["ktup"]))) as srv:
        d.get(srv.url + "/#user=u2&k=3")                        # a shareable link opens the user
        wait_for(d, lambda d: len(items_shown(d)) == 3, what="the deep-linked user")
        d.find_element(*by("#user")).send_keys(Keys.TAB)
        assert d.switch_to.active_element.get_attribute("id") == "k"
        d.switch_to.active_element.send_keys(Keys.TAB)
        assert d.switch_to.active_element.get_attribute("id") == "show"
        d.switch_to.active_element.send_keys(Keys.ENTER)         # the button submits from the keyboard
        wait_for(d, lambda d: d.find_element(*by("#status")).text.startswith("User u2"), what="the resubmitted user")
        # every interactive element is a native, focusable control
        for el in d.find_elements(*by("button, input, a[href]")):
            assert el.get_attribute("tabindex") in (None, "", "0")


# ---------------------------------------------------------------------- ml-100k
@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory):
    shared = shared_datasets_dir()
    if shared is None or not (shared / "ml-100k" / "ml-100k.inter").exists():
        pytest.skip("shared ml-100k not found (set KTUP_SHARED_DATASETS)")
    from ktup.config import Config
    from ktup.training import train

    cfg = Config.from_dict({"data": {"dataset": str(shared / "ml-100k")},
                            "model": {"model": "ktup", "embedding_size": 8},
                            "train": {"epochs": 1, "threads": 1}, "eval": {"kg_eval": False}})
    return train(cfg, out=str(tmp_path_factory.mktemp("explorer-ml100k") / "run"), progress="quiet").path


@pytest.mark.integration
def test_ml100k_user_196_in_the_browser(ml100k_run, tmp_path):
    with chromium() as d, ktup_serve(ml100k_run) as url, httpx.Client(base_url=url, timeout=60) as api:
        d.get(url + "/")
        wait_for(d, lambda d: "ktup on ml-100k" in d.find_element(*by("#run-line")).text, what="the run line")
        pick(d, "196", expect=10)
        want = api.get("/users/196/recommendations").json()["recommendations"]
        titles = [li.find_element(*by(".rec-title")).text for li in items_shown(d)]
        assert titles == [r["display_title"] for r in want] and all(titles)
        assert not any(t.endswith((", The", ", A", ", An")) for t in titles)   # titles read unflipped
        hist = api.get("/users/196/history").json()
        assert d.find_element(*by("#hist-h")).text == f"History ({hist['total']} items)" and hist["order"] == "newest first"
        assert d.find_element(*by("#history li")).text.startswith(hist["items"][0]["display_title"])

        # the run summary: metrics with their protocol, the training curves
        assert "protocol recbole" in d.find_element(*by("#metrics caption")).text
        assert "ndcg@10" in d.find_element(*by("#metrics")).text
        wait_for(d, lambda d: d.execute_script(
            "const im = [...document.querySelectorAll('#plots img')]; return im.length >= 1 && im.every(i => i.complete && i.naturalWidth > 0)"),
            what="the training-curve images")

        # an explanation with KG paths: its relation name and SVG edges carrying it
        xs = [(r["item"], api.get(f"/users/196/items/{r['item']}/explanation").json()["explanation"]) for r in want]
        found = [(i, x) for i, x in xs if x["evidence"] and x["evidence"]["paths_found"]]
        assert found, "no top-10 item of user 196 has a KG path to the history"
        item, x = found[0]
        rel = (x.get("named") or x["top"])["relation_name"]   # the relation the text names and the evidence follows
        panel = open_why(d, item)
        assert rel in panel.find_element(*by(".exp-text")).text
        graph = panel.find_element(*by("svg.evidence"))
        edges = graph.find_elements(*by("line.edge"))
        assert edges and graph.get_attribute("role") == "img"
        assert rel in {t.text for t in graph.find_elements(*by("text.edge-label"))}
        assert x["evidence"]["entities"][0]["history_items"][0]["title"][:20] in graph.text
        assert not severe_logs(d)

        d.set_window_size(1400, d.execute_script("return document.documentElement.scrollHeight") + 120)
        shot = tmp_path / "explorer.png"
        assert d.save_screenshot(str(shot)) and shot.stat().st_size > 50_000
        if os.environ.get("KTUP_UPDATE_SCREENSHOT") == "1" or not DOCS_SHOT.exists():
            shutil.copyfile(shot, DOCS_SHOT)
        d.set_window_size(1400, 1100)

        pick(d, "196", k=5, expect=5)
        pick(d, "no-such-user", expect=None)
        assert error_text(d) == "unknown user 'no-such-user'"
        pick(d, "196", k=0, expect=None)
        assert error_text(d) == "k: must be a positive integer, got 0"


def test_docs_render_without_internet(runs, browser):
    """/docs draws Swagger UI from the service's own files (this machine has no route to a CDN)."""
    d = browser
    with BackgroundServer(create_app(load_recommender(runs["bpr"]))) as srv:
        d.get(srv.url + "/docs")
        wait_for(d, lambda d: d.find_elements(*by(".swagger-ui .info .title")), what="Swagger UI")
        assert "ktup" in d.find_element(*by(".swagger-ui .info .title")).text
        wait_for(d, lambda d: "/users/{user_id}/recommendations" in d.find_element(*by(".swagger-ui")).text, what="the endpoints")
        assert all(s.get_attribute("src").startswith(srv.url) for s in d.find_elements(*by("script[src]")))
