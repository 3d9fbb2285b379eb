"""Thumbnails: a ~256 px WebP made on the first request, kept beside the output folder, made
again when the image is newer; many asked at once (a grid page) all made whole."""

from __future__ import annotations

import io
import os
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sdfarm.web.app import create_app
from sdfarm.web.thumbnails import thumb_path, thumbs_folder
from tests.integration.history_support import add_jobs


def image(path, size, color=(10, 120, 200), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as c:
        yield c


def test_a_thumbnail_is_a_256_px_webp_made_once_and_kept_beside_the_output_folder(
        settings, client):
    out = settings.output_dir
    wide, tall, small = (image(out / "s" / "wide.png", (1024, 512)),
                         image(out / "s" / "tall.png", (384, 768)),
                         image(out / "s" / "small.png", (64, 48), mode="RGBA"))
    ids = add_jobs(settings.database_url, [{"output_path": str(p)} for p in (wide, tall, small)])

    for job_id, expected in zip(ids, [(256, 128), (128, 256), (64, 48)], strict=True):
        answer = client.get(f"/files/thumb/{job_id}")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/webp"
        assert answer.headers["cache-control"] == "private, max-age=3600"
        with Image.open(io.BytesIO(answer.content)) as thumb:
            assert thumb.format == "WEBP" and thumb.size == expected
        cached = thumb_path(out.resolve(), job_id)
        assert cached.is_file() and cached.parent.parent == thumbs_folder(out.resolve())
    assert thumbs_folder(out.resolve()) == out.resolve().parent / "outputs.thumbs"
    assert not any(p.suffix == ".webp" for p in out.rglob("*"))  # the output folder untouched

    # Made once: a second request serves the same file, untouched.
    cached = thumb_path(out.resolve(), ids[0])
    made = cached.stat().st_mtime_ns
    os.utime(cached, ns=(made, made))
    assert client.get(f"/files/thumb/{ids[0]}").content == cached.read_bytes()
    assert cached.stat().st_mtime_ns == made
    assert not [p for p in cached.parent.iterdir() if p.suffix == ".tmp"]


def test_an_image_newer_than_its_thumbnail_gets_a_new_one(settings, client):
    path = image(settings.output_dir / "s" / "a.png", (512, 512), color=(255, 0, 0))
    [job_id] = add_jobs(settings.database_url, [{"output_path": str(path)}])
    red = client.get(f"/files/thumb/{job_id}").content
    with Image.open(io.BytesIO(red)) as thumb:
        assert thumb.convert("RGB").getpixel((128, 128))[0] > 200

    image(path, (512, 256), color=(0, 0, 255))  # rendered again, say
    cached = thumb_path(settings.output_dir.resolve(), job_id)
    old = cached.stat().st_mtime_ns
    os.utime(path, ns=(old + 10**9, old + 10**9))
    blue = client.get(f"/files/thumb/{job_id}").content
    with Image.open(io.BytesIO(blue)) as thumb:
        assert thumb.size == (256, 128) and thumb.convert("RGB").getpixel((128, 64))[2] > 200


def test_many_thumbnails_asked_at_once_are_all_made_whole(settings, client):
    paths = [image(settings.output_dir / "s" / f"{i}.png", (768, 768), color=(i, 80, 160))
             for i in range(24)]
    ids = add_jobs(settings.database_url, [{"output_path": str(p)} for p in paths])
    answers: list[int] = []

    def fetch(job_id: int) -> None:
        answers.append(client.get(f"/files/thumb/{job_id}").status_code)

    threads = [threading.Thread(target=fetch, args=(job_id,)) for job_id in ids]
    for t in threads:
        t.start()
    assert client.get("/api/sweeps").status_code == 200  # answered while they are made
    for t in threads:
        t.join()
    assert answers == [200] * len(ids)
    folder = thumb_path(settings.output_dir.resolve(), ids[0]).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.webp" for i in ids)
    for i in ids:  # each one whole: no temporary left, every file a readable WebP
        with Image.open(thumb_path(settings.output_dir.resolve(), i)) as thumb:
            thumb.load()
            assert thumb.size == (256, 256)
