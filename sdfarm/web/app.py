"""The ASGI application: one per ``sdfarm serve`` process, over the CLI's database and output
folder. Pages are server-rendered (Jinja2) with a little JavaScript; ``/api`` answers JSON."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from sdfarm import __version__
from sdfarm.config import Settings
from sdfarm.web.security import Guard, install_guard

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings, *, token: str | None = None,
               local_host: bool = True) -> FastAPI:
    """The app over ``settings``' database and output folder.

    ``token``: required on every request (header ``X-Sdfarm-Token`` or the cookie the login
    form sets); ``sdfarm serve`` refuses to bind beyond localhost without one. ``local_host``:
    bound to a loopback address, so requests must also name it as their Host (DNS rebinding).
    """
    from sdfarm.web.runner import LocalRunner

    app = FastAPI(title="sdfarm", version=__version__, lifespan=_lifespan,
                  description="The farm's sweeps, grids, history, jobs and workers as JSON.")
    app.state.settings = settings
    app.state.runner = LocalRunner(settings)
    app.state.guard = Guard(token=token, csrf_secret=secrets.token_bytes(32),
                            local_host=local_host)
    install_guard(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _include_routers(app)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    # A sweep rendering in this process stops with it, recorded as interrupted (resumable).
    from starlette.concurrency import run_in_threadpool

    await run_in_threadpool(app.state.runner.stop)


def _include_routers(app: FastAPI) -> None:
    # Each area is its own module with one router; the order here is the navigation's.
    from sdfarm.web import api, files, login
    from sdfarm.web.pages import ROUTERS

    app.include_router(login.router)
    app.include_router(api.router)
    app.include_router(files.router)
    for router in ROUTERS:
        app.include_router(router)
