"""``/``: the sweeps with live counts, rate and ETA; ``/sweeps/{id}``: one sweep's job file,
axes, workers and warnings, with cancel and retry."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from sdfarm.errors import SdfarmError
from sdfarm.usecases.status import STATUSES
from sdfarm.usecases.sweep_views import sweep_detail, sweep_list
from sdfarm.web.pages.problem import duration, problem_page
from sdfarm.web.security import check_csrf

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

#: How many of the latest sweeps the list shows.
LISTED = 30


@router.get("/")
def sweeps_page(request: Request) -> Response:
    rows = sweep_list(request.app.state.settings, LISTED)
    return page_of(request, "sweeps.html", rows=rows)


@router.get("/sweeps/{sweep_id}")
def sweep_page(request: Request, sweep_id: int, canceled: int | None = None,
               stopping: int = 0, retried: int | None = None) -> Response:
    # What the last button did, as numbers in the URL (text there would be anyone's text).
    done = None
    if canceled is not None:
        done = f"canceled {canceled} queued jobs; {stopping} running ones stop within a step"
    elif retried is not None:
        done = f"sent {retried} jobs to the farm again"
    return _sweep_page(request, sweep_id, done=done)


def _sweep_page(request: Request, sweep_id: int, *, done: str | None = None,
                error: str | None = None, status_code: int = 200) -> Response:
    try:
        detail = sweep_detail(request.app.state.settings, sweep_id)
    except SdfarmError as exc:
        return problem_page(request, exc)
    return page_of(request, "sweep.html", status_code=status_code, sweep=detail, done=done,
                   error=error,
                   axes=[(a["param"], a["labels"]) for a in detail["axes"]])


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(request: Request, sweep_id: int) -> Response:
    from sdfarm.usecases.farm import cancel

    try:
        result = cancel(request.app.state.settings, sweep_id=sweep_id)
    except SdfarmError as exc:
        return problem_page(request, exc)
    return _back(sweep_id, canceled=result.queued, stopping=result.running)


@router.post("/sweeps/{sweep_id}/retry")
def retry_sweep(request: Request, sweep_id: int) -> Response:
    from sdfarm.usecases.farm import retry

    try:
        n = retry(request.app.state.settings, sweep_id)
    except SdfarmError as exc:  # no broker: the jobs are queued in the database, as the CLI says
        return _sweep_page(request, sweep_id, error=str(exc), status_code=400)
    return _back(sweep_id, retried=n)


def _back(sweep_id: int, **done: int) -> Response:
    from urllib.parse import urlencode

    return RedirectResponse(f"/sweeps/{sweep_id}?{urlencode(done)}", status_code=303)


def page_of(request: Request, template: str, **context) -> Response:
    from sdfarm.web.templating import page

    return page(request, template, statuses=STATUSES, duration=duration, **context)
