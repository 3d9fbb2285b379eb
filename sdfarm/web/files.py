"""Images and thumbnails: only files recorded in the database, under the output folder.

``/files/image/{job_id}`` and ``/files/thumb/{job_id}`` serve a done job's image only when its
recorded path, symlinks resolved, lies inside ``settings.output_dir``. A path edited in the
database to ``/etc/passwd``, a symlink out of the folder, an imported image recorded where it
was found, a job not done: all 404, the same answer as no such job, so nothing is learnt about
the file system. The URL carries only a job id, never a path.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.jobs import get_job
from sdfarm.db.models import JobStatus
from sdfarm.web.security import check_csrf
from sdfarm.web.thumbnails import thumbnail

router = APIRouter(prefix="/files", include_in_schema=False,
                   dependencies=[Depends(check_csrf)])

#: Browsers may keep an image an hour; a job's image does not change once it is done.
CACHE = "private, max-age=3600"
#: Longest job id text taken (a bigint); anything longer is no job.
MAX_ID_DIGITS = 19


def _not_found() -> HTTPException:
    return HTTPException(404, "no such image")


def served_image(settings: Settings, job_text: str) -> tuple[int, Path]:
    """(job id, resolved image path) of a done job whose image lies under the output folder."""
    if not (job_text.isascii() and job_text.isdigit() and len(job_text) <= MAX_ID_DIGITS):
        raise _not_found()
    job_id = int(job_text)
    with session_factory(settings.database_url)() as session:
        job = get_job(session, job_id)
        recorded = job.output_path if job is not None and job.status == JobStatus.done else None
    if not recorded:
        raise _not_found()
    root = Path(settings.output_dir).resolve()
    try:
        path = Path(recorded).resolve(strict=True)  # every symlink on the way, followed
    except (OSError, RuntimeError):  # gone, or a symlink loop
        raise _not_found() from None
    if not path.is_relative_to(root) or not path.is_file():
        raise _not_found()
    return job_id, path


def file_urls(job: dict[str, object], roots: tuple[str, ...]) -> dict[str, object]:
    """``job`` with the URLs of its image and thumbnail: ``None`` unless it is done and its
    path is under the output folder (``/files`` serves nothing else: an image indexed from
    another folder is found, but not shown)."""
    path = os.path.normpath(str(job.get("output_path") or "/"))
    shown = job.get("status") == "done" and path.startswith(roots)
    job["image_url"] = f"/files/image/{job['id']}" if shown else None
    job["thumb_url"] = f"/files/thumb/{job['id']}" if shown else None
    job["page_url"] = f"/jobs/{job['id']}"
    return job


def output_roots(settings: Settings) -> tuple[str, ...]:
    """The output folder as recorded paths start (as set, and with its symlinks resolved)."""
    folder = Path(settings.output_dir)
    return tuple({str(folder.absolute()) + os.sep, str(folder.resolve()) + os.sep})


@router.get("/image/{job_id}")
def image(request: Request, job_id: str) -> FileResponse:
    _, path = served_image(request.app.state.settings, job_id)
    return FileResponse(path, headers={"Cache-Control": CACHE})


@router.get("/thumb/{job_id}")
def thumb(request: Request, job_id: str) -> FileResponse:
    # A plain function: FastAPI runs it in its threadpool, so making a thousand thumbnails for
    # a grid never blocks the event loop (the page's other requests go on being answered).
    settings: Settings = request.app.state.settings
    number, path = served_image(settings, job_id)
    made = thumbnail(path, Path(settings.output_dir).resolve(), number)
    return FileResponse(made, media_type="image/webp", headers={"Cache-Control": CACHE})
