"""``/api/sweeps/{id}/grid``: the grid viewer's JSON, on SQLite and on a real PostgreSQL
server, as a script reads it: the file's own layout by default, any varying parameter on X, Y
or pages, cells with their job, status and image URLs, and one-line errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from sdfarm.config import Settings
from sdfarm.db.engine import dispose_all, session_factory
from sdfarm.db.models import Job
from sdfarm.usecases.render import load_plan, record_for_local_render, render_recorded
from sdfarm.web.app import create_app
from tests.conftest import TEST_THREADS, write_job

#: 2 cfg x 2 samplers x 2 seeds, the samplers on z: two z pages of two seeds each.
JOB = """
name = "harbour"
model = "builtin:tiny"
prompt = "a harbour at night"
seeds = [5, 6]
steps = 4
width = 32
height = 32
[axes]
x = { cfg = [3, 9] }
z = { sampler = ["Euler a", "DDIM"] }
"""


@dataclass
class Site:
    client: TestClient
    settings: Settings
    sweep_id: int

    def grid(self, **query: str):
        return self.client.get(f"/api/sweeps/{self.sweep_id}/grid", params=query)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory, model_dir):
    tmp = tmp_path_factory.mktemp(f"grid-api-{request.param}")
    url = (f"sqlite:///{tmp / 'sdfarm.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_server").create_database())
    settings = Settings(database_url=url, output_dir=tmp / "outputs", model_dir=model_dir,
                        device="cpu", threads=TEST_THREADS, renderer="fake:0")
    recorded = record_for_local_render(settings, load_plan(settings, write_job(tmp, JOB)))
    render_recorded(settings, recorded)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield Site(client, settings, recorded.sweep_id)
    dispose_all()


def specs_of(site: Site, answer: dict) -> list[tuple[str, str, tuple[str, ...], int, int]]:
    """Each cell as (column label, row label, page's fixed labels, its job's seed, job id)."""
    cells = []
    with session_factory(site.settings.database_url)() as session:
        for page in answer["pages"]:
            for cell in page["cells"]:
                job = session.get(Job, cell["job_id"])
                cells.append((answer["columns"][cell["column"]], answer["rows"][cell["row"]],
                              tuple(page["fixed"]), job.seed, job.id))
    return cells


def test_by_default_the_grid_is_laid_out_as_the_job_file_says(site):
    answer = site.grid().json()
    assert (answer["x"], answer["y"], answer["page"]) == ("cfg", None, "sampler")
    assert [(a["name"], a["slot"], a["title"]) for a in answer["axes"]] == [
        ("cfg", "x", "CFG"), ("sampler", "z", "Sampler"), ("seed", None, "Seed")]
    assert answer["columns"] == ["CFG: 3", "CFG: 9"] and answer["rows"] == [""]
    # The sampler on pages, and the seed (on no axis) splitting them further.
    assert [p["fixed"] for p in answer["pages"]] == [
        ["Sampler: Euler a", "Seed: 5"], ["Sampler: Euler a", "Seed: 6"],
        ["Sampler: DDIM", "Seed: 5"], ["Sampler: DDIM", "Seed: 6"]]
    assert answer["shared"] == ["Model: builtin:tiny", "Prompt: a harbour at night"]
    assert answer["finished"] is True and answer["name"] == "harbour"
    for column, _, fixed, seed, _ in specs_of(site, answer):
        assert f"Seed: {seed}" in fixed
    cell = answer["pages"][0]["cells"][0]
    assert cell["status"] == "done"
    assert (cell["thumb"], cell["image"]) == (f"/files/thumb/{cell['job_id']}",
                                              f"/files/image/{cell['job_id']}")
    assert site.client.get(cell["thumb"]).status_code == 200


def test_any_varying_parameter_goes_on_any_axis_and_no_cell_is_shared(site):
    answer = site.grid(x="seed", y="cfg", page="").json()
    assert answer["columns"] == ["Seed: 5", "Seed: 6"] and answer["rows"] == ["CFG: 3", "CFG: 9"]
    assert [p["fixed"] for p in answer["pages"]] == [["Sampler: Euler a"], ["Sampler: DDIM"]]
    cells = specs_of(site, answer)
    assert len(cells) == len({job_id for *_, job_id in cells}) == 8
    assert all(column == f"Seed: {seed}" for column, _, _, seed, _ in cells)
    nothing = site.grid(x="", y="", page="").json()
    assert len(nothing["pages"]) == 8 and nothing["columns"] == [""]


def test_a_bad_axis_is_a_400_and_an_unknown_sweep_a_404(site):
    answer = site.grid(y="colour")
    assert answer.status_code == 400
    assert answer.json()["detail"] == ("'colour' is not an axis of this sweep; allowed: cfg, "
                                       "sampler, seed")
    assert site.grid(x="seed", page="seed").status_code == 400
    missing = site.client.get("/api/sweeps/999999/grid")
    assert missing.status_code == 404 and "no sweep 999999" in missing.json()["detail"]
    assert site.client.get("/sweeps/999999/grid").status_code == 404
