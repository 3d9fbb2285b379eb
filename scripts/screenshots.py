"""Take the README's screenshots of the web page: a throwaway database and output folder with a
few sweeps (the fake renderer: no model needed), ``sdfarm serve``'s app, and the same headless
Chromium the browser tests drive. Writes small palette PNGs to docs/screenshots/.

    PYTHONPATH=. .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.web.conftest import (  # noqa: E402  (the repository root first)
    job_file,
    page_settings_for,
    render_text,
    start_chromium,
    start_server,
    wait_for,
)

#: Width of the browser window, and so of each screenshot; README shows them at this size.
WIDTH, HEIGHT = 1000, 720
#: The grid viewer's screenshot is its own helper's (grid.png).
PAGES = {
    "sweeps": "/",
    "sweep": "/sweeps/1",
    "history": "/history?prompt=lighthouse&cfg=6-9",
    "job": "/jobs/2",
    "workers": "/workers",
}


def make_data(settings) -> None:
    from sdfarm.db.engine import session_factory
    from sdfarm.db.workers import record_heartbeat, register_worker
    from sdfarm.usecases.render import record_for_local_render
    from sdfarm.usecases.submit_text import plan_text

    render_text(settings, job_file("lighthouse-cfg", "a lighthouse at dusk, oil painting",
                                   seeds="1-4", cfg="5, 7, 9", size=256))
    render_text(settings, job_file("harbour", "a quiet harbour at night", seeds="1-6",
                                   negative="blurry"))
    queued = record_for_local_render(settings, plan_text(
        settings, job_file("barns-steps", "a red barn in the snow", seeds="1-8", cfg="6, 8"),
        "barns.toml"))
    with session_factory(settings.database_url).begin() as session:
        for name, job, done in (("gpu-1", None, 18), ("gpu-2", queued.sweep_id, 7)):
            register_worker(session, name, host="render-box", pid=4242 if job else 4243,
                            device="cuda:0" if job else "cuda:1", heartbeat_seconds=30)
    with session_factory(settings.database_url).begin() as session:
        from sdfarm.db.sweeps import sweep_jobs

        first = sweep_jobs(session, queued.sweep_id)[0].id
        record_heartbeat(session, "gpu-1", state="idle", current_job_id=None,
                         loaded_model="/models/dreamshaper_8.safetensors", jobs_done=18)
        record_heartbeat(session, "gpu-2", state="rendering", current_job_id=first,
                         loaded_model="/models/dreamshaper_8.safetensors", jobs_done=7)


def save(png: bytes, path: Path) -> int:
    """The screenshot as an optimized palette PNG (a page is flat colours and text)."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        settings = page_settings_for(Path(folder))
        make_data(settings)
        server, stop = start_server(settings)
        browser = start_chromium(WIDTH, HEIGHT)
        try:
            for name, path in PAGES.items():
                browser.get(server.url + path)
                wait_for(lambda: browser.execute_script(
                    "return [...document.images].every(i => i.complete)"), "images", 20)
                print(f"{name}.png: {save(browser.get_screenshot_as_png(), out / f'{name}.png')}"
                      " bytes")
            browser.get(server.url + "/submit")
            text = job_file("lighthouse-cfg", "a lighthouse at dusk, oil painting",
                            seeds="1-4", cfg="5, 7, 9")
            browser.execute_script("document.getElementById('text').value = arguments[0]", text)
            browser.find_element("id", "plan").click()
            wait_for(lambda: browser.find_element("id", "plan-lines"), "the plan")
            browser.execute_script("document.getElementById('plan-result').scrollIntoView()")
            print(f"submit.png: {save(browser.get_screenshot_as_png(), out / 'submit.png')} bytes")
        finally:
            browser.quit()
            stop()


if __name__ == "__main__":
    main()
