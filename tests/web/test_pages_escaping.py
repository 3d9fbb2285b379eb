"""Every prompt and name is text on the pages: a ``<script>`` prompt and an ``<img onerror>``
one show as written and run nothing, on the history, job, sweep and sweeps pages."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.web.conftest import (
    job_file,
    no_script_ran,
    page_settings_for,
    render_text,
    start_server,
    wait_for,
)

SCRIPT = "<script>window.pwned=1</script>"
IMG = '<img src="x" onerror="window.pwned=1">'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = page_settings_for(tmp_path_factory.mktemp("escaping"))
    sweep_id = render_text(settings, job_file(f"name {SCRIPT}", f"a cat {SCRIPT}", seeds="1",
                                              negative=IMG))
    render_text(settings, job_file(f"name {IMG}", f"a dog {IMG}", seeds="1"))
    server, stop = start_server(settings)
    server.sweep_id = sweep_id
    yield server
    stop()


def _job_ids(server) -> list[int]:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Job

    with session_factory(server.settings.database_url)() as session:
        return [j.id for j in session.query(Job).order_by(Job.id)]


def test_the_history_page_shows_markup_prompts_as_text(server, browser):
    browser.get(server.url + "/history")
    prompts = [e.get_attribute("textContent")
               for e in browser.find_elements(By.CSS_SELECTOR, "#results .prompt")]
    assert sorted(prompts) == [f"a cat {SCRIPT}", f"a dog {IMG}"]
    assert no_script_ran(browser)


def test_the_job_pages_show_markup_prompts_as_text(server, browser):
    for job_id in _job_ids(server):
        browser.get(f"{server.url}/jobs/{job_id}")
        infotext = browser.find_element(By.ID, "infotext").text
        assert infotext.startswith(("a cat <script>", "a dog <img"))
        assert len(browser.find_elements(By.CSS_SELECTOR, "main script, main img[onerror]")) == 0
        assert no_script_ran(browser)


def test_the_sweep_pages_show_markup_names_and_job_files_as_text(server, browser):
    browser.get(f"{server.url}/sweeps/{server.sweep_id}")
    assert browser.find_element(By.CSS_SELECTOR, "h1 .name").text == f"name {SCRIPT}"
    assert SCRIPT in browser.find_element(By.ID, "job-file").text
    browser.get(server.url + "/")
    names = {e.text for e in browser.find_elements(By.CSS_SELECTOR, "table.sweeps .name")}
    assert names == {f"name {SCRIPT}", f"name {IMG}"}
    # The live refresh swaps in the server's rows: still text, still nothing run
    browser.execute_script("document.body.dataset.refreshed = ''")
    wait_for(lambda: browser.execute_script("return document.body.dataset.refreshed"),
             "a live refresh", 10)
    assert len(browser.find_elements(By.CSS_SELECTOR, "main script, main img[onerror]")) == 0
    assert no_script_ran(browser)
