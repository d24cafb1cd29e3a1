"""A real headless Chromium for the explorer's browser tests (Selenium + Debian's chromium and
chromium-driver; nothing is downloaded). ``chromium()`` skips the test with one line when the
browser cannot be started here."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

INSTALL = "apt-get install chromium chromium-driver; pip install selenium"


def _find(names: tuple[str, ...], env: str) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


@contextmanager
def chromium(width: int = 1400, height: int = 1100) -> Iterator:
    """A headless Chromium WebDriver; skips (one line) where selenium or the browser is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip(f"browser tests need selenium ({INSTALL})")
    binary = _find(("chromium", "chromium-browser", "google-chrome"), "KTUP_CHROMIUM")
    driver_path = _find(("chromedriver",), "KTUP_CHROMEDRIVER")
    if not binary or not driver_path:
        pytest.skip(f"no headless Chromium here ({INSTALL})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--no-first-run", "--disable-extensions", f"--window-size={width},{height}", "--lang=en-US"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(options=opts, service=Service(driver_path))
    except Exception as e:  # noqa: BLE001 - any start failure means "no browser here"
        pytest.skip(f"Chromium did not start ({type(e).__name__}: {str(e).splitlines()[0][:160]})")
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition: Callable, timeout: float = 30.0, what: str = "the page"):
    """Poll ``condition(driver)`` until it is truthy; fail naming ``what`` and the page's error box."""
    from selenium.common.exceptions import StaleElementReferenceException

    deadline = time.monotonic() + timeout
    while True:
        try:
            got = condition(driver)
        except StaleElementReferenceException:
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            err = driver.execute_script("const e = document.getElementById('error'); return e && !e.hidden ? e.textContent : ''")
            pytest.fail(f"timed out waiting for {what}" + (f" (page error: {err})" if err else ""))
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def ktup_serve(path, timeout: float = 120.0) -> Iterator[str]:
    """``ktup serve PATH`` as a real command on a loopback port; yields its base URL."""
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ktup", "serve", str(path), "--host", "127.0.0.1", "--port", str(port),
                             "--threads", "1", "--log-level", "warning"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(url + "/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail("ktup serve did not start: " + proc.communicate(timeout=10)[0].decode(errors="replace"))
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
