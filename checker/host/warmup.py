"""Import and warm up the SDK once, before a process forks the ones that run checks or student code.

Both warm processes use it: the worker (which forks one process per check) and the zygote (which
forks one host per check). Nothing here imports pytest or student code.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import anyio
from pydantic import BaseModel

# jsonschema pulls in every optional *format* library it finds when first imported; one of them
# (`rfc3987_syntax`) builds a parser grammar for over a second. MCP never checks formats.
_FORMAT_LIBRARIES = ("fqdn", "rfc3987", "rfc3986_validator", "rfc3987_syntax", "rfc3339_validator",
                     "webcolors", "jsonpointer", "uri_template", "isoduration")


def warm_up() -> None:
    """Import what every check's client and server need, and make one call per protocol era.

    The MCP client validates structured tool output with jsonschema, imported on first use; the
    format libraries are hidden during that one import and stay importable afterwards for any
    code that really uses them. The first call in a process builds pydantic validators and schema
    caches (~0.1 s); doing it here means no forked process pays for it again.
    """
    hidden = [name for name in _FORMAT_LIBRARIES if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))  # type: ignore[arg-type]  # None there makes `import` fail: how to hide one
    try:
        import jsonschema.validators  # noqa: F401
    finally:
        for name in hidden:
            if sys.modules.get(name) is None:
                del sys.modules[name]
    import mcp.client  # noqa: F401
    import mcp.client.streamable_http  # noqa: F401 - the HTTP stack many checks use, so forks skip it
    import mcp.server.streamable_http_manager  # noqa: F401
    import uvicorn.lifespan.on  # noqa: F401
    import uvicorn.protocols.http.h11_impl  # noqa: F401

    _one_tls_context()
    anyio.run(_sdk_round_trip)


def _one_tls_context() -> None:
    """Build the default TLS context once per CA store, here, instead of once per HTTP client.

    Every `httpx2` client (each MCP client over HTTP, each raw client a check opens) builds
    its own default context, and reading the CA bundle into it costs ~50 ms of CPU: more than
    the whole loopback conversation the client then has. The context is the same every time
    (same CA store, same verification), so it is built once per store the environment names
    (SSL_CERT_FILE, SSL_CERT_DIR, or none) and reused by every client, in this process and its
    forks. A caller that passes its own context or `verify=` setting still gets exactly that.
    """
    import httpcore2

    build = httpcore2.default_ssl_context
    if getattr(build, "shared_contexts", None) is not None:
        return  # already shared (a second warm-up in the same process)
    made: dict[tuple[bool, str | None, str | None], Any] = {}

    def default_ssl_context(*, _trust_env: bool = True) -> Any:
        store = (_trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        if store not in made:
            made[store] = build(_trust_env=_trust_env)
        return made[store]

    default_ssl_context.shared_contexts = made  # type: ignore[attr-defined]
    httpcore2.default_ssl_context = default_ssl_context
    default_ssl_context()


class _Echo(BaseModel):
    text: str


async def _echo(text: str) -> _Echo:
    return _Echo(text=text)


async def _sdk_round_trip() -> None:
    """One in-memory call per protocol era on a throwaway SDK-only server (no student code)."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("warm-up", log_level="WARNING")
    server.tool()(_echo)
    for mode in ("auto", "legacy"):
        async with Client(server, mode=mode) as client:
            await client.call_tool("echo", {"text": "hi"})
