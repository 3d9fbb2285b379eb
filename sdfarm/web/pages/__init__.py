"""The HTML pages, one module per area, each with one ``router``."""

from __future__ import annotations

from fastapi import APIRouter


def _routers() -> list[APIRouter]:
    from importlib import import_module

    # Each a module under sdfarm.web.pages, in the navigation's order.
    names = ("sweeps", "grid", "history", "jobs", "workers", "submit")
    return [import_module(f"sdfarm.web.pages.{name}").router for name in names]


ROUTERS = _routers()
