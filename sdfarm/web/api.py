"""``/api``: every page's data as JSON for scripts (documented at ``/docs``).

Each route calls the use-case the CLI calls; our errors become one-line ``detail`` messages
with the status a script can act on (404 not found, 422 a value it sent, 503 the broker).
Routes are plain functions: FastAPI runs them in its threadpool, so a database query or a
rerun never blocks the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from sdfarm.errors import (
    BrokerUnavailable,
    HistoryQueryError,
    JobFileError,
    JobNotFound,
    SdfarmError,
    SweepNotFound,
    clip_echoes,
)
from sdfarm.web.files import file_urls, output_roots
from sdfarm.web.security import check_csrf

router = APIRouter(prefix="/api", dependencies=[Depends(check_csrf)], tags=["api"])


@contextmanager
def answering() -> Iterator[None]:
    """Our errors as HTTP errors with the CLI's one-line message."""
    try:
        yield
    except (JobNotFound, SweepNotFound) as exc:
        raise HTTPException(404, clip_echoes(str(exc))) from None
    except (HistoryQueryError, JobFileError) as exc:
        raise HTTPException(422, clip_echoes(str(exc))) from None
    except BrokerUnavailable as exc:
        raise HTTPException(503, clip_echoes(str(exc))) from None
    except SdfarmError as exc:
        raise HTTPException(400, clip_echoes(str(exc))) from None


def settings_of(request: Request):
    return request.app.state.settings


# --- history and jobs -------------------------------------------------------------------

class HistoryPage(BaseModel):
    jobs: list[dict[str, object]] = Field(description="Every recorded field of each job found, "
                                                      "best match first, with image URLs.")
    hint: str | None = Field(None, description="When a model or sampler matched nothing: "
                                               "the ones the history has.")
    limit: int | None
    offset: int


@router.get("/history", response_model=HistoryPage)
def history(
    request: Request,
    prompt: str | None = Query(None, description='Words (all must appear), "a phrase", '
                                                 "prefix*, -excluded"),
    negative: str | None = Query(None, description="The same, in the negative prompt"),
    seed: str | None = Query(None, description="an integer"),
    model: str | None = Query(None, description="file or folder name, reference or hash"),
    sampler: str | None = Query(None), schedule: str | None = Query(None),
    cfg: str | None = Query(None, description="7 or 6-8"),
    steps: str | None = Query(None, description="30 or 20-40"),
    size: str | None = Query(None, description="512x768"), family: str | None = Query(None),
    lora: str | None = Query(None), sweep: str | None = Query(None, description="a sweep id"),
    status: list[str] = Query([], description="repeatable"),
    since: str | None = Query(None, description="7d, 12h, 30m, 2w ago, or a UTC date"),
    until: str | None = Query(None, description="a time ago or a UTC date (whole day)"),
    missing: str | None = Query(None, description="1: done jobs whose image file is gone"),
    limit: str | None = Query(None, description="default 20; 0 for all"),
    offset: str | None = Query(None, description="default 0"),
) -> dict[str, object]:
    """Past jobs with ``sdfarm history``'s filters as query parameters
    (``?prompt=lighthouse&cfg=6-8&seed=42&limit=20``)."""
    from sdfarm.usecases.history import find
    from sdfarm.usecases.history_filters import history_query, wants_missing

    # The parameters above only document them: every one is parsed from the raw query string
    # by the CLI's parsers, so the API and the CLI refuse a bad value with the same one line
    # (not FastAPI's validation list), and an unknown name is refused too.
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    with answering():
        query, limit_, offset_ = history_query(params)
        found = find(settings_of(request), query, limit=limit_, offset=offset_,
                     missing=wants_missing(params))
    roots = output_roots(settings_of(request))
    return {"jobs": [file_urls(r, roots) for r in found.rows], "hint": found.hint,
            "limit": limit_, "offset": offset_}


@router.get("/jobs/{job_id}")
def job(request: Request, job_id: int) -> dict[str, object]:
    """Every recorded field of the job (as ``sdfarm show --json``), its A1111 infotext, its
    sweep and what it was rerun from, and its image URLs."""
    from sdfarm.usecases.sweep_views import job_view

    with answering():
        return file_urls(job_view(settings_of(request), job_id), output_roots(settings_of(request)))


class RerunRequest(BaseModel):
    set: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='Parameters to change, as `sdfarm rerun --set`: '
                                          '{"cfg": 8, "sampler": "Euler a"}')


@router.post("/jobs/{job_id}/rerun")
def rerun(request: Request, job_id: int, body: RerunRequest) -> dict[str, object]:
    """Render the job again (``sdfarm rerun``), in this server process; returns the new job
    and, without changes, whether the pixels came out identical."""
    from sdfarm.scheduler.overrides import parse_assignments
    from sdfarm.usecases.rerun import rerun_job
    from sdfarm.usecases.sweep_views import job_view

    settings = settings_of(request)
    with answering():
        # As text, so a value reads exactly as on the command line (--set cfg=8).
        changes = parse_assignments([f"{k}={_as_text(v)}" for k, v in body.set.items()])
        result = rerun_job(settings, job_id, changes)
        new = file_urls(job_view(settings, result.new_job_id), output_roots(settings_of(request)))
    return {"job": new, "rerun_of_job_id": job_id, "pass_size": result.pass_size,
            "changed": {k: {"new": n, "was": o} for k, (n, o) in result.changed.items()},
            "difference": result.difference, "not_applied": result.not_applied}


