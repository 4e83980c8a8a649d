"""The MCP tier: calls one tool of a configured MCP server (stdio or streamable HTTP)
with the question and answers with the tool's text output, through the official ``mcp``
SDK.

Each call opens its own session (for stdio that starts the server process) inside one
overall timeout, so a hung server cannot hold a request. Transport failures, a tool that
reports an error and an empty result all become ``ModelUnavailable``; the query service
then falls back to the next allowed tier.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import anyio
import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from kittylab.config import McpServerSettings
from kittylab.conversation.ports import TierAnswer
from kittylab.conversation.understanding.model import ModelUnavailable
from kittylab.domain.errors import ValidationFailed
from kittylab.domain.sanitize import sanitize_text


class McpToolAnswerer:
    def __init__(self, settings: McpServerSettings) -> None:
        if settings.transport == "stdio" and not settings.command:
            raise ValidationFailed(
                f"KITTYLAB_QUERY__MCP_SERVERS.{settings.name}", "stdio needs a command"
            )
        if settings.transport == "http" and not settings.url:
            raise ValidationFailed(
                f"KITTYLAB_QUERY__MCP_SERVERS.{settings.name}", "http needs a url"
            )
        self.settings = settings
        self.name = f"mcp:{settings.name}"
        self.model = f"mcp:{settings.name}/{settings.tool}"
        self.cost_per_call: Decimal | None = Decimal(settings.cost_per_call)

    def answer(self, question: str) -> TierAnswer:
        try:
            result = anyio.run(self._call, question)
        except ModelUnavailable:
            raise
        except TimeoutError as exc:
            raise ModelUnavailable(f"timed out after {self.settings.timeout_seconds}s") from exc
        except Exception as exc:  # the SDK raises its own and anyio's exception groups
            raise ModelUnavailable(f"call failed ({_describe(exc)})") from exc
        if result.isError:
            raise ModelUnavailable(f"tool {self.settings.tool} reported an error: "
                                   f"{sanitize_text(_text_of(result), 300)}")  # fmt: skip
        text = _text_of(result).strip()
        if not text:
            raise ModelUnavailable(f"tool {self.settings.tool} returned no text")
        return TierAnswer(
            text=sanitize_text(text, 8000),
            model=self.model,
            fixed_cost=Decimal(self.settings.cost_per_call),
        )

    async def _call(self, question: str) -> CallToolResult:
        arguments: dict[str, Any] = {self.settings.argument: question}
        with anyio.fail_after(self.settings.timeout_seconds):
            if self.settings.transport == "stdio":
                params = StdioServerParameters(
                    command=self.settings.command[0], args=list(self.settings.command[1:])
                )
                async with (
                    stdio_client(params) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    return await session.call_tool(self.settings.tool, arguments)
            assert self.settings.url is not None
            timeout = httpx.Timeout(self.settings.timeout_seconds)
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http,
                streamable_http_client(self.settings.url, http_client=http) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return await session.call_tool(self.settings.tool, arguments)


def _text_of(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _describe(exc: BaseException) -> str:
    """The innermost cause, unwrapping exception groups, without any URL: a hosted MCP
    server's URL often carries its key as a query parameter, and this text reaches the
    person asking and the routing log."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"{type(exc).__name__}: HTTP {status}"
    return sanitize_text(f"{type(exc).__name__}: {_URL.sub('[url]', str(exc))}", 300)
