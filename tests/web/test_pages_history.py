"""The history page in the system's headless Chromium: the CLI's search language and filters
in a form, answered as thumbnails of exactly the matching jobs, with paging."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from sqlalchemy import select

from tests.web.conftest import job_file, page_settings_for, render_text, start_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = page_settings_for(tmp_path_factory.mktemp("history"))
    render_text(settings, job_file("lighthouses", "a lighthouse at dusk", cfg="5, 7, 9"))
    render_text(settings, job_file("barns", "a red barn", cfg="5, 7, 9"))
    server, stop = start_server(settings)
    yield server
    stop()


def _ids(settings, where) -> set[int]:
    """Job ids straight from the database (not through the search under test)."""
    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Job

    with session_factory(settings.database_url)() as session:
        return set(session.scalars(select(Job.id).where(where)))


def _shown(browser) -> list[int]:
    return [int(a.get_attribute("data-job"))
            for a in browser.find_elements(By.CSS_SELECTOR, "#results a[data-job]")]


def test_searching_a_prompt_word_and_a_cfg_range_shows_the_thumbnails_of_those_jobs(server,
                                                                                   browser):
    from sdfarm.db.models import Job

    # Given 6 lighthouse and 6 barn images, at cfg 5, 7 and 9
    expected = _ids(server.settings, Job.prompt.contains("lighthouse") & (Job.cfg >= 6))
    assert len(expected) == 4
    # When the user searches "lighthouse" with the cfg filter 6-9
    browser.get(server.url + "/history")
    browser.find_element(By.ID, "prompt").send_keys("lighthouse")
    browser.find_element(By.CSS_SELECTOR, "details.filters summary").click()
    browser.find_element(By.ID, "f-cfg").send_keys("6-9")
    browser.find_element(By.ID, "search-button").click()
    wait_for(lambda: "cfg=6-9" in browser.current_url, "the search in the URL")
    # Then exactly those 4 jobs are shown, each a loaded thumbnail linking to its job page
    assert set(_shown(browser)) == expected and len(_shown(browser)) == 4
    wait_for(lambda: browser.execute_script(
        "return [...document.querySelectorAll('#results img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"), "the thumbnails loaded")
    first = browser.find_element(By.CSS_SELECTOR, "#results a[data-job]")
    assert first.get_attribute("href") == f"{server.url}/jobs/{first.get_attribute('data-job')}"
    # And the form keeps the search, so the URL can be shared
    assert browser.find_element(By.ID, "f-cfg").get_attribute("value") == "6-9"
    # And says the order: words are ranked, as `sdfarm history --prompt` ranks them
    assert "best match first" in browser.find_element(By.CSS_SELECTOR, "p.meta").text


def test_results_page_with_next_and_previous(server, browser):
    from sdfarm.db.models import Job

    lighthouses = _ids(server.settings, Job.prompt.contains("lighthouse"))
    browser.get(server.url + "/history?prompt=lighthouse&limit=4")
    first = _shown(browser)
    assert len(first) == 4 and not browser.find_elements(By.ID, "previous")
    browser.find_element(By.ID, "next").click()
    wait_for(lambda: "offset=4" in browser.current_url, "the second page")
    second = _shown(browser)
    assert len(second) == 2 and set(first) | set(second) == lighthouses
    assert not browser.find_elements(By.ID, "next")
    browser.find_element(By.ID, "previous").click()
    wait_for(lambda: "offset=0" in browser.current_url, "the first page again")
    assert _shown(browser) == first


def test_a_bad_filter_shows_the_clis_one_line_and_nothing_found_shows_the_hint(server, browser):
    browser.get(server.url + "/history?cfg=6-x")
    assert browser.find_element(By.ID, "history-error").text == (
        "cfg: '6-x' is not a number or a range like 6-8")
    browser.get(server.url + "/history?sampler=Karass")
    hint = browser.find_element(By.ID, "nothing-found").text
    assert "samplers in the history: Euler a" in hint
