"""A small MCP server for the tests: supplier prices from a fixed table, over stdio or
streamable HTTP. Run: ``python mcp_price_server.py stdio`` or ``... http PORT``."""

from __future__ import annotations

import sys

from mcp.server.fastmcp import FastMCP

PRICES = {
    "titanium powder": "Ti-6Al-4V powder, 15-45 µm: 310 USD/kg (supplier list, week 48)",
    "pla": "PLA 1.75 mm: 19 USD/kg (supplier list, week 48)",
    "argon": "Argon 50 l cylinder refill: 64 USD (supplier list, week 48)",
}

server = FastMCP("kittylab-test-prices")


@server.tool()
def lookup(query: str) -> str:
    """Current supplier prices for the materials the query mentions."""
    found = [line for name, line in PRICES.items() if name in query.lower()]
    return "\n".join(found) if found else f"No supplier price found for: {query}"


@server.tool()
def broken(query: str) -> str:
    """Always fails, like a tool whose upstream is down."""
    raise RuntimeError("upstream supplier API is down")


if __name__ == "__main__":
    if sys.argv[1] == "stdio":
        server.run("stdio")
    else:
        import uvicorn

        uvicorn.run(server.streamable_http_app(), host="127.0.0.1", port=int(sys.argv[2]),
                    log_level="warning")  # fmt: skip
