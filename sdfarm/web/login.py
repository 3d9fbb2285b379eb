"""The login form: beyond localhost the page asks once for the server's token and keeps it in
a cookie (scripts send the ``X-Sdfarm-Token`` header instead)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from sdfarm.web.security import TOKEN_COOKIE, check_csrf, guard_of
from sdfarm.web.templating import page

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)


def _local_target(next_path: str) -> str:
    # Only a path on this server: "//evil.example" or "https://..." would be an open redirect.
    return next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    return page(request, "login.html", next=_local_target(next), wrong=False)


@router.post("/login")
def log_in(request: Request, token: str = Form(...), next: str = Form("/")) -> Response:
    guard = guard_of(request)
    if guard.token is None or not hmac.compare_digest(token.encode(), guard.token.encode()):
        return page(request, "login.html", status_code=401, next=_local_target(next),
                    wrong=guard.token is not None)
    response = RedirectResponse(_local_target(next), status_code=303)
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path="/")
    return response
