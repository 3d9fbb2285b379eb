"""The sweeps list and a sweep's page, in the system's headless Chromium: counts that move
while a sweep renders, with no reload; the job file, axes and cancel button of one sweep."""

from __future__ import annotations

import threading

import pytest
from selenium.webdriver.common.by import By

from tests.servers import free_port
from tests.web.conftest import job_file, page_settings_for, start_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Each fake image takes 0.2 s: a 12-image sweep renders for a few seconds. The broker URL
    # names a port nothing listens on (a test machine may run redis-server on 6379).
    settings = page_settings_for(tmp_path_factory.mktemp("sweeps")).with_(
        renderer="fake:0.2", broker_url=f"redis://127.0.0.1:{free_port()}/0")
    server, stop = start_server(settings)
    yield server
    stop()


def _record(settings, text: str):
    from sdfarm.usecases.render import record_for_local_render
    from sdfarm.usecases.submit_text import plan_text

    return record_for_local_render(settings, plan_text(settings, text, "lighthouse.toml"))


def _done(browser, sweep_id: int) -> int:
    return int(browser.find_element(By.CSS_SELECTOR, f"#sweep-{sweep_id} .count-done").text)


def test_the_sweeps_list_counts_a_rendering_sweeps_images_without_a_reload(server, browser):
    from sdfarm.usecases.render import render_recorded

    # Given a recorded sweep of 12 images, and the sweeps page open before it renders
    sweep = _record(server.settings, job_file("rising", "a lighthouse", seeds="1-12"))
    browser.get(server.url + "/")
    assert _done(browser, sweep.sweep_id) == 0
    browser.execute_script("window.__sameDocument = true")
    # When it renders (here, in another thread, as `sdfarm render` would in another process)
    render = threading.Thread(target=render_recorded, args=(server.settings, sweep))
    render.start()
    try:
        # Then the done count rises on the open page, the same document (no reload)
        wait_for(lambda: 0 < _done(browser, sweep.sweep_id) < 12, "a partial done count", 20)
        wait_for(lambda: _done(browser, sweep.sweep_id) == 12, "all 12 images done", 30)
        assert browser.execute_script("return window.__sameDocument") is True
    finally:
        render.join()
    row = browser.find_element(By.ID, f"sweep-{sweep.sweep_id}")
    assert row.find_element(By.CSS_SELECTOR, ".eta").text == "finished"  # nothing left to render


def test_a_sweeps_page_shows_its_job_file_and_axes_and_cancels_it(server, browser):
    # Given a recorded grid sweep that has not rendered yet
    text = job_file("to-cancel", "a harbour at night", seeds="1-2", cfg="5, 7, 9")
    sweep = _record(server.settings, text)
    # When its page is opened
    browser.get(f"{server.url}/sweeps/{sweep.sweep_id}")
    # Then it shows the job file as written, its axis, and a link to its grid viewer
    assert browser.find_element(By.ID, "job-file").text == text.strip()
    axes = browser.find_element(By.CSS_SELECTOR, "table.axes").text
    assert "cfg" in axes and "5" in axes and "9" in axes
    link = browser.find_element(By.ID, "grid-link").get_attribute("href")
    assert link == f"{server.url}/sweeps/{sweep.sweep_id}/grid"
    assert browser.find_element(By.CSS_SELECTOR, "#progress .count-queued").text == "6"
    # When the user cancels it, Then its 6 jobs are canceled and the page says so
    browser.find_element(By.ID, "cancel").click()
    wait_for(lambda: browser.find_element(By.ID, "done"), "the cancel notice")
    assert "canceled 6 queued jobs" in browser.find_element(By.ID, "done").text
    assert browser.find_element(By.CSS_SELECTOR, "#progress .count-canceled").text == "6"


def test_an_unknown_sweep_is_a_404_with_the_clis_message(server, browser):
    import httpx

    response = httpx.get(server.url + "/sweeps/999", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "no sweep 999" in response.text


def test_retry_without_a_broker_says_so_in_one_line_on_the_sweeps_page(server, browser):
    # Given a canceled sweep, and no broker at the configured URL
    sweep = _record(server.settings, job_file("no-broker", "a windmill", seeds="1"))
    browser.get(f"{server.url}/sweeps/{sweep.sweep_id}")
    browser.find_element(By.ID, "cancel").click()
    wait_for(lambda: browser.find_element(By.ID, "done"), "the cancel notice")
    # When the user retries it, Then the page says the broker cannot be reached
    browser.find_element(By.ID, "retry").click()
    error = wait_for(lambda: browser.find_element(By.ID, "sweep-error"), "the error", 30).text
    assert error.startswith("cannot reach the broker") and "\n" not in error
