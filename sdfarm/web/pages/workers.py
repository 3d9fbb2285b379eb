"""``/workers``: what ``sdfarm status`` shows of the workers, refreshed live."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sdfarm.metadata.a1111 import model_display_name
from sdfarm.usecases.status import status_data
from sdfarm.web.pages.problem import duration
from sdfarm.web.security import check_csrf
from sdfarm.web.templating import page

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)


@router.get("/workers")
def workers_page(request: Request) -> Response:
    workers = status_data(request.app.state.settings, limit=0)["workers"]
    return page(request, "workers.html", workers=workers, duration=duration,
                model_name=lambda m: model_display_name(m) if m else "-")
