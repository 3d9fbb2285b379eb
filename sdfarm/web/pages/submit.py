"""``/submit``: paste or upload a job file, see its plan (or the CLI's one-line error) before
anything is recorded, then submit it to the farm or render it in this server's process."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response

from sdfarm.errors import SdfarmError
from sdfarm.web.security import check_csrf
from sdfarm.web.templating import page

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

EXAMPLE = '''name = "lighthouse"
model = "builtin:tiny"
prompt = "a lighthouse at dusk"
seeds = "1-4"
steps = 20

[axes]
cfg = [5, 7, 9]
'''


@router.get("/submit")
def submit_form(request: Request) -> Response:
    return page(request, "submit.html", text="", name="", plan=None, error=None,
                example=EXAMPLE)


@router.post("/submit")
def submit(request: Request, text: str = Form(""), name: str = Form(""),
           action: Literal["plan", "farm", "here"] = Form("plan"),
           upload: UploadFile | None = File(None)) -> Response:
    """``plan``: show what would happen; ``farm`` / ``here``: plan the same text again (it may
    have been edited) and launch it, then go to the sweep's page."""
    from sdfarm.usecases.submit_text import MAX_JOB_FILE_BYTES, plan_summary, plan_text

    settings = request.app.state.settings
    if upload is not None and upload.filename:
        # Read one byte past the limit, so a huge upload is refused without reading it all.
        raw = upload.file.read(MAX_JOB_FILE_BYTES + 1)
        text, name = raw.decode("utf-8", errors="replace"), upload.filename
    summary, error = None, None
    try:
        plan = plan_text(settings, text, name)
        if action == "plan":
            summary = plan_summary(settings, plan)
        else:
            from sdfarm.web.runner import launch

            sweep_id = launch(request.app, plan, where=action)
            return RedirectResponse(f"/sweeps/{sweep_id}", status_code=303)
    except SdfarmError as exc:
        error = str(exc)
    return page(request, "submit.html", status_code=400 if error else 200, text=text,
                name=name, plan=summary, error=error, example=EXAMPLE)
