"""Rendering a page: Jinja2 with autoescape (every prompt and name is escaped), the CSRF
token every form carries, and the navigation."""

from __future__ import annotations

from pathlib import Path

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import HTMLResponse

from sdfarm.web.security import CSRF_FIELD, csrf_token_for, set_csrf_cookie

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")

#: (path, label) of the navigation bar, in order.
NAVIGATION = (("/", "Sweeps"), ("/history", "History"), ("/workers", "Workers"),
              ("/submit", "Submit"))


def page(request: Request, template: str, status_code: int = 200, **context) -> HTMLResponse:
    token, new = csrf_token_for(request)
    response = TEMPLATES.TemplateResponse(
        request, template,
        {"csrf_token": token, "csrf_field": CSRF_FIELD, "navigation": NAVIGATION, **context},
        status_code=status_code)
    if new:
        set_csrf_cookie(response, token)
    return response
