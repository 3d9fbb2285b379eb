"""``sdfarm serve`` as a user starts it: a process that prints its URL, answers, asks for the
token when one is set, and stops on SIGTERM with a sweep it was rendering recorded as
interrupted (so ``sdfarm render`` of the same file resumes it)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from sqlalchemy import select

from sdfarm.db.engine import session_factory
from sdfarm.db.models import Job, JobStatus
from tests.conftest import deadline
from tests.servers import free_port

JOB = """
name = "long"
model = "builtin:tiny"
prompt = "a lighthouse"
seeds = "1-40"
steps = 4
width = 64
height = 64
"""


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "serve", "--port", str(port),
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    line = proc.stdout.readline()
    url = f"http://127.0.0.1:{port}/"
    assert line.startswith(f"sdfarm serve: {url} "), (line, proc.poll())
    end = time.monotonic() + deadline(30)
    while True:  # the URL is printed just before uvicorn binds
        try:
            urllib.request.urlopen(url + "login", timeout=deadline(5)).close()
            return proc, url
        except (urllib.error.URLError, ConnectionError):
            assert proc.poll() is None and time.monotonic() < end, proc.stderr.read()
            time.sleep(0.05)


def _call(url: str, data: dict | None = None, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=None if data is None else json.dumps(data).encode(),
        headers={"Content-Type": "application/json", **({"X-Sdfarm-Token": token} if token
                                                          else {})})
    try:
        with urllib.request.urlopen(request, timeout=deadline(10)) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=deadline(30))
    # uvicorn shuts down gracefully (lifespan included), then dies of the signal it caught.
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err, err
    return out, err


def test_serve_prints_its_url_answers_and_stops_on_sigterm(cli_env):
    proc, url = _start(cli_env)
    try:
        assert _call(url + "api/sweeps") == (200, {"sweeps": []})
        assert _call(url + "api/history?cfg=x")[0] == 422
    finally:
        _stop(proc)


def test_serve_with_a_token_asks_for_it(cli_env):
    proc, url = _start({**cli_env, "SDFARM_WEB_TOKEN": "t0ken"}, "--host", "127.0.0.1")
    try:
        assert _call(url + "api/sweeps")[0] == 401
        assert _call(url + "api/sweeps", token="t0ken") == (200, {"sweeps": []})
    finally:
        _stop(proc)


def test_a_sweep_rendering_in_the_server_is_recorded_interrupted_when_it_stops(
        cli_env, settings, tiny_model):
    proc, url = _start({**cli_env, "SDFARM_RENDERER": "fake:0.2"})
    try:
        status, made = _call(url + "api/sweeps", {"job_file": JOB, "where": "here"})
        assert status == 201, made
        end = time.monotonic() + deadline(60)
        while _call(url + f"api/sweeps/{made['sweep_id']}")[1]["counts"]["done"] < 1:
            assert time.monotonic() < end, "the server did not start rendering"
            time.sleep(0.05)
    finally:
        _stop(proc)
    with session_factory(settings.database_url)() as session:
        jobs = session.scalars(select(Job)).all()
    left = [j for j in jobs if j.status != JobStatus.done]
    assert left and all(j.status == JobStatus.canceled for j in left)
    assert all("sdfarm serve stopped" in j.error for j in left)


def test_serve_does_not_print_the_database_password(cli_env):
    env = {**cli_env,
           "SDFARM_DATABASE_URL": "postgresql+psycopg://farm:hunter2@127.0.0.1:1/sdfarm"}
    proc = subprocess.Popen([sys.executable, "-m", "sdfarm.cli", "serve", "--port",
                             str(free_port())], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
    finally:
        proc.kill()
        proc.communicate(timeout=deadline(30))
    assert line.startswith("sdfarm serve: http://127.0.0.1:"), line
    assert "farm:***@127.0.0.1:1/sdfarm" in line and "hunter2" not in line
