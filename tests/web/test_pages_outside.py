"""An image recorded outside the output folder (``sdfarm index`` of another folder records
images where it found them) is found on the page but not served: the page says so instead of
showing a broken image."""

from __future__ import annotations

import shutil

from fastapi.testclient import TestClient
from sqlalchemy import select

from sdfarm.db.engine import dispose_all, session_factory
from sdfarm.db.models import Job
from sdfarm.web.app import create_app
from tests.web.conftest import job_file, page_settings_for, render_text


def test_an_image_outside_the_output_folder_is_listed_with_a_note_and_not_served(tmp_path):
    settings = page_settings_for(tmp_path)
    render_text(settings, job_file("elsewhere", "a lighthouse at dusk", seeds="1-2"))
    elsewhere = tmp_path / "a1111-outputs"
    elsewhere.mkdir()
    with session_factory(settings.database_url).begin() as session:
        outside, inside = session.scalars(select(Job).order_by(Job.id)).all()
        moved = elsewhere / "00001-1.png"
        shutil.copy(outside.output_path, moved)
        outside.output_path = str(moved)  # as `sdfarm index a1111-outputs/` records it
        outside_id, inside_id = outside.id, inside.id
    client = TestClient(create_app(settings), base_url="http://127.0.0.1")
    try:
        history = client.get("/history?prompt=lighthouse").text
        assert f'src="/files/thumb/{inside_id}"' in history
        assert f'src="/files/thumb/{outside_id}"' not in history
        assert "not under the output folder" in history
        job = client.get(f"/jobs/{outside_id}").text
        assert 'id="outside"' in job and str(moved) in job and 'id="job-image"' not in job
        assert client.get(f"/files/image/{outside_id}").status_code == 404
        assert 'id="job-image"' in client.get(f"/jobs/{inside_id}").text
    finally:
        dispose_all()
