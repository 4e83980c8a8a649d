"""Request bodies past their route's limit are answered ``413`` as problem details, whether
or not they declare their length.

A declared ``Content-Length`` over the limit (or one that is not a number) is refused
before anything is read. A body without one (``Transfer-Encoding: chunked``) is counted
as the application reads it: the read that passes the limit raises :class:`BodyTooLarge`
instead of returning, so no route ever holds more than its limit plus one read of the
server's (uvicorn reads 64 KiB at a time), and the answer goes out while the client is
still sending. The server then closes the connection, as HTTP/1.1 allows for a request
whose body it did not read to the end.

``BodyTooLarge`` is a Starlette ``HTTPException`` on purpose: FastAPI passes those through
its body parsing untouched, where any other error from reading the body becomes a 400.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kittylab.api import problems


class BodyTooLarge(HTTPException):
    """The request body passed ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request bodies are limited to {limit} bytes")
        self.limit = limit


def too_large(request: Request, limit: int) -> JSONResponse:
    return problems.problem(
        request,
        413,
        "payload-too-large",
        "Payload too large",
        f"request bodies are limited to {limit} bytes",
        field="body",
    )


class BodyLimit:
    """ASGI middleware: ``limit_for(path)`` is the largest body, in bytes, a request to
    ``path`` may carry (asked per request, so a changed setting applies at once)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = Request(scope).headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await too_large(Request(scope), limit)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)
