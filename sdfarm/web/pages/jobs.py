"""``/jobs/{id}``: a job's image, every recorded field, its A1111 infotext, and a "render
again" form taking ``rerun --set`` overrides."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from sdfarm.errors import SdfarmError
from sdfarm.params import PARAMS
from sdfarm.web.files import file_urls, output_roots
from sdfarm.web.pages.problem import problem_page
from sdfarm.web.security import check_csrf
from sdfarm.web.templating import page

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

#: Fields the page shows elsewhere than in the table of recorded fields.
SHOWN_APART = frozenset({"file_exists", "traceback", "sweep_name", "infotext", "image_url",
                         "thumb_url", "page_url", "rerun_of_job_id"})


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: int) -> Response:
    return _job_page(request, job_id)


@router.post("/jobs/{job_id}/rerun")
def rerun_page(request: Request, job_id: int, overrides: str = Form("")) -> Response:
    """Render the job again (in this request's worker thread: a plain ``def`` route) and go to
    the new job; the CLI's one-line error otherwise, with the overrides kept in the form."""
    from sdfarm.scheduler.overrides import parse_assignments
    from sdfarm.usecases.rerun import rerun_job

    lines = [line.strip() for line in overrides.splitlines() if line.strip()]
    try:
        result = rerun_job(request.app.state.settings, job_id, parse_assignments(lines))
    except SdfarmError as exc:
        return _job_page(request, job_id, error=str(exc), overrides=overrides, status_code=400)
    return RedirectResponse(f"/jobs/{result.new_job_id}", status_code=303)


def _job_page(request: Request, job_id: int, *, error: str | None = None, overrides: str = "",
              status_code: int = 200) -> Response:
    from sdfarm.usecases.sweep_views import job_view

    try:
        settings = request.app.state.settings
        fields = file_urls(job_view(settings, job_id), output_roots(settings))
    except SdfarmError as exc:
        return problem_page(request, exc)
    # The parameters first, in the table's order, then how and where it was rendered (as
    # `sdfarm show` lists them).
    order = [*(k for k in PARAMS if k in fields), *(k for k in fields if k not in PARAMS)]
    rows = [(k, fields[k]) for k in order if k not in SHOWN_APART]
    return page(request, "job.html", status_code=status_code, job=fields, rows=rows,
                error=error, overrides=overrides, settable=_settable())


def _settable() -> str:
    from sdfarm.scheduler.overrides import SETTABLE

    return ", ".join(SETTABLE)
