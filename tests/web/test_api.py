"""``/api``: every JSON route, on SQLite and on a real PostgreSQL server.

One app per backend for the module: a sweep rendered in the server process by the fake
renderer (no model), then searched, opened, rerun, planned, submitted, canceled and retried
through the API, as a script would. The farm's broker is a real Redis (nothing consumes it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from sdfarm.config import Settings
from sdfarm.db.engine import dispose_all, session_factory
from sdfarm.db.workers import record_heartbeat, register_worker
from sdfarm.web.app import create_app
from tests.conftest import TEST_THREADS, deadline

JOB = """
name = "lighthouses"
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
negative_prompt = "blurry"
seeds = [1, 2]
steps = 4
width = 64
height = 64

[axes]
x = { cfg = [6, 8] }
"""
#: The same file with a typo in a key: planning stops at it with one line.
TYPO = JOB.replace("steps = 4", "stpes = 4")


@dataclass
class Site:
    client: TestClient
    settings: Settings
    sweep_id: int


def wait_done(client: TestClient, sweep_id: int, seconds: float = 60) -> dict:
    end = time.monotonic() + deadline(seconds)
    while True:
        sweep = client.get(f"/api/sweeps/{sweep_id}").json()
        if sweep["open"] == 0:
            return sweep
        assert time.monotonic() < end, f"sweep {sweep_id} not finished: {sweep['counts']}"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory, model_dir, tiny_model, redis_server):
    tmp = tmp_path_factory.mktemp(f"api-{request.param}")
    url = (f"sqlite:///{tmp / 'sdfarm.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_server").create_database())
    settings = Settings(database_url=url, output_dir=tmp / "outputs", model_dir=model_dir,
                        device="cpu", threads=TEST_THREADS, renderer="fake:0",
                        broker_url=redis_server.url)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        made = client.post("/api/sweeps", json={"job_file": JOB, "name": "light.toml",
                                                "where": "here"})
        assert made.status_code == 201, made.text
        sweep_id = made.json()["sweep_id"]
        wait_done(client, sweep_id)
        yield Site(client, settings, sweep_id)
    dispose_all()


def test_a_sweep_submitted_to_render_here_renders_in_the_server_and_lists_with_its_counts(site):
    listed = site.client.get("/api/sweeps").json()["sweeps"]
    mine = next(s for s in listed if s["id"] == site.sweep_id)
    assert mine["name"] == "lighthouses" and mine["total"] == 4
    assert mine["counts"]["done"] == 4 and mine["open"] == 0 and mine["eta_seconds"] == 0
    assert mine["images_per_minute"] > 0 and mine["has_axes"] is True

    one = site.client.get(f"/api/sweeps/{site.sweep_id}").json()
    assert one["job_file_text"] == JOB  # the pasted text, as a submit from disk records it
    assert one["job_file_path"] == "light.toml"
    assert [(a["slot"], a["param"], a["labels"]) for a in one["axes"]] == [
        ("x", "cfg", ["CFG: 6", "CFG: 8"])]
    assert one["executor"] == "local" and isinstance(one["plan_warnings"], list)
    assert site.client.get("/api/sweeps/999999").status_code == 404


def test_history_takes_the_cli_filters_as_query_parameters(site):
    found = site.client.get("/api/history", params={"prompt": "lighthouse", "cfg": "7-9",
                                                    "sweep": site.sweep_id}).json()
    assert sorted((j["cfg"], j["seed"]) for j in found["jobs"]) == [(8.0, 1), (8.0, 2)]
    first = found["jobs"][0]
    assert first["image_url"] == f"/files/image/{first['id']}"
    assert first["thumb_url"] == f"/files/thumb/{first['id']}"
    assert site.client.get(first["image_url"]).status_code == 200

    by_seed = site.client.get("/api/history?prompt=lighth*&seed=2&sweep="
                              f"{site.sweep_id}&limit=1").json()
    assert [j["seed"] for j in by_seed["jobs"]] == [2] and by_seed["limit"] == 1
    assert site.client.get("/api/history?prompt=-lighthouse&sweep="
                           f"{site.sweep_id}").json()["jobs"] == []
    statuses = site.client.get(f"/api/history?status=failed&status=done&sweep={site.sweep_id}"
                               "&size=64x64&since=7d&until=2100-01-01&limit=0").json()
    assert len(statuses["jobs"]) == 4 and statuses["limit"] is None


@pytest.mark.parametrize(("query", "message"), [
    ("cfg=6-x", "cfg: '6-x' is not a number or a range like 6-8"),
    ("steps=30-20", "steps: range '30-20' goes down; write it low-high"),
    ("size=512", "size: '512' is not a size like 512x768"),
    ("since=yesterday", "since: 'yesterday' is not a time ago like 7d"),
    ("cgf=7", "cgf: unknown filter; the filters are prompt, negative"),
    ("status=lost", "status: 'lost' is not one of queued"),
    ("seed=abc", "seed: 'abc' is not an integer"),
    ("limit=-1", "limit: -1 is below 0"),
    ("missing=maybe", "missing: 'maybe' is not true or false"),
    ("prompt=!!!", "--prompt '!!!': no words to search for"),
])
def test_a_bad_history_filter_is_a_422_naming_the_filter(site, query, message):
    answer = site.client.get(f"/api/history?{query}")
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith(message), answer.json()


def test_a_job_has_every_recorded_field_its_infotext_and_its_urls(site):
    job_id = site.client.get(f"/api/history?sweep={site.sweep_id}&seed=1&cfg=6").json()[
        "jobs"][0]["id"]
    job = site.client.get(f"/api/jobs/{job_id}").json()
    assert job["prompt"] == "a lighthouse at dusk" and job["negative_prompt"] == "blurry"
    assert job["sweep_id"] == site.sweep_id and job["sweep_name"] == "lighthouses"
    assert job["file_exists"] is True and job["status"] == "done"
    assert job["infotext"].startswith("a lighthouse at dusk\nNegative prompt: blurry\nSteps: 4, ")
    assert "CFG scale: 6" in job["infotext"] and "Seed: 1" in job["infotext"]
    assert job["thumb_url"] == f"/files/thumb/{job_id}" and job["page_url"] == f"/jobs/{job_id}"
    assert site.client.get("/api/jobs/999999").status_code == 404


def test_rerun_with_a_set_renders_a_new_job_linked_to_the_original(site):
    original = site.client.get(f"/api/history?sweep={site.sweep_id}&seed=2&cfg=6").json()[
        "jobs"][0]
    answer = site.client.post(f"/api/jobs/{original['id']}/rerun", json={"set": {"cfg": 7.5}})
    assert answer.status_code == 200, answer.text
    rerun = answer.json()
    assert rerun["changed"] == {"cfg": {"new": 7.5, "was": 6.0}}
    new = rerun["job"]
    assert new["cfg"] == 7.5 and new["seed"] == 2 and new["status"] == "done"
    assert new["rerun_of_job_id"] == original["id"]
    assert site.client.get(new["image_url"]).status_code == 200

    bad = site.client.post(f"/api/jobs/{original['id']}/rerun", json={"set": {"cfgg": 7}})
    assert bad.status_code == 422 and "cfgg: cannot be set; settable:" in bad.json()["detail"]


def test_plan_says_what_sdfarm_plan_says_and_records_nothing(site, tmp_path, monkeypatch):
    before = len(site.client.get("/api/sweeps").json()["sweeps"])
    plan = site.client.post("/api/sweeps/plan", json={"job_file": JOB, "name": "light.toml"})
    assert plan.status_code == 200, plan.text
    summary = plan.json()
    assert summary["images"] == 4 and summary["reused"] == 4 and summary["to_render"] == 0
    assert summary["lines"][0].startswith("lighthouses: model builtin:tiny")
    assert len(site.client.get("/api/sweeps").json()["sweeps"]) == before

    # A typo: the one line the CLI prints for the same file name, word for word.
    answer = site.client.post("/api/sweeps/plan", json={"job_file": TYPO, "name": "typo.toml"})
    assert answer.status_code == 422
    monkeypatch.chdir(tmp_path)
    (tmp_path / "typo.toml").write_text(TYPO, encoding="utf-8")
    from sdfarm.cli.main import cli

    env = {"SDFARM_DATABASE_URL": site.settings.database_url,
           "SDFARM_MODEL_DIR": str(site.settings.model_dir)}
    printed = CliRunner().invoke(cli, ["plan", "typo.toml"], env=env)
    assert printed.exit_code == 1
    assert printed.output.strip() == f"Error: {answer.json()['detail']}"
    assert answer.json()["detail"].startswith("typo.toml: stpes: unknown key")


def test_submit_to_the_farm_queues_then_cancel_and_retry(site):
    answer = site.client.post("/api/sweeps", json={
        "job_file": JOB.replace("seeds = [1, 2]", "seeds = [3, 4]"), "name": "farm.toml",
        "where": "farm", "priority": 5})
    assert answer.status_code == 201, answer.text
    sweep_id = answer.json()["sweep_id"]
    sweep = site.client.get(f"/api/sweeps/{sweep_id}").json()
    assert sweep["executor"] == "farm" and sweep["priority"] == 5
    assert sweep["counts"]["queued"] == 4

    canceled = site.client.post(f"/api/sweeps/{sweep_id}/cancel", json={}).json()
    assert canceled == {"sweep_id": sweep_id, "queued": 4, "running": 0}
    assert site.client.get(f"/api/sweeps/{sweep_id}").json()["counts"]["canceled"] == 4

    retried = site.client.post(f"/api/sweeps/{sweep_id}/retry", json={}).json()
    assert retried == {"sweep_id": sweep_id, "requeued": 4}
    assert site.client.get(f"/api/sweeps/{sweep_id}").json()["counts"]["queued"] == 4
    site.client.post(f"/api/sweeps/{sweep_id}/cancel", json={})  # leave nothing queued
    assert site.client.post("/api/sweeps/999999/cancel", json={}).status_code == 404


def test_canceling_a_sweep_rendering_here_stops_it(site):
    slow = JOB.replace("seeds = [1, 2]", 'seeds = "10-40"').replace("lighthouses", "slow")
    # Its own server, whose renders take 0.2 s an image: long enough to cancel halfway.
    with TestClient(create_app(replace(site.settings, renderer="fake:0.2")),
                    base_url="http://127.0.0.1") as client:
        sweep_id = client.post("/api/sweeps", json={"job_file": slow, "where": "here"}
                               ).json()["sweep_id"]
        end = time.monotonic() + deadline(30)
        while client.get(f"/api/sweeps/{sweep_id}").json()["counts"]["done"] < 1:
            assert time.monotonic() < end, "the local render did not start"
            time.sleep(0.05)
        assert client.get("/api/workers").json()["rendering_here"] == [sweep_id]
        assert client.post(f"/api/sweeps/{sweep_id}/cancel", json={}).status_code == 200
        sweep = wait_done(client, sweep_id)
        assert sweep["counts"]["canceled"] > 0, sweep["counts"]
        assert sweep["counts"]["done"] + sweep["counts"]["canceled"] == 62, sweep["counts"]
        end = time.monotonic() + deadline(10)
        while client.get("/api/workers").json()["rendering_here"]:
            assert time.monotonic() < end, "the local thread did not finish the canceled sweep"
            time.sleep(0.05)


def test_workers_are_listed_as_sdfarm_status_shows_them(site):
    factory = session_factory(site.settings.database_url)
    with factory.begin() as session:
        register_worker(session, "gpu-1", host="box", pid=42, device="cuda:0",
                        heartbeat_seconds=site.settings.heartbeat_seconds)
    with factory.begin() as session:
        record_heartbeat(session, "gpu-1", state="idle", current_job_id=None,
                         loaded_model="builtin:tiny", jobs_done=3)
    workers = site.client.get("/api/workers").json()["workers"]
    gpu = next(w for w in workers if w["name"] == "gpu-1")
    assert gpu["host"] == "box" and gpu["device"] == "cuda:0" and gpu["state"] == "idle"
    assert gpu["loaded_model"] == "builtin:tiny" and gpu["jobs_done"] == 3
    assert gpu["current_job_id"] is None and gpu["seconds_since_heartbeat"] >= 0


def test_a_post_larger_than_the_limit_is_a_413(site):
    huge = "# " + "x" * (1100 * 1024) + "\n" + JOB
    answer = site.client.post("/api/sweeps/plan", json={"job_file": huge})
    assert answer.status_code == 413
    assert answer.json()["detail"] == "request too large: a job file may be at most 1024 KiB"


def test_the_openapi_page_documents_every_route_and_the_history_filters(site):
    schema = site.client.get("/openapi.json").json()
    assert {"/api/history", "/api/jobs/{job_id}", "/api/jobs/{job_id}/rerun", "/api/sweeps",
            "/api/sweeps/plan", "/api/sweeps/{sweep_id}", "/api/sweeps/{sweep_id}/cancel",
            "/api/sweeps/{sweep_id}/retry", "/api/workers"} <= set(schema["paths"])
    names = {p["name"] for p in schema["paths"]["/api/history"]["get"]["parameters"]}
    assert {"prompt", "cfg", "steps", "seed", "since", "until", "status", "limit"} <= names
    assert site.client.get("/docs").status_code == 200
