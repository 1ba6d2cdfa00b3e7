"""The one door through which checks reach student code: the `target` fixture.

A check never imports the student's package itself. It asks `target` for a module, an
in-memory client, a stdio client running the package as a real subprocess, or the package's
ASGI app served by a real uvicorn on a loopback port. Which edition is graded (the student's
starter, the reference solutions, a submission) is the runner's decision, made before the
check starts; the check cannot tell and does not need to.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from checker.host.environment import plain_environment
from checker.host.recording import recording_yields
from checker.host.serving import ServerDidNotStart, free_port, free_ports, serve_asgi
from checker.host.toolcrash import last_tool_crash
from checker.host.warmup import warm_up
from checker.runner.failures import describe_failure, leaf_exception
from checker.target.remote import Mirrored, RaiseInHost, Remote, RemoteSession, mcp_over_tcp

RELAY = Path(__file__).resolve().parent.parent / "sandbox" / "relay.py"
CPU_LEDGER = "COURSE_CPU_LEDGER"  # set by the runner in a check's fork: where relayed commands add their CPU time

warm_up()  # once, in the worker: every check's fork inherits the imported, warmed-up SDK


__all__ = ["Target", "free_port", "free_ports", "last_tool_crash", "leaf_exception"]


class Target:
    """The edition under test, seen only through these methods.

    In-process (a student's self-check), modules are the real modules. Isolated (an instructor's
    grading, `COURSE_HOST_ZYGOTE` set), they are `Remote` handles on a host process, and a server
    or app handed back is served from there over a real socket; checks read the same either way.
    """

    def __init__(self, edition: Path, package: str, zygote: str = "", scratch: str = "",
                 procs_files: list[str] | None = None, command_zygote: str = "") -> None:
        self.edition = edition
        self.package = package
        self.zygote = zygote
        self.command_zygote = zygote or command_zygote  # where commands start (warm); "" = exec here
        self.scratch = scratch
        self.procs_files = procs_files or []
        self._session: RemoteSession | None = None

    @classmethod
    def from_environment(cls) -> Target:
        """The edition and the sandbox the runner chose for this check (see `checker.runner.worker`)."""
        edition = os.environ.get("COURSE_EDITION")
        if not edition:
            pytest.fail("no edition selected: run checks through `course check`, not plain pytest")
        groups = [p for p in os.environ.get("COURSE_CHECK_CGROUP", "").split(os.pathsep) if p]
        return cls(Path(edition), os.environ.get("COURSE_PACKAGE", "research_desk"),
                   os.environ.get("COURSE_HOST_ZYGOTE", ""), os.environ.get("COURSE_SCRATCH", ""), groups,
                   os.environ.get("COURSE_COMMAND_ZYGOTE", ""))

    @property
    def isolated(self) -> bool:
        return bool(self.zygote)

    def _host(self) -> RemoteSession:
        if self._session is None:
            cwd = tempfile.mkdtemp(prefix="host-", dir=self.scratch or None)
            self._session = RemoteSession.spawn(self.zygote, str(self.edition), self.package, cwd=cwd,
                                                procs_files=self.procs_files)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._session.pid, signal.SIGKILL)  # the host and whatever it left running

    # student code ----------------------------------------------------------------------------
    def module(self, name: str) -> Any:
        """Import `<package>.<name>`; an import crash fails the check with the student's error."""
        qualified = f"{self.package}.{name}"
        try:
            if self.isolated:
                return self._host().request("import", name)
            return importlib.import_module(qualified)
        except BaseException as exc:  # noqa: BLE001 - SystemExit at import is the student's too
            pytest.fail(f"importing {qualified} failed: {describe_failure(exc, str(self.edition))}")

    def attr(self, module: str, name: str) -> Any:
        """A function or class the lesson asks the student to provide, with a clear miss message."""
        mod = self.module(module)
        try:
            return getattr(mod, name)
        except AttributeError:
            pytest.fail(f"{self.package}/{module}.py has no `{name}`: the lesson asks you to define it")

    def library(self, name: str) -> Any:
        """A module of the SDK or the standard library as student code sees it (`mcp.types`, `io`, ...).

        What a check builds with it (an SDK object to pass in, a StringIO to write to) is made
        where student code runs, so student code gets a real object of the real class.
        """
        if self.isolated:
            return self._host().request("library", name)
        return importlib.import_module(name)

    def classes(self, obj: Any) -> list[str]:
        """The qualified names of every class `obj` (a value from student code) is an instance of."""
        if isinstance(obj, Remote):
            return [str(name) for name in self._host().request("classes", obj)]
        return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]

    def expose(self, obj: Any, *, methods: list[str] | None = None, name: str = "") -> Any:
        """Hand student code one of the check's own objects: a function, or `obj` with `methods`.

        Whatever student code does with it runs here, in the check's process, so what the object
        records (calls, arguments, order) is the check's own observation. Arguments arrive as plain
        data or handles; only the listed methods exist for student code.
        """
        if not self.isolated:
            return obj
        return self._host().expose(obj, methods, name)

    def error(self, cls: type[BaseException], *args: Any) -> BaseException:
        """An exception of class `cls` (possibly the student's) for an exposed function to raise.

        Isolated, `cls` is the stand-in for a class of student code's process: the exception is
        made there, so student code catches its own class, exactly.
        """
        if not self.isolated or not issubclass(cls, Mirrored):
            return cls(*args)
        module, qualname = cls.remote_class
        return RaiseInHost(self._host().request("new_exception", module, qualname, list(args)))

    def output(self) -> str:
        """Everything student code's process has written to stdout and stderr so far."""
        if not self.isolated:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            try:
                with open(f"/proc/self/fd/{sys.stderr.fileno()}", "rb") as captured:
                    return captured.read().decode("utf-8", "replace")
            except OSError:
                return ""  # not captured to a file: run under `course check`
        host = self._host()
        host.request("flush")
        assert host.output is not None
        deadline = time.monotonic() + 2
        while host.output.pending() and time.monotonic() < deadline:
            time.sleep(0.005)
        return host.output.text()

    def tool_crash(self) -> str:
        """What really went wrong in the latest tool that answered "Error executing tool X"."""
        if self.isolated:
            return str(self._host().request("tool_crash"))
        return last_tool_crash()

    def read_bytes(self, path: str | Path) -> bytes:
        """A file student code wrote, read where student code runs (a link in it never leads out)."""
        if self.isolated:
            data = self._host().request("read_file", str(path))
            return data if type(data) is bytes else b""
        return Path(path).read_bytes()

    def read_text(self, path: str | Path) -> str:
        return self.read_bytes(path).decode("utf-8", "replace")

    # servers -----------------------------------------------------------------------------------
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

    # subprocesses ------------------------------------------------------------------------------
    def command(self, argv: list[str]) -> list[str]:
        """`argv`, to run where student code runs: through the relay into the submission's sandbox
        when grading; for a self-check, through the relay into the lesson's command zygote when the
        runner started one, else as it is. Either zygote starts `python -m` commands warm, already
        past the SDK's import (`checker.host.warmstart`). Use it for every process that runs student
        code or reads student files (its stdio, signals and exit status behave as usual)."""
        if not self.command_zygote:
            return list(argv)
        return [sys.executable, "-I", "-S", str(RELAY), self.command_zygote,
                os.pathsep.join(self.procs_files) or "-", os.environ.get(CPU_LEDGER) or "-", "--", *argv]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a subprocess that must import the edition under test."""
        env = plain_environment()
        if self.isolated and self.scratch:
            env.update(HOME=self.scratch, TMPDIR=self.scratch)  # where the sandbox can write
        env["PYTHONPATH"] = str(self.edition)
        env.update(extra or {})
        return env

    def stdio_parameters(self, args: list[str], env: dict[str, str] | None = None) -> Any:
        """What the SDK's stdio client needs to start `python ARGS` from the edition under test."""
        from mcp import StdioServerParameters

        command, *rest = self.command([sys.executable, *args])
        return StdioServerParameters(command=command, args=rest, env=self.env(env))

    def stdio(self, *args: str, env: dict[str, str] | None = None, errlog: Any = None, **kwargs: Any) -> Any:
        """A client for `python -m <package> ARGS` as a real stdio subprocess."""
        from mcp import Client
        from mcp.client.stdio import stdio_client

        params = self.stdio_parameters(["-m", self.package, *args], env)
        return Client(stdio_client(params, errlog=errlog if errlog is not None else sys.stderr), **kwargs)


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
            await self.client.__aexit__(*exc)
            return None  # never swallows the exception
        finally:
            await self.host.arequest("close", self.token)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def target() -> Iterator[Target]:
    chosen = Target.from_environment()
    try:
        yield chosen
    finally:
        chosen.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "check(title, points, hint): a graded check")
