"""A page that could not be shown: the one-line message of our own error, as the CLI says it."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import HTMLResponse

from sdfarm.errors import JobNotFound, SdfarmError, SweepNotFound
from sdfarm.web.templating import page


def problem_page(request: Request, error: SdfarmError) -> HTMLResponse:
    status = 404 if isinstance(error, (JobNotFound, SweepNotFound)) else 400
    return page(request, "_problem.html", status_code=status, message=str(error))


def duration(seconds: float | None) -> str:
    """``95`` -> ``1m 35s``: an ETA as people read it; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
