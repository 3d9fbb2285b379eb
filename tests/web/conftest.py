"""The page under test: ``sdfarm serve``'s app in a uvicorn thread on a free port, and the
system's headless Chromium (Debian's ``chromium`` + ``chromium-driver``, installed by
``make services``) driven by Selenium. Nothing here downloads a browser."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from sdfarm.config import Settings
from tests.conftest import deadline
from tests.servers import _missing, free_port

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


@dataclass
class WebServer:
    url: str
    settings: Settings
    app: object


def start_server(settings: Settings, **app_options) -> tuple[WebServer, Callable[[], None]]:
    """The app on 127.0.0.1:<free port> in a thread; returns it and how to stop it."""
    import uvicorn

    from sdfarm.web.app import create_app

    app = create_app(settings, **app_options)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="sdfarm-web", daemon=True)
    thread.start()
    end = time.monotonic() + deadline(20)
    while not server.started:
        if not thread.is_alive() or time.monotonic() > end:
            raise RuntimeError(f"the web server did not start on port {port}")
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(deadline(20))

    return WebServer(f"http://127.0.0.1:{port}", settings, app), stop


@pytest.fixture
def web(settings: Settings) -> Iterator[WebServer]:
    """The page over the test's own SQLite file and output folder."""
    server, stop = start_server(settings)
    yield server
    stop()


def _first(paths: tuple[str, ...], name: str) -> str:
    for path in paths:
        if os.path.exists(path):
            return path
    found = shutil.which(name)
    if found is None:
        _missing(name)
    return found


def start_chromium(width: int = 1280, height: int = 900):
    """The system's headless Chromium under Selenium (also used by scripts/screenshots.py)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _first(CHROMIUM, "chromium"), _first(CHROMEDRIVER, "chromedriver")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(deadline(30))
    return driver


@pytest.fixture(scope="session")
def chromium_session():
    """One headless Chromium for the session (starting one takes seconds)."""
    driver = start_chromium()
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium_session):
    """The session's Chromium with no cookies from the last test."""
    yield chromium_session
    chromium_session.delete_all_cookies()


def wait_for(predicate: Callable[[], object], what: str, seconds: float = 10.0):
    """``predicate()``'s first truthy value, polled until ``deadline(seconds)``."""
    limit = deadline(seconds)
    end = time.monotonic() + limit
    while True:
        try:
            value = predicate()
        except Exception:  # the element is not there yet, or went stale while the page updated
            value = None
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {limit:.0f} s")
        time.sleep(0.05)


# --- the pages' tests: one server per module over data rendered by the fake renderer --------

def page_settings_for(folder) -> Settings:
    """Settings like the ``settings`` fixture's, rendering with the fake renderer (seed-
    determined PNGs, no model): what the pages show needs real files, not real pixels."""
    from tests.conftest import TEST_THREADS

    return Settings(database_url=f"sqlite:///{folder / 'sdfarm.db'}",
                    output_dir=folder / "outputs", model_dir=folder / "models", device="cpu",
                    threads=TEST_THREADS, renderer="fake:0")


def render_text(settings: Settings, text: str) -> int:
    """Plan the job file ``text`` and render it here, as ``sdfarm render`` does; the sweep id."""
    from sdfarm.usecases.render import record_for_local_render, render_recorded
    from sdfarm.usecases.submit_text import plan_text

    sweep = record_for_local_render(settings, plan_text(settings, text, "test.toml"))
    render_recorded(settings, sweep)
    return sweep.sweep_id


def job_file(name: str, prompt: str, *, seeds: str = "1-2", cfg: str | None = None,
             negative: str = "", size: int = 64) -> str:
    """A small job file; ``cfg`` (``"5, 7, 9"``) makes it a grid along x."""
    import json

    lines = [f"name = {json.dumps(name)}", 'model = "builtin:tiny"',
             f"prompt = {json.dumps(prompt)}", f"negative_prompt = {json.dumps(negative)}",
             f'seeds = "{seeds}"', "steps = 2", f"width = {size}", f"height = {size}"]
    if cfg is not None:
        lines += ["", "[axes]", f"x = {{ cfg = {json.dumps(cfg)} }}"]
    return "\n".join(lines) + "\n"


def no_script_ran(browser) -> bool:
    """Whether no planted script or event handler ran on the page (they set ``window.pwned``:
    a prompt cannot hold ``__``, the wildcard syntax)."""
    return browser.execute_script("return typeof window.pwned") == "undefined"
