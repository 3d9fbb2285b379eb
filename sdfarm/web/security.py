"""What keeps the page safe to leave running: a token beyond localhost, a Host check on
localhost (DNS rebinding), and CSRF protection on every request that changes something.

A browser on the same machine can be made to send requests to ``127.0.0.1:8188`` by any web
page it visits, so even the localhost default checks that a state-changing request came from
our own page: either a JSON body (which no cross-site form can send without a CORS preflight,
and we never answer one) or a form carrying the CSRF token our page put in it (signed double
submit: the same signed value in a cookie and in the form or ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

TOKEN_HEADER = "X-Sdfarm-Token"
TOKEN_COOKIE = "sdfarm_token"
CSRF_HEADER = "X-CSRF-Token"
CSRF_COOKIE = "sdfarm_csrf"
CSRF_FIELD = "csrf_token"
#: Names a loopback-bound server answers to; any other Host is a rebinding attempt.
LOCAL_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: Paths open without the token: the login form and what it needs to look right.
OPEN_PATHS = ("/login", "/static/")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Guard:
    token: str | None
    csrf_secret: bytes
    local_host: bool = True

    def token_ok(self, request: Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def new_csrf(self) -> str:
        nonce = secrets.token_urlsafe(18)
        return f"{nonce}.{self._sign(nonce)}"

    def csrf_valid(self, value: str | None) -> bool:
        nonce, _, signature = (value or "").partition(".")
        return bool(nonce) and hmac.compare_digest(signature, self._sign(nonce))

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.csrf_secret, nonce.encode(), hashlib.sha256).hexdigest()[:32]


def guard_of(request: Request) -> Guard:
    return request.app.state.guard


def host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8188
        return host_header.partition("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api") and "text/html" in request.headers.get(
        "accept", "")


def install_guard(app: FastAPI) -> None:
    @app.middleware("http")
    async def guard_requests(request: Request, call_next) -> Response:
        guard = guard_of(request)
        if guard.local_host and host_name(request.headers.get("host", "")) not in LOCAL_NAMES:
            return JSONResponse({"detail": "this server answers only to localhost"}, 400)
        path = request.url.path
        if not guard.token_ok(request) and not path.startswith(OPEN_PATHS):
            if _wants_html(request):
                target = "/login?next=" + _quote_next(request)
                return HTMLResponse(f'<!doctype html><title>sdfarm: log in</title>'
                                    f'<p><a href="{target}">Log in</a> with the server\'s '
                                    f'token (SDFARM_WEB_TOKEN).</p>', 401,
                                    headers={"Refresh": f"0; url={target}"})
            return JSONResponse({"detail": "missing or wrong token: send the header "
                                           f"{TOKEN_HEADER} (SDFARM_WEB_TOKEN)"}, 401)
        return await call_next(request)


def _quote_next(request: Request) -> str:
    from urllib.parse import quote

    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return quote(path, safe="")


async def check_csrf(request: Request) -> None:
    """A dependency of every router: unsafe methods must come from our page (module doc)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, f"cross-site request from {origin} refused")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return
    guard = guard_of(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    given = request.headers.get(CSRF_HEADER)
    if given is None and content_type in ("application/x-www-form-urlencoded",
                                          "multipart/form-data"):
        given = (await request.form()).get(CSRF_FIELD)
    if not (cookie and given and hmac.compare_digest(str(given), cookie)
            and guard.csrf_valid(cookie)):
        raise HTTPException(403, "missing or stale CSRF token: reload the page and try again")


def csrf_token_for(request: Request) -> tuple[str, bool]:
    """The CSRF token a page embeds, and whether it is new (then the response sets it)."""
    guard = guard_of(request)
    cookie = request.cookies.get(CSRF_COOKIE)
    if cookie and guard.csrf_valid(cookie):
        return cookie, False
    return guard.new_csrf(), True


def set_csrf_cookie(response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", path="/")
