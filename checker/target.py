"""The one door through which checks reach student code: the `target` fixture.

A check never imports the student's package itself. It asks `target` for a module, an
in-memory client, a stdio client running the package as a real subprocess, or the package's
ASGI app served by a real uvicorn on a loopback port. Which edition is graded (the student's
starter, the reference solutions, a submission) is the runner's decision, made before the
check starts; the check cannot tell and does not need to.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context
from pydantic import BaseModel

from checker.recording import recording_yields
from checker.remote import Remote, RemoteSession, mcp_over_tcp
from checker.serving import ServerDidNotStart, free_port, serve_asgi
from checker.toolcrash import last_tool_crash
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


__all__ = ["Target", "free_port", "last_tool_crash", "leaf_exception"]


class Target:
    """The edition under test, seen only through these methods.

    In-process (a student's self-check), modules are the real modules. Isolated (an instructor's
    grading, `COURSE_HOST_ZYGOTE` set), they are `Remote` handles on a host process, and a server
    or app handed back is served from there over a real socket; checks read the same either way.
    """

    def __init__(self, edition: Path, package: str, zygote: str = "") -> None:
        self.edition = edition
        self.package = package
        self.zygote = zygote
        self._session: RemoteSession | None = None

    @property
    def isolated(self) -> bool:
        return bool(self.zygote)

    def _host(self) -> RemoteSession:
        if self._session is None:
            self._session = RemoteSession.spawn(self.zygote, str(self.edition), self.package)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def module(self, name: str) -> Any:
        """Import `<package>.<name>`; an import crash fails the check with the student's error."""
        qualified = f"{self.package}.{name}"
        try:
            if self.isolated:
                return self._host().request("import", name)
            return importlib.import_module(qualified)
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import is the student's too
            pytest.fail(f"importing {qualified} failed: {describe_failure(exc, str(self.edition))}")

    def tool_crash(self) -> str:
        """What really went wrong in the latest tool that answered "Error executing tool X"."""
        if self.isolated:
            return str(self._host().request("tool_crash"))
        return last_tool_crash()

    def attr(self, module: str, name: str) -> Any:
        """A function or class the lesson asks the student to provide, with a clear miss message."""
        mod = self.module(module)
        try:
            return getattr(mod, name)
        except AttributeError:
            pytest.fail(f"{self.package}/{module}.py has no `{name}`: the lesson asks you to define it")

    def client(self, server: Any, **kwargs: Any) -> Any:
        """An MCP client connected to `server`: in memory, or over a socket to the host process."""
        from mcp import Client

        if isinstance(server, Remote):
            return _HostedClient(self._host(), server, kwargs)
        return Client(server, **kwargs)

    @asynccontextmanager
    async def record_yields(self, module: str, name: str) -> AsyncIterator[Any]:
        """While the block runs, collect every value `<module>.<name>(...)` yields (a lifespan's state)."""
        mod = self.module(module)
        if not self.isolated:
            with recording_yields(mod, name) as seen:
                yield seen
            return
        seen, token = self._host().request("record", mod, name)
        try:
            yield seen
        finally:
            await self._host().arequest("close", token)

    async def in_host(self, helper: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `helper(*args, **kwargs)` (awaited if async) where the student's code runs.

        For the parts of a check that must sit next to student code: handing it a fake, a
        StringIO or a callback, capturing its log records, replacing one of its functions.
        `helper` is a module-level function of the check file; it takes plain data and modules
        or objects from `target`, and returns plain data *observations*, never a verdict: the
        check asserts on what comes back, in its own process.
        """
        if not self.isolated:
            result = helper(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result
        if "." in helper.__qualname__:
            raise TypeError(f"{helper.__qualname__} must be a module-level function to run in the host")
        return await self._host().arequest("helper", inspect.getfile(helper), helper.__name__, list(args), kwargs)

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
        if not isinstance(app, Remote):
            try:
                async with serve_asgi(app, path=path, graceful=graceful) as url:
                    yield url
            except ServerDidNotStart as exc:
                pytest.fail(str(exc))
            return
        try:
            url, token = await self._host().arequest("serve_http", app, path, graceful)
        except ServerDidNotStart as exc:
            pytest.fail(str(exc))
        try:
            yield url
        finally:
            await self._host().arequest("close", token)


class _HostedClient:
    """`async with` a client of a server in the host; on the way out, wait until that server has
    finished with the connection, as an in-memory client does, so its lifespan has really exited."""

    def __init__(self, host: RemoteSession, server: Remote, kwargs: dict[str, Any]) -> None:
        self.host, self.server, self.kwargs = host, server, kwargs

    async def __aenter__(self) -> Any:
        from mcp import Client

        port, self.token = await self.host.arequest("serve_mcp", self.server)
        self.client = Client(mcp_over_tcp(int(port)), **self.kwargs)
        return await self.client.__aenter__()

    async def __aexit__(self, *exc: Any) -> bool | None:
        try:
            return await self.client.__aexit__(*exc)
        finally:
            await self.host.arequest("close", self.token)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target() -> Iterator[Target]:
    edition = os.environ.get("COURSE_EDITION")
    if not edition:
        pytest.fail("no edition selected: run checks through `course check`, not plain pytest")
    chosen = Target(Path(edition), os.environ.get("COURSE_PACKAGE", "research_desk"),
                    os.environ.get("COURSE_HOST_ZYGOTE", ""))
    try:
        yield chosen
    finally:
        chosen.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(title, points, hint): a graded check")
