"""The MCP server (Model Context Protocol) over the read path: ``tafsir mcp`` (stdio) and ``/mcp`` in
``tafsir serve`` (streamable HTTP, behind the API key)."""

from interfaces.mcp.server import build_server

__all__ = ["build_server"]