def _as_text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- sweeps ---------------------------------------------------------------------------

@router.get("/sweeps")
def sweeps(request: Request, limit: int = Query(50, ge=1, le=1000)) -> dict[str, object]:
    """The newest sweeps: counts per status, images per minute, ETA (what ``watch`` shows)."""
    from sdfarm.usecases.sweep_views import sweep_list

    with answering():
        return {"sweeps": sweep_list(settings_of(request), limit)}


class PlanRequest(BaseModel):
    job_file: str = Field(description="The job file's TOML text.")
    name: str = Field("pasted.toml", description="Its file name, which errors name.")
    force: bool = Field(False, description="Count every image as to render (render --force).")


class SubmitRequest(PlanRequest):
    where: Literal["farm", "here"] = Field(
        "farm", description="farm: queue it for the workers (sdfarm submit); here: render it "
                            "in this server process (sdfarm render), one sweep at a time.")
    priority: int = Field(0, description="Farm priority (higher first).")


@router.post("/sweeps/plan")
def plan(request: Request, body: PlanRequest) -> dict[str, object]:
    """What submitting the job file would do (``sdfarm plan --json``, its printed lines and
    warnings); nothing is recorded. A bad file is a 422 with the CLI's one-line error."""
    from sdfarm.usecases.submit_text import plan_summary, plan_text

    settings = settings_of(request)
    with answering():
        return plan_summary(settings, plan_text(settings, body.job_file, body.name),
                            force=body.force)


class Submitted(BaseModel):
    sweep_id: int
    images: int
    where: Literal["farm", "here"]
    url: str = Field(description="The sweep's page.")
    api_url: str


class CancelAnswer(BaseModel):
    sweep_id: int
    queued: int = Field(description="Queued (or waiting) jobs canceled: they never start.")
    running: int = Field(description="Running jobs canceled: they stop within a step.")


class RetryAnswer(BaseModel):
    sweep_id: int
    requeued: int = Field(description="Failed and canceled jobs sent back to the farm.")


@router.post("/sweeps", status_code=201, response_model=Submitted)
def submit(request: Request, body: SubmitRequest) -> dict[str, object]:
    """Record the job file's sweep and send it to the farm, or render it here."""
    from sdfarm.usecases.submit_text import plan_text
    from sdfarm.web.runner import launch

    settings = settings_of(request)
    with answering():
        p = plan_text(settings, body.job_file, body.name, build_builtins=body.where == "here")
        sweep_id = launch(request.app, p, where=body.where, priority=body.priority,
                          force=body.force)
    return {"sweep_id": sweep_id, "images": p.images, "where": body.where,
            "url": f"/sweeps/{sweep_id}", "api_url": f"/api/sweeps/{sweep_id}"}


@router.get("/sweeps/{sweep_id}")
def sweep(request: Request, sweep_id: int) -> dict[str, object]:
    """One sweep: counts, rate, ETA, its job file text, axes, workers and plan warnings."""
    from sdfarm.usecases.sweep_views import sweep_detail

    with answering():
        return sweep_detail(settings_of(request), sweep_id)


@router.post("/sweeps/{sweep_id}/cancel", response_model=CancelAnswer)
def cancel(request: Request, sweep_id: int) -> dict[str, object]:
    """Cancel its queued and running jobs (``sdfarm cancel``); running ones stop within a
    denoising step, on the farm or in this server."""
    from sdfarm.usecases.farm import cancel as cancel_sweep

    with answering():
        done = cancel_sweep(settings_of(request), sweep_id=sweep_id)
    return {"sweep_id": sweep_id, "queued": done.queued, "running": done.running}


@router.post("/sweeps/{sweep_id}/retry", response_model=RetryAnswer)
def retry(request: Request, sweep_id: int) -> dict[str, object]:
    """Its failed and canceled jobs back to the farm's queue (``sdfarm retry``)."""
    from sdfarm.usecases.farm import retry as retry_sweep

    with answering():
        return {"sweep_id": sweep_id, "requeued": retry_sweep(settings_of(request), sweep_id)}


# --- workers --------------------------------------------------------------------------

@router.get("/workers")
def workers(request: Request) -> dict[str, object]:
    """Every farm worker as ``sdfarm status`` shows it: state, heartbeat, current job, model
    loaded; and the sweeps this server renders here."""
    from sdfarm.usecases.status import status_data
    from sdfarm.web.runner import runner_of

    with answering():
        data = status_data(settings_of(request))
    return {"workers": data["workers"], "rendering_here": runner_of(request.app).pending}
