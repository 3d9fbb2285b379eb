"""What keeps the page safe: image routes serve only recorded images under the output folder,
the token beyond localhost, the Host check, CSRF on every POST, and a server that refuses to
listen beyond localhost without a token."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdfarm.db.models import JobStatus
from sdfarm.web.app import create_app
from tests.conftest import deadline
from tests.integration.history_support import add_jobs

LOCAL = "http://127.0.0.1"


def image(path, size=(32, 32)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (200, 30, 30)).save(path)
    return path


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url=LOCAL) as c:
        yield c


def test_only_a_done_jobs_recorded_image_under_the_output_folder_is_served(
        settings, client, tmp_path):
    out = settings.output_dir
    secret = image(tmp_path / "secret.png")  # beside the output folder, not in it
    (out / "s").mkdir(parents=True)
    (out / "s" / "link.png").symlink_to(secret)  # a symlink pointing out
    (out / "s" / "dir.png").symlink_to(tmp_path)  # to a folder
    good = image(out / "s" / "good.png")
    ids = add_jobs(settings.database_url, [
        {"output_path": str(good)},
        {"output_path": "/etc/passwd"},  # a path tampered with in the database
        {"output_path": str(out / ".." / "secret.png")},  # climbs out
        {"output_path": str(out / "s" / "link.png")},
        {"output_path": str(out / "s" / "dir.png")},
        {"output_path": "../secret.png"},  # relative
        {"output_path": str(out / "s" / "gone.png")},  # missing
        {"output_path": str(good), "status": JobStatus.failed},  # not done
        {"output_path": str(good), "status": JobStatus.queued},
        {"output_path": ""},
    ])
    good_id, *bad_ids = ids
    for kind in ("image", "thumb"):
        answer = client.get(f"/files/{kind}/{good_id}")
        assert answer.status_code == 200
        assert "max-age" in answer.headers["cache-control"]
        for job_id in bad_ids:
            assert client.get(f"/files/{kind}/{job_id}").status_code == 404, (kind, job_id)
        for text in ("abc", "1.5", "-1", f"{good_id}.png", " 1", "1e3", "99999999",
                     "9" * 40, "..%2F..%2Fetc%2Fpasswd", "%2e%2e", "../../etc/passwd",
                     "%2Fetc%2Fpasswd", "١"):  # an Arabic-Indic digit is a digit to str
            assert client.get(f"/files/{kind}/{text}").status_code == 404, (kind, text)
    assert client.get("/files/image/../../etc/passwd").status_code == 404
    # The API offers no URL the file routes would refuse (an image outside the folder).
    assert client.get(f"/api/jobs/{good_id}").json()["image_url"] == f"/files/image/{good_id}"
    for job_id in (ids[1], ids[2], ids[5], ids[7]):
        assert client.get(f"/api/jobs/{job_id}").json()["thumb_url"] is None, job_id
    assert client.get("/files/etc/passwd").status_code == 404


def test_without_the_token_every_request_is_401_and_with_it_answered(settings):
    app = create_app(settings, token="s3cret-token")
    with TestClient(app, base_url=LOCAL) as c:
        for path in ("/api/sweeps", "/api/history", "/api/workers", "/files/image/1",
                     "/api/jobs/1", "/docs", "/openapi.json"):
            answer = c.get(path)
            assert answer.status_code == 401, path
        assert c.post("/api/sweeps/plan", json={"job_file": ""}).status_code == 401
        assert c.get("/api/sweeps", headers={"X-Sdfarm-Token": "wrong"}).status_code == 401
        assert c.get("/api/sweeps", headers={"X-Sdfarm-Token": "s3cret-token"}
                     ).status_code == 200
        c.cookies.set("sdfarm_token", "s3cret-token")
        assert c.get("/api/sweeps").status_code == 200


def test_another_host_name_is_refused_on_localhost(client):
    # DNS rebinding: a page on evil.example whose name now points at 127.0.0.1.
    answer = client.get("/api/sweeps", headers={"Host": "evil.example:8188"})
    assert answer.status_code == 400
    assert client.get("/api/sweeps", headers={"Host": "localhost:8188"}).status_code == 200


def test_a_post_from_another_site_or_a_form_without_the_csrf_token_is_403(settings, client):
    [job_id] = add_jobs(settings.database_url, [{"status": JobStatus.queued}])
    sweep_id = client.get(f"/api/jobs/{job_id}").json()["sweep_id"]
    cancel = f"/api/sweeps/{sweep_id}/cancel"

    # What a cross-site <form> can send: urlencoded, no CSRF token.
    form = client.post(cancel, data={"x": "1"})
    assert form.status_code == 403 and "CSRF" in form.json()["detail"]
    forged = client.post(cancel, data={"csrf_token": "abc.def"},
                         headers={"Cookie": "sdfarm_csrf=abc.def"})
    assert forged.status_code == 403  # a cookie and field that match but were not signed by us
    text = client.post(cancel, content=b"{}", headers={"Content-Type": "text/plain"})
    assert text.status_code == 403
    # JSON with another Origin (a script on another site, were CORS ever answered).
    cross = client.post(cancel, json={}, headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    assert client.get(f"/api/sweeps/{sweep_id}").json()["counts"]["queued"] == 1

    same = client.post(cancel, json={}, headers={"Origin": LOCAL})
    assert same.status_code == 200 and same.json()["queued"] == 1


def test_a_script_prompt_comes_back_as_data_not_markup(settings, client):
    prompt = '<script>document.title="pwned"</script> a lighthouse'
    [job_id] = add_jobs(settings.database_url, [{"prompt": prompt}])
    answer = client.get(f"/api/jobs/{job_id}")
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["prompt"] == prompt and answer.json()["infotext"].startswith(prompt)
    found = client.get("/api/history", params={"prompt": "lighthouse"}).json()["jobs"]
    assert [j["prompt"] for j in found] == [prompt]


def _serve(env, *args):
    return subprocess.run([sys.executable, "-m", "sdfarm.cli", "serve", *args], env=env,
                          capture_output=True, text=True, timeout=deadline(60))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "my-box.local"])
def test_serve_refuses_to_listen_beyond_localhost_without_a_token(cli_env, host):
    env = {k: v for k, v in cli_env.items() if k != "SDFARM_WEB_TOKEN"}
    done = _serve(env, "--host", host, "--port", "1")
    assert done.returncode == 1
    assert done.stderr == (f"Error: refusing to listen on {host}: beyond localhost the page needs "
                           "a token; set SDFARM_WEB_TOKEN (e.g. to the output of `openssl rand "
                           "-hex 16`) and log in with it\n")
    assert done.stdout == ""
    if host == "0.0.0.0":
        empty = _serve({**env, "SDFARM_WEB_TOKEN": ""}, "--host", host, "--port", "1")
        assert empty.returncode == 1 and "refusing" in empty.stderr  # empty is no token


def test_uploads_over_the_limit_are_refused_before_they_are_read(client):
    big = b"x" * (2 * 1024 * 1024)
    answer = client.post("/api/sweeps/plan", content=big,
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 413

    def chunks():  # no Content-Length: the body is read up to the limit, then refused
        for _ in range(40):
            yield b"x" * 65536

    streamed = client.post("/api/sweeps", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
