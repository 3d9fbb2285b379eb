"""``/api``: every page's data as JSON for scripts (documented at ``/docs``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from sdfarm.web.security import check_csrf

router = APIRouter(prefix="/api", dependencies=[Depends(check_csrf)])
