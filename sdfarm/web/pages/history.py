"""``/history``: the same query language and filters as ``sdfarm history``, in a GET form (the
URL is the search, to share or bookmark), answered as a grid of lazy thumbnails with paging."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sdfarm.db.models import JobStatus
from sdfarm.errors import SdfarmError
from sdfarm.params import PARAMS
from sdfarm.web.files import file_urls, output_roots
from sdfarm.web.security import check_csrf
from sdfarm.web.templating import page

router = APIRouter(dependencies=[Depends(check_csrf)], include_in_schema=False)

#: Most thumbnails one page shows (``limit=0``, every match, is for scripts: /api/history).
MAX_PAGE = 200


@router.get("/history")
def history_page(request: Request) -> Response:
    from sdfarm.usecases.history import find
    from sdfarm.usecases.history_filters import history_query, wants_missing

    given = {k: request.query_params.getlist(k) for k in request.query_params.keys()}
    form = {k: (v[0] if v else "") for k, v in given.items()}
    rows, hint, error, limit, offset, ranked = [], None, None, 0, 0, False
    try:
        query, limit, offset = history_query(given)
        ranked = query.ranked
        limit = min(limit or MAX_PAGE, MAX_PAGE)
        found = find(request.app.state.settings, query, limit=limit, offset=offset,
                     missing=wants_missing(given))
        roots = output_roots(request.app.state.settings)
        rows, hint = [file_urls(r, roots) for r in found.rows], found.hint
    except SdfarmError as exc:  # a bad filter, or a search with no words: its one line
        error = str(exc)
    return page(request, "history.html", status_code=400 if error else 200, rows=rows,
                hint=hint, error=error, form=form, chosen=set(given.get("status", [])),
                statuses=[s.value for s in JobStatus], families=PARAMS["family"].choices,
                previous=_page_link(given, offset - (limit or 0)) if offset and limit else None,
                next=_page_link(given, offset + limit) if limit and len(rows) == limit else None,
                first=offset + 1, ranked=ranked,
                filtered=any(v for k, v in form.items() if k not in ("prompt", "offset")))


def _page_link(given: dict[str, list[str]], offset: int) -> str:
    """The same search at another offset."""
    kept = [(k, v) for k, values in given.items() if k != "offset" for v in values if v]
    return "/history?" + urlencode([*kept, ("offset", str(max(offset, 0)))])
