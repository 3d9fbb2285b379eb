"""The size limit on what a request may send: a job file is text, and 1 MiB holds far more
prompts than anyone writes by hand. A larger body is refused with 413 before it is read (a
declared length) or as soon as it passes the limit (a chunked one): nothing buffers it whole."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sdfarm.usecases.submit_text import MAX_JOB_FILE_BYTES

#: Largest request body: a job file at its limit, plus room for the JSON or form around it.
MAX_BODY_BYTES = MAX_JOB_FILE_BYTES + 64 * 1024
TOO_LARGE = f"request too large: a job file may be at most {MAX_JOB_FILE_BYTES // 1024} KiB"


class BodyLimit:
    """ASGI middleware over the whole app (pages' forms and ``/api`` alike)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _refuse(send)
        received, refused = 0, False

        async def limited() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answered here, whatever the route would make of a cut body; to the route
                    # the client is gone, and what it answers is dropped.
                    if not refused:
                        refused = True
                        await _refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, unless_refused)


async def _refuse(send: Send) -> None:
    body = json.dumps({"detail": TOO_LARGE}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
