"""Finding past images, recording images made elsewhere, forgetting images that are gone, and
one job's every field: what ``sdfarm history``, ``index``, ``prune`` and ``show`` do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdfarm.config import Settings
from sdfarm.db.engine import session_factory
from sdfarm.db.history import (
    HistoryQuery,
    delete_jobs,
    distinct_values,
    job_fields,
    missing_jobs,
    search_jobs,
)
from sdfarm.db.importer import IndexReport, Progress, index_folder
from sdfarm.db.jobs import get_job
from sdfarm.errors import JobNotFound
from sdfarm.metadata.a1111 import model_display_name

#: How many names the hint for a model or sampler that matched nothing lists.
MODELS_SHOWN = 20


@dataclass(frozen=True)
class Found:
    #: Every recorded field of each job found, JSON-ready, best match first.
    rows: list[dict[str, object]]
    #: When nothing was found for a model or a sampler: the ones the history has.
    hint: str | None = None


def find(settings: Settings, query: HistoryQuery, *, limit: int | None = 20, offset: int = 0,
         missing: bool = False) -> Found:
    """The jobs ``query`` matches (``missing``: done jobs whose image file is gone)."""
    # A transaction, not a read: on SQLite the search first indexes newly recorded prompts.
    with session_factory(settings.database_url).begin() as session:
        search = missing_jobs if missing else search_jobs
        rows = [job_fields(j) for j in search(session, query, limit=limit, offset=offset)]
        hints = []
        if not rows and query.model:
            hints.append(_listing("models", {model_display_name(m)
                                             for m in distinct_values(session, "model")}))
        if not rows and query.sampler:  # a typo ("Karass") finds nothing: show what there is
            hints.append(_listing("samplers", set(distinct_values(session, "sampler"))))
    return Found(rows, "; ".join(hints) or None)


def _listing(what: str, names: set[str]) -> str:
    ordered = sorted(names)
    shown = ", ".join(ordered[:MODELS_SHOWN]) + (", …" if len(ordered) > MODELS_SHOWN else "")
    return f"{what} in the history: {shown or 'none'}"


def missing_images(settings: Settings) -> list[tuple[int, str]]:
    """(job id, path) of every done job whose image file is gone, newest first."""
    with session_factory(settings.database_url).begin() as session:
        return [(j.id, j.output_path) for j in missing_jobs(session, HistoryQuery())]


def forget(settings: Settings, jobs: list[tuple[int, str]]) -> int:
    """Delete the rows of those jobs whose image is still gone now; returns how many went."""
    still_gone = [job_id for job_id, path in jobs if not Path(path).is_file()]
    with session_factory(settings.database_url).begin() as session:
        return delete_jobs(session, still_gone)


def index_images(settings: Settings, folder: Path, progress: Progress | None = None) -> IndexReport:
    """Record the PNGs under ``folder`` as done jobs of an "imported" sweep."""
    return index_folder(session_factory(settings.database_url), folder, progress=progress)


_TRACEBACK = "Traceback (most recent call last):"


def split_error(error: str | None) -> tuple[str | None, str | None]:
    """A failed job's error column as (what went wrong, the traceback recorded after it for a
    bug report): users read the first, a developer asks for the second."""
    if not error or _TRACEBACK not in error:
        return error, None
    message, _, trace = error.partition(_TRACEBACK)
    return message.strip() or None, _TRACEBACK + trace.rstrip()


def job_details(settings: Settings, job_id: int) -> dict[str, object]:
    """Every recorded field of the job, its sweep's name, and whether its image is on disk."""
    with session_factory(settings.database_url)() as session:
        job = get_job(session, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id} in {settings.database_url}")
        fields = job_fields(job)
        fields["error"], fields["traceback"] = split_error(job.error)
        fields["file_exists"] = Path(job.output_path).is_file()
        fields["sweep_name"] = job.sweep.name
    return fields
