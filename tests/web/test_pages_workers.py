"""The workers page in the system's headless Chromium: what ``sdfarm status`` shows of each
worker, kept current without a reload."""

from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.web.conftest import page_settings_for, start_server, wait_for


def _heartbeat(settings, **fields) -> None:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.workers import record_heartbeat

    with session_factory(settings.database_url).begin() as session:
        record_heartbeat(session, "gpu-1", **fields)


def test_the_workers_page_shows_each_workers_state_and_follows_its_heartbeats(tmp_path,
                                                                            browser):
    from sdfarm.db.engine import session_factory
    from sdfarm.db.workers import register_worker

    settings = page_settings_for(tmp_path)
    with session_factory(settings.database_url).begin() as session:
        register_worker(session, "gpu-1", host="render-box", pid=4242, device="cuda:0",
                        heartbeat_seconds=settings.heartbeat_seconds)
    _heartbeat(settings, state="idle", current_job_id=None,
               loaded_model="/models/dreamshaper_8.safetensors", jobs_done=3)
    server, stop = start_server(settings)
    try:
        browser.get(server.url + "/workers")
        row = browser.find_element(By.CSS_SELECTOR, "#workers tbody tr").text
        assert "gpu-1" in row and "render-box (pid 4242)" in row and "cuda:0" in row
        assert "idle" in row and " dreamshaper_8 " in row and row.endswith(" 3")
        browser.execute_script("window.__sameDocument = true")
        # When the worker reports 4 jobs done, Then the open page says so, with no reload
        _heartbeat(settings, state="idle", current_job_id=None,
                   loaded_model="/models/dreamshaper_8.safetensors", jobs_done=4)
        wait_for(lambda: browser.find_element(By.CSS_SELECTOR, "#workers tbody tr")
                 .text.endswith(" 4"), "4 jobs done on the page", 10)
        assert browser.execute_script("return window.__sameDocument") is True
    finally:
        stop()
