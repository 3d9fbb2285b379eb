"""The size limit on what a POST may send: a job file is text, and 1 MiB holds far more
prompts than anyone writes by hand; a larger body is refused before it is parsed."""

from __future__ import annotations

from fastapi import HTTPException, Request

from sdfarm.usecases.submit_text import MAX_JOB_FILE_BYTES

#: Largest request body: a job file at its limit, plus room for the JSON or form around it.
MAX_BODY_BYTES = MAX_JOB_FILE_BYTES + 64 * 1024


def _too_large() -> HTTPException:
    return HTTPException(413, f"request too large: a job file may be at most "
                              f"{MAX_JOB_FILE_BYTES // 1024} KiB")


async def limit_body(request: Request) -> None:
    """A dependency of every route that takes a body: 413 past :data:`MAX_BODY_BYTES`.

    The declared length is checked first (nothing read); a body sent without one (chunked)
    is read up to the limit. Starlette keeps what was read, so the route still parses it.
    """
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            raise _too_large()
        return
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    request._body = b"".join(chunks)  # what request.body() returns from now on
