"""The one door through which checks reach student code: the `target` fixture.

A check never imports the student's package itself. It asks `target` for a module, an
in-memory client, a stdio client running the package as a real subprocess, or the package's
ASGI app served by a real uvicorn on a loopback port. Which edition is graded (the student's
starter, the reference solutions, a submission) is the runner's decision, made before the
check starts; the check cannot tell and does not need to.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context
from pydantic import BaseModel

from checker.worker import describe_failure, leaf_exception


def _warm_up() -> None:
    """Import, once in the worker, what every check's client needs, so each fork inherits it.

    The MCP client validates structured tool output with jsonschema, imported on first use.
    jsonschema, at import, pulls in every optional *format* library it finds; a Jupyter
    environment has them all, and one (`rfc3987_syntax`) builds a parser grammar for over a
    second. MCP never enables format checking, so they are hidden during this one import and
    stay importable afterwards for any code that really uses them.
    """
    hidden = [name for name in _FORMAT_LIBRARIES if name not in sys.modules]
    sys.modules.update(dict.fromkeys(hidden))
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

    anyio.run(_sdk_round_trip)


async def _sdk_round_trip() -> None:
    """One in-memory call per protocol era on a throwaway SDK-only server (no student code).

    The first call in a process builds pydantic validators and schema caches (~0.1 s); doing it
    here, before the worker forks, means no check pays for it again.
    """
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("warm-up", log_level="WARNING")
    server.tool()(_echo)
    for mode in ("auto", "legacy"):
        async with Client(server, mode=mode) as client:
            await client.call_tool("echo", {"text": "hi"})


class _Echo(BaseModel):
    text: str


async def _echo(text: str, ctx: Context) -> _Echo:
    return _Echo(text=text)


_FORMAT_LIBRARIES = ("fqdn", "rfc3987", "rfc3986_validator", "rfc3987_syntax", "rfc3339_validator",
                     "webcolors", "jsonpointer", "uri_template", "isoduration")
_warm_up()


class _ToolCrashes(logging.Handler):
    """Keeps the exceptions the SDK logs when a tool crashes.

    MCPServer answers a crashing tool with only "Error executing tool X" (the message is withheld
    from the model on purpose); a check still wants to tell the student what actually went wrong.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.crashes: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            self.crashes.append(exc.__cause__ or exc)


_TOOL_CRASHES = _ToolCrashes()
_sdk_tool_log = logging.getLogger("mcp.server.mcpserver.server")
_sdk_tool_log.addHandler(_TOOL_CRASHES)
_sdk_tool_log.propagate = False  # the crash goes into the check's message; skip rendering a traceback


def last_tool_crash() -> str:
    """The student's exception behind the latest redacted tool crash, in one line ("" if none)."""
    if not _TOOL_CRASHES.crashes:
        return ""
    return describe_failure(_TOOL_CRASHES.crashes[-1], os.environ.get("COURSE_EDITION", ""))


__all__ = ["Target", "free_port", "last_tool_crash", "leaf_exception"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Target:
    """The edition under test, seen only through these methods."""

    def __init__(self, edition: Path, package: str) -> None:
        self.edition = edition
        self.package = package

    def module(self, name: str) -> ModuleType:
        """Import `<package>.<name>`; an import crash fails the check with the student's error."""
        qualified = f"{self.package}.{name}"
        try:
            return importlib.import_module(qualified)
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import is the student's too
            pytest.fail(f"importing {qualified} failed: {describe_failure(exc, str(self.edition))}")

    def tool_crash(self) -> str:
        """What really went wrong in the latest tool that answered "Error executing tool X"."""
        return last_tool_crash()

    def attr(self, module: str, name: str) -> Any:
        """A function or class the lesson asks the student to provide, with a clear miss message."""
        mod = self.module(module)
        if not hasattr(mod, name):
            pytest.fail(f"{self.package}/{module}.py has no `{name}`: the lesson asks you to define it")
        return getattr(mod, name)

    def client(self, server: Any, **kwargs: Any) -> Any:
        """An in-memory MCP client connected to `server` (no port, no subprocess)."""
        from mcp import Client

        return Client(server, **kwargs)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that must import the edition under test."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")}
        env["PYTHONPATH"] = str(self.edition)
        env.update(extra or {})
        return env

    def stdio(self, *args: str, env: dict[str, str] | None = None, errlog: Any = None, **kwargs: Any) -> Any:
        """A client for `python -m <package> ARGS` as a real stdio subprocess."""
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=sys.executable, args=["-m", self.package, *args], env=self.env(env))
        return Client(stdio_client(params, errlog=errlog if errlog is not None else sys.stderr), **kwargs)

    @asynccontextmanager
    async def http(self, app: Any, *, path: str = "/mcp", graceful: bool = True) -> AsyncIterator[str]:
        """Serve an ASGI app with a real uvicorn on a free loopback port; yield the endpoint URL.

        On exit uvicorn shuts down gracefully (connections drained, the app's lifespan exited),
        which takes uvicorn at least 0.1 s. A check that does not test shutdown can pass
        `graceful=False`: the server then just stops, as if its process had been killed.
        """
        import uvicorn

        port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            with anyio.fail_after(10):
                while not server.started:
                    if server.should_exit:
                        pytest.fail("the HTTP server did not start: its startup (lifespan) failed")
                    await anyio.sleep(0.01)
            try:
                yield f"http://127.0.0.1:{port}{path}"
            finally:
                server.should_exit = True
                if not graceful:
                    for listener in server.servers:
                        listener.close()
                    tg.cancel_scope.cancel()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target() -> Target:
    edition = os.environ.get("COURSE_EDITION")
    if not edition:
        pytest.fail("no edition selected: run checks through `course check`, not plain pytest")
    return Target(Path(edition), os.environ.get("COURSE_PACKAGE", "research_desk"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(title, points, hint): a graded check")
