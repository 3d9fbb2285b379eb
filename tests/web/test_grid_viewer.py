"""The grid viewer in a real headless Chromium: axes chosen, swapped and shared by URL, cells
that are the right jobs, a grid that fills in while its sweep renders, escaped labels, and a
1,000-cell sweep. Sweeps are recorded and rendered here with the fake renderer (seed-determined
noise, no model) into one server's database for the module."""

from __future__ import annotations

import dataclasses
import io
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select
from sqlalchemy import update

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus
from sdfarm.usecases.render import (
    RecordedSweep,
    load_plan,
    record_for_local_render,
    render_recorded,
)
from tests.conftest import TEST_THREADS, deadline, write_job
from tests.web.conftest import WebServer, start_server, wait_for

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

#: 2 cfg x 3 steps x 2 seeds: two pages (one per seed) of 6 cells in the file's own layout.
CFG_STEPS = """
name = "cfg-steps"
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
width = 64
height = 64
seeds = [42, 43]
[axes]
x = { cfg = [4, 7.5] }
y = { steps = [10, 20, 30] }
"""

# Every cell as (column label, row label, page title, job id), read in one script call.
CELLS_JS = """
return [...document.querySelectorAll('section.grid-page')].flatMap(section => {
  const table = section.querySelector('table');
  const title = section.querySelector('h2') ? section.querySelector('h2').textContent : '';
  const columns = [...table.tHead.rows[0].cells].map(th => th.textContent);
  return [...section.querySelectorAll('td[data-job]')].map(td => [
    columns[td.cellIndex], td.parentElement.cells[0].textContent, title,
    Number(td.querySelector('a').getAttribute('href').split('/').pop())]);
});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, model_dir) -> WebServer:
    root = tmp_path_factory.mktemp("grid")
    settings = Settings(database_url=f"sqlite:///{root / 'sdfarm.db'}",
                        output_dir=root / "outputs", model_dir=model_dir, device="cpu",
                        threads=TEST_THREADS, renderer="fake:0")
    web, stop = start_server(settings)
    yield web
    stop()


def record_sweep(settings: Settings, body: str, *, render: bool = True) -> RecordedSweep:
    """Record the job file ``body`` for a local render, and render it unless told not to."""
    folder = Path(settings.output_dir).parent
    name = f"job-{len(list(folder.glob('job-*.toml')))}.toml"
    recorded = record_for_local_render(settings, load_plan(settings, write_job(folder, body, name)))
    if render:
        render_recorded(settings, recorded)
    return recorded


def job_values(settings: Settings, job_id: int) -> tuple[str, str, str]:
    """A job's cfg, steps and seed, labelled as the parameter table labels them."""
    with session_factory(settings.database_url)() as session:
        job = session.get(Job, job_id)
        return f"CFG: {job.cfg:g}", f"Steps: {job.steps}", f"Seed: {job.seed}"


def grid_url(server: WebServer, sweep_id: int, query: str = "") -> str:
    return f"{server.url}/sweeps/{sweep_id}/grid" + (f"?{query}" if query else "")


def save_screenshot(browser, name: str) -> None:
    """``docs/screenshots/NAME.png`` when SDFARM_SCREENSHOTS is set (the README's pictures;
    a plain test run leaves the tree alone): cut to the grid's width, in 128 colours."""
    if not os.environ.get("SDFARM_SCREENSHOTS"):
        return
    from PIL import Image

    right = browser.execute_script(
        "return Math.max(...[...document.querySelectorAll('table.grid, .grid-axes > *')]"
        ".map(e => e.getBoundingClientRect().right))")
    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    scale = image.width / browser.execute_script("return window.innerWidth")
    image = image.crop((0, 0, min(image.width, int((right + 16) * scale)), image.height))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    image.quantize(128).save(SCREENSHOTS / f"{name}.png", optimize=True)


