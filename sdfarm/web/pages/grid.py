"""The grid viewer: ``/sweeps/{id}/grid`` (the page) and ``/api/sweeps/{id}/grid`` (its JSON,
which the page polls while the sweep renders). The axes on X, Y and pages are the query's
``x``, ``y`` and ``page``: absent, the job file's own x, y and z; empty, no axis."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse

from sdfarm.errors import SweepNotFound
from sdfarm.grids.view import GridAxisError, GridView, ViewCell
from sdfarm.usecases.grid_view import DEFAULT, SweepGrid, sweep_grid
from sdfarm.web.security import check_csrf
from sdfarm.web.templating import page as render_page

router = APIRouter(dependencies=[Depends(check_csrf)])


def thumb_url(job_id: int) -> str:
    return f"/files/thumb/{job_id}"


def image_url(job_id: int) -> str:
    return f"/files/image/{job_id}"


@router.get("/api/sweeps/{sweep_id}/grid", tags=["sweeps"], response_class=JSONResponse)
def grid_json(request: Request, sweep_id: int, x: str | None = None, y: str | None = None,
              page: str | None = None) -> JSONResponse:
    """The sweep's cells on the chosen axes (``?x=cfg&y=steps&page=seed``; ``x=`` for none),
    page by page: each cell's job, status and thumbnail."""
    # Plain JSON types already: skip FastAPI's encoder, which a 1,000-cell poll would feel.
    return JSONResponse(grid_payload(_load(request, sweep_id, x, y, page)))


@router.get("/sweeps/{sweep_id}/grid", response_class=HTMLResponse, include_in_schema=False)
def grid_page(request: Request, sweep_id: int, x: str | None = None, y: str | None = None,
              page: str | None = None) -> HTMLResponse:
    grid = _load(request, sweep_id, x, y, page)
    view = grid.view
    return render_page(request, "grid.html", grid=grid, view=view,
                       api_url=f"/api/sweeps/{sweep_id}/grid?{_query(view.x, view.y, view.page)}",
                       swap_query=_query(view.y, view.x, view.page), thumb_url=thumb_url,
                       image_url=image_url)


def grid_payload(grid: SweepGrid) -> dict[str, Any]:
    view: GridView = grid.view
    return {
        "sweep_id": grid.sweep_id, "name": grid.name, "finished": grid.finished,
        "x": view.x, "y": view.y, "page": view.page,
        "axes": [{"name": a.name, "title": a.title, "slot": a.slot, "labels": list(a.labels)}
                 for a in view.axes],
        "shared": list(view.shared), "columns": list(view.columns), "rows": list(view.rows),
        "pages": [{"fixed": list(p.fixed), "cells": [_cell(c) for c in p.cells.values()]}
                  for p in view.pages],
    }


def _cell(cell: ViewCell) -> dict[str, Any]:
    return {"column": cell.column, "row": cell.row, "job_id": cell.job_id,
            "status": cell.status, "thumb": thumb_url(cell.job_id) if cell.done else None,
            "image": image_url(cell.job_id) if cell.done else None}


def _load(request: Request, sweep_id: int, x: str | None, y: str | None,
          page: str | None) -> SweepGrid:
    # Absent: the sweep's own axis; empty: none.
    x, y, page = (DEFAULT if v is None else (v or None) for v in (x, y, page))
    try:
        return sweep_grid(request.app.state.settings, sweep_id, x=x, y=y, page=page)
    except SweepNotFound as exc:
        raise HTTPException(404, str(exc)) from None
    except GridAxisError as exc:
        raise HTTPException(400, str(exc)) from None


def _query(x: str | None, y: str | None, page: str | None) -> str:
    from urllib.parse import urlencode

    return urlencode({"x": x or "", "y": y or "", "page": page or ""})
