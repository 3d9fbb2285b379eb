"""A job's page in the system's headless Chromium: its image, fields and infotext, and the
"render again" form with ``--set`` overrides that lands on the new job."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.web.conftest import job_file, page_settings_for, render_text, start_server, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_model, one_torch_thread):
    # The real renderer on the built-in tiny model: a rerun renders real pixels, 2 steps.
    folder = tmp_path_factory.mktemp("jobs")
    settings = page_settings_for(folder).with_(renderer="diffusers",
                                               model_dir=tiny_model.parent)
    sweep_id = render_text(settings, job_file("tiny", "a lighthouse", seeds="7"))
    server, stop = start_server(settings)
    server.sweep_id = sweep_id
    yield server
    stop()


def _job_id(server) -> int:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.sweeps import sweep_jobs

    with session_factory(server.settings.database_url)() as session:
        return sweep_jobs(session, server.sweep_id)[0].id


def test_a_jobs_page_shows_its_image_fields_and_infotext(server, browser):
    job_id = _job_id(server)
    browser.get(f"{server.url}/jobs/{job_id}")
    wait_for(lambda: browser.execute_script(
        "const i = document.getElementById('job-image'); return i.complete && i.naturalWidth"),
        "the image loaded")
    fields = browser.find_element(By.ID, "fields").text
    assert "seed 7" in fields and "prompt a lighthouse" in fields
    infotext = browser.find_element(By.ID, "infotext").text
    assert infotext.startswith("a lighthouse\nSteps: 2, Sampler: ") and "Seed: 7" in infotext
    assert browser.find_element(By.ID, "sweep-link").get_attribute("href").endswith(
        f"/sweeps/{server.sweep_id}")


def test_render_again_with_a_changed_cfg_lands_on_the_new_job(server, browser):
    job_id = _job_id(server)
    browser.get(f"{server.url}/jobs/{job_id}")
    browser.find_element(By.ID, "overrides").send_keys("cfg=8")
    browser.find_element(By.ID, "rerun").click()
    wait_for(lambda: browser.find_elements(By.ID, "rerun-of"), "the new job's page", 120)
    new_id = int(browser.current_url.rsplit("/", 1)[1])
    assert new_id != job_id
    assert browser.find_element(By.ID, "rerun-of").get_attribute("href").endswith(
        f"/jobs/{job_id}")
    assert "cfg 8.0" in browser.find_element(By.ID, "fields").text
    assert "CFG scale: 8" in browser.find_element(By.ID, "infotext").text


def test_a_bad_override_shows_the_clis_one_line_and_keeps_the_form(server, browser):
    job_id = _job_id(server)
    browser.get(f"{server.url}/jobs/{job_id}")
    browser.find_element(By.ID, "overrides").send_keys("cgf=8")
    browser.find_element(By.ID, "rerun").click()
    error = wait_for(lambda: browser.find_element(By.ID, "rerun-error"), "the error").text
    assert error.startswith("--set: cgf: cannot be set; settable: model, vae, prompt")
    assert "\n" not in error
    assert browser.find_element(By.ID, "overrides").get_attribute("value") == "cgf=8"
