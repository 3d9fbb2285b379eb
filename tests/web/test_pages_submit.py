"""The submit page in the system's headless Chromium: a job file pasted or uploaded is planned
first (or refused with the CLI's one line naming the file and the key), then rendered here and
followed on its sweep's page."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.web.conftest import job_file, page_settings_for, start_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    settings = page_settings_for(tmp_path_factory.mktemp("submit")).with_(renderer="fake:0.05")
    server, stop = start_server(settings)
    yield server
    stop()


def _paste(browser, text: str) -> None:
    area = browser.find_element(By.ID, "text")
    area.clear()
    # send_keys types each character (and auto-indents nothing): set the value as pasted.
    browser.execute_script("arguments[0].value = arguments[1]", area, text)


def test_a_pasted_job_file_with_a_typo_shows_the_one_line_error_naming_the_key(server, browser):
    browser.get(server.url + "/submit")
    _paste(browser, job_file("typo", "a lighthouse").replace("steps = 2", 'sampler = "Eulr"'))
    browser.find_element(By.ID, "plan").click()
    error = wait_for(lambda: browser.find_element(By.ID, "submit-error"), "the error").text
    assert error.startswith("pasted.toml: sampler: unknown sampler 'Eulr' (did you mean "
                            "'Euler'?)")
    assert "\n" not in error
    assert not browser.find_elements(By.ID, "submit-farm")  # nothing to submit


def test_an_uploaded_job_file_with_an_unknown_key_is_named_by_its_file_name(server, browser,
                                                                           tmp_path):
    path = tmp_path / "my-grid.toml"
    path.write_text(job_file("typo", "a lighthouse").replace("steps = 2", "stpes = 2"))
    browser.get(server.url + "/submit")
    browser.find_element(By.ID, "upload").send_keys(str(path))
    browser.find_element(By.ID, "plan").click()
    error = wait_for(lambda: browser.find_element(By.ID, "submit-error"), "the error").text
    assert error.startswith("my-grid.toml: stpes: unknown key (did you mean 'steps'?)")
    # The uploaded text is in the form to fix there
    assert "stpes = 2" in browser.find_element(By.ID, "text").get_attribute("value")


def test_a_good_job_file_is_planned_then_rendered_here_and_followed_live(server, browser):
    from sdfarm.db.engine import session_factory
    from sdfarm.db.models import Sweep

    text = job_file("good", "a quiet harbour", seeds="1-3", cfg="5, 7")
    browser.get(server.url + "/submit")
    _paste(browser, text)
    browser.find_element(By.ID, "plan").click()
    # The plan, as `sdfarm plan` prints it, and nothing recorded yet
    lines = wait_for(lambda: browser.find_element(By.ID, "plan-lines"), "the plan").text
    assert "images:          6 (1 prompt x 2 cfg x 3 seeds)" in lines
    with session_factory(server.settings.database_url)() as session:
        assert session.query(Sweep).filter_by(name="good").count() == 0
    # When the user renders it here, Then its sweep page fills in without a reload
    browser.find_element(By.ID, "render-here").click()
    wait_for(lambda: "/sweeps/" in browser.current_url, "the sweep's page")
    assert browser.find_element(By.ID, "job-file").text == text.strip()
    wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#progress .count-done").text == "6",
             "6 images done", 30)