def test_swapping_x_and_y_keeps_every_cell_under_its_own_labels(server, browser):
    sweep = record_sweep(server.settings, CFG_STEPS)
    browser.get(grid_url(server, sweep.sweep_id))
    cells = browser.execute_script(CELLS_JS)
    assert len(cells) == 12
    assert {(c, r, t) for c, r, t, _ in cells} >= {("CFG: 7.5", "Steps: 20", "Seed: 43")}
    for column, row, title, job_id in cells:
        assert job_values(server.settings, job_id) == (column, row, title)

    browser.find_element(By.ID, "swap-xy").click()
    wait_for(lambda: "x=steps" in browser.current_url, "the swapped axes in the URL")
    assert "y=cfg" in browser.current_url
    swapped = browser.execute_script(CELLS_JS)
    assert {c for c, *_ in swapped} == {"Steps: 10", "Steps: 20", "Steps: 30"}
    # The cell under column "Steps: 20" and row "CFG: 7.5" on the seed-43 page is that job.
    (job_id,) = [j for c, r, t, j in swapped if (c, r, t) == ("Steps: 20", "CFG: 7.5", "Seed: 43")]
    assert job_values(server.settings, job_id) == ("CFG: 7.5", "Steps: 20", "Seed: 43")
    for column, row, title, job_id in swapped:
        assert job_values(server.settings, job_id) == (row, column, title)
    cell = browser.find_element(By.CSS_SELECTOR, f'td[data-job="{job_id}"]')
    img = cell.find_element(By.TAG_NAME, "img")
    assert (img.get_attribute("loading"), img.get_attribute("src")) == \
        ("lazy", f"{server.url}/files/thumb/{job_id}")
    wait_for(lambda: browser.execute_script(
        "return [...document.querySelectorAll('section.grid-page')[0].querySelectorAll('img')]"
        ".every(i => i.complete && i.naturalWidth > 0)"), "the first page's thumbnails shown")
    save_screenshot(browser, "grid")

    # Clicking a done cell zooms it to its full image, with a link to its job; Esc closes.
    cell.click()
    zoom = browser.find_element(By.ID, "zoom")
    wait_for(zoom.is_displayed, "the zoomed cell")
    assert browser.find_element(By.ID, "zoom-image").get_attribute("src") == \
        f"{server.url}/files/image/{job_id}"
    assert browser.find_element(By.ID, "zoom-link").get_attribute("href") == \
        f"{server.url}/jobs/{job_id}"
    browser.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    wait_for(lambda: not zoom.is_displayed(), "the zoom closed by Esc")


def test_an_axis_not_in_the_file_goes_on_x_and_what_is_left_splits_pages(server, browser):
    sweep = record_sweep(server.settings, CFG_STEPS)
    browser.get(grid_url(server, sweep.sweep_id))
    Select(browser.find_element(By.ID, "axis-x")).select_by_value("seed")
    wait_for(lambda: "x=seed" in browser.current_url, "the chosen axis in the URL")
    cells = browser.execute_script(CELLS_JS)
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2.grid-fixed")]
    assert titles == ["CFG: 4", "CFG: 7.5"]  # cfg left the columns: one page per value
    assert {c for c, *_ in cells} == {"Seed: 42", "Seed: 43"} and len(cells) == 12
    for column, row, title, job_id in cells:
        assert job_values(server.settings, job_id) == (title, row, column)

    # Seed on pages, as a shared URL asks: a page per seed, cfg back on X.
    browser.get(grid_url(server, sweep.sweep_id, "x=cfg&y=steps&page=seed"))
    assert Select(browser.find_element(By.ID, "axis-page")).first_selected_option.text \
        .startswith("Seed")
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, "h2.grid-fixed")]
    assert titles == ["Seed: 42", "Seed: 43"]


def test_a_bad_axis_is_a_400_naming_the_allowed_ones(server):
    sweep = record_sweep(server.settings, CFG_STEPS, render=False)
    url = f"{server.url}/api/sweeps/{sweep.sweep_id}/grid"
    answer = httpx.get(url, params={"x": "colour"}, timeout=deadline(10))
    assert answer.status_code == 400
    assert answer.json() == {"detail": "'colour' is not an axis of this sweep; allowed: cfg, "
                                       "steps, seed"}
    assert httpx.get(url, params={"x": "cfg", "y": "cfg"}, timeout=deadline(10)).status_code \
        == 400
    good = httpx.get(url, params={"x": "steps", "y": "seed", "page": ""},
                     timeout=deadline(10)).json()
    assert (good["columns"], good["rows"]) == (["Steps: 10", "Steps: 20", "Steps: 30"],
                                               ["Seed: 42", "Seed: 43"])
    assert [p["fixed"] for p in good["pages"]] == [["CFG: 4"], ["CFG: 7.5"]]
    assert sum(len(p["cells"]) for p in good["pages"]) == 12


def test_a_script_in_a_prompt_is_shown_as_text_not_run(server, browser):
    body = CFG_STEPS.replace('"a lighthouse at dusk"',
                             '"{a lake|<script>window.pwned=1</script> a sea}"')
    sweep = record_sweep(server.settings, body.replace("[42, 43]", "[42]"), render=False)
    browser.get(grid_url(server, sweep.sweep_id, "x=prompt&y=cfg&page=steps"))
    labels = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "th.col-label")]
    assert "Prompt: <script>window.pwned=1</script> a sea" in labels
    assert browser.execute_script("return window.pwned === undefined")


def test_a_rendering_sweep_fills_in_without_a_reload(server, browser):
    body = CFG_STEPS.replace("[42, 43]", "[42]").replace("[10, 20, 30]", "[10, 20]")
    # A prompt of its own: the module's other sweeps' images would be reused, done at once.
    sweep = record_sweep(server.settings, body.replace("lighthouse", "windmill"), render=False)
    browser.get(grid_url(server, sweep.sweep_id))
    statuses = browser.find_elements(By.CSS_SELECTOR, "td[data-job] .status")
    assert [s.text for s in statuses] == ["queued"] * 4
    browser.execute_script("window.sameDocument = true")
    slow = dataclasses.replace(server.settings, renderer="fake:0.6")
    render = threading.Thread(target=render_recorded, args=(slow, sweep))
    render.start()
    try:
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "td[data-job] img")) == 4,
                 "every cell turned into its thumbnail", 20)
    finally:
        render.join(deadline(30))
    assert browser.execute_script("return window.sameDocument") is True  # no reload
    wait_for(lambda: browser.find_element(By.ID, "grid").get_attribute("data-finished")
             == "true", "polling stopped once the sweep finished")


def test_a_thousand_cell_sweep_loads_with_lazy_thumbnails(server, browser):
    body = CFG_STEPS.replace("[42, 43]", "[42]").replace("[4, 7.5]", '"1-40 (+1)"') \
        .replace("[10, 20, 30]", '"1-25 (+1)"')
    sweep = record_sweep(server.settings, body, render=False)
    # Every job done without the minute 1,000 renders take: the page must not wait on images.
    with session_factory(server.settings.database_url).begin() as session:
        session.execute(update(Job).where(Job.sweep_id == sweep.sweep_id)
                        .values(status=JobStatus.done))
    started = time.monotonic()
    browser.get(grid_url(server, sweep.sweep_id))
    loaded = time.monotonic() - started
    images = browser.execute_script(
        "return [...document.querySelectorAll('td[data-job] img')].map(i => i.loading)")
    assert images == ["lazy"] * 1000
    assert len(browser.find_elements(By.CSS_SELECTOR, "th.col-label")) == 40
    # Lazy: the browser asked for the thumbnails near the window, not the 1,000 of them.
    asked = browser.execute_script("return performance.getEntriesByType('resource')"
                                   ".filter(e => e.name.includes('/files/thumb/')).length")
    assert 0 < asked < 500
    assert loaded < deadline(5), f"the 1,000-cell page took {loaded:.1f} s"
