"""The process that hosts student code while a check examines it from another process.

When an instructor grades, a check never imports the submission. It asks for a *host*: a
process forked, per check, from a warm *zygote* that has imported the SDK but no student code.
The host imports the student's package and answers the check's requests over one socket:
import a module, read an attribute, call a function, enter a context manager, serve a server
over MCP or HTTP. Whatever student code does here (patch pytest, forge results, exit) stays in
this process: the verdict is reached in the check's process, from the values sent back.

    python -m checker.host SOCKET WALL_SECONDS MEMORY_MB OUTPUT_MB [CHECK_FILE ...]   (the zygote)
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import importlib.util
import inspect
import os
import signal
import socket
import struct
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio

from checker import wire
from checker.recording import recording_yields
from checker.sandbox import Limits, apply_limits, drop_privileges
from checker.serving import serve_asgi
from checker.toolcrash import last_tool_crash
from checker.worker import describe_failure, leaf_exception

MAX_HOSTS_PER_UID = 16  # alive at once per uid (all checks share one without root); caps a fork bomb through us


class _ByRef:
    """Send this object as a handle even if it is plain data (a list the check watches grow)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class Host:
    """Objects the check holds handles to, and the operations it may ask for."""

    def __init__(self, package: str, edition: str, writer: asyncio.StreamWriter) -> None:
        self.package = package
        self.edition = edition
        self.writer = writer
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}
        self.closers: dict[int, Callable[[], Awaitable[None]]] = {}
        self.helpers: dict[str, ModuleType] = {}

    # values out -----------------------------------------------------------------------------
    def handle(self, obj: Any) -> dict[str, Any]:
        key = self.ids.get(id(obj))
        if key is None:
            key = self.ids[id(obj)] = len(self.objects) + 1
            self.objects[key] = obj
        kind = type(obj)
        return {"$ref": {"id": key, "type": f"{kind.__module__}.{kind.__qualname__}"}}

    def out(self, value: Any) -> Any:
        def other(obj: Any) -> Any:
            if isinstance(obj, _ByRef):
                return self.handle(obj.obj)
            if isinstance(obj, type) and issubclass(obj, BaseException):
                return {"$exc_class": self.exception_class(obj)}
            if isinstance(obj, BaseException):
                return {"$exc": self.exception(obj)}
            return self.handle(obj)
        return wire.encode(value, other)

    @staticmethod
    def exception_class(cls: type) -> list[list[str]]:
        chain = [[c.__module__, c.__qualname__] for c in cls.__mro__ if c is not object]
        return chain

    def exception(self, exc: BaseException) -> dict[str, Any]:
        exc = leaf_exception(exc)
        try:
            text = describe_failure(exc, self.edition)
        except BaseException:  # noqa: BLE001 - a student's __str__ may raise
            text = type(exc).__name__
        try:
            plain = str(exc)
        except BaseException:  # noqa: BLE001
            plain = ""
        attrs = {"code": self.out(exc.code)} if isinstance(exc, SystemExit) else {}
        for name, value in list(getattr(exc, "__dict__", {}).items())[:20]:
            if not name.startswith("_"):
                try:
                    attrs[name] = self.out(value)
                except BaseException:  # noqa: BLE001
                    continue
        return {"chain": self.exception_class(type(exc)), "str": plain, "described": text, "attrs": attrs}

    # values in ------------------------------------------------------------------------------
    def arg(self, data: Any) -> Any:
        def on_tag(tag: str, payload: Any) -> Any:
            if tag == "$ref":
                return self.objects[int(payload)]
            raise wire.WireError(f"unknown tag {tag}")
        return wire.decode(data, on_tag)

    # operations -----------------------------------------------------------------------------
    async def op_import(self, name: str) -> Any:
        return importlib.import_module(f"{self.package}.{name}")

    async def op_getattr(self, obj: Any, name: str) -> Any:
        return getattr(obj, name)

    async def op_setattr(self, obj: Any, name: str, value: Any) -> None:
        setattr(obj, name, value)

    async def op_call(self, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        return fn(*args, **kwargs)

    async def op_await(self, awaitable: Any) -> Any:
        return await awaitable

    async def op_aenter(self, manager: Any) -> Any:
        return await type(manager).__aenter__(manager)

    async def op_aexit(self, manager: Any, raised: dict[str, str] | None) -> bool:
        if raised is None:
            return bool(await type(manager).__aexit__(manager, None, None, None))
        kind = type(str(raised["type"]), (Exception,), {})
        exc = kind(str(raised["text"]))
        try:
            return bool(await type(manager).__aexit__(manager, kind, exc, None))
        except BaseException as again:  # noqa: BLE001
            if again is exc:
                return False
            raise

    async def op_enter(self, manager: Any) -> Any:
        return type(manager).__enter__(manager)

    async def op_exit(self, manager: Any) -> bool:
        return bool(type(manager).__exit__(manager, None, None, None))

    async def op_len(self, obj: Any) -> int:
        return len(obj)

    async def op_bool(self, obj: Any) -> bool:
        return bool(obj)

    async def op_repr(self, obj: Any) -> str:
        return repr(obj)

    async def op_str(self, obj: Any) -> str:
        return str(obj)

    async def op_getitem(self, obj: Any, key: Any) -> Any:
        return obj[key]

    async def op_contains(self, obj: Any, item: Any) -> bool:
        return item in obj

    async def op_items(self, obj: Any) -> list[Any]:
        return list(obj)

    async def op_helper(self, path: str, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Run a check's own helper function here, beside the student code it exercises."""
        path = os.path.realpath(path)
        module = _PRELOADED.get(path) or self.helpers.get(path)
        if module is None:
            module = self.helpers[path] = _load_checks(path)
        result = getattr(module, name)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    async def op_tool_crash(self) -> str:
        return last_tool_crash()

    def _closing(self, closer: Callable[[], Awaitable[None]]) -> int:
        token = len(self.closers) + 1
        self.closers[token] = closer
        return token

    async def op_record(self, module: Any, name: str) -> list[Any]:
        recording = recording_yields(module, name)
        seen = recording.__enter__()

        async def stop() -> None:
            recording.__exit__(None, None, None)
        return [_ByRef(seen), self._closing(stop)]

    async def op_serve_http(self, app: Any, path: str, graceful: bool) -> list[Any]:
        started = anyio.Event()
        url: list[str] = []
        failed: list[BaseException] = []
        scope = anyio.CancelScope()
        stopping = anyio.Event()

        async def run() -> None:
            with scope:
                try:
                    async with serve_asgi(app, path=path, graceful=graceful) as address:
                        url.append(address)
                        started.set()
                        await stopping.wait()
                except BaseException as exc:  # noqa: BLE001 - reported to the check below
                    failed.append(exc)
                    started.set()
                    raise

        task = asyncio.get_running_loop().create_task(run())

        async def stop() -> None:
            """Let uvicorn shut down as it would in-process (the app's lifespan exits); cancel if it hangs."""
            stopping.set()
            with anyio.move_on_after(10):
                await asyncio.shield(task)
            scope.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 - a server failing on its way down is reported elsewhere
                pass
        await started.wait()
        if failed:
            raise failed[0]
        return [url[0], self._closing(stop)]

    async def op_serve_mcp(self, server: Any) -> list[int]:
        """Accept one connection on a loopback port and serve `server` over it, JSON lines as stdio."""
        lowlevel = getattr(server, "_lowlevel_server", server)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = int(listener.getsockname()[1])
        task = asyncio.get_running_loop().create_task(_serve_mcp_once(listener, lowlevel))

        async def finished() -> None:
            """After the client hung up: until the server has ended (its lifespan exited), at most 5 s."""
            with anyio.move_on_after(5):
                await asyncio.shield(task)
        return [port, self._closing(finished)]

    async def op_close(self, token: int) -> None:
        closer = self.closers.pop(int(token), None)
        if closer is not None:
            await closer()

    # dispatch -------------------------------------------------------------------------------
    async def dispatch(self, request: Any) -> None:
        ident = request.get("id") if type(request) is dict else None
        try:
            op = getattr(self, f"op_{request['op']}")
            args = [self.arg(a) for a in request.get("args", [])]
            reply: dict[str, Any] = {"id": ident, "ok": self.out(await op(*args))}
        except BaseException as exc:  # noqa: BLE001 - every failure (SystemExit too) is the check's to judge
            reply = {"id": ident, "error": self.exception(exc)}
        try:
            body = wire.frame(reply)
        except (wire.WireError, TypeError, ValueError) as exc:
            body = wire.frame({"id": ident, "error": {"chain": [["builtins", "ValueError"]], "str": str(exc),
                                                      "described": f"the reply could not be sent: {exc}",
                                                      "attrs": {}}})
        self.writer.write(body)
        await self.writer.drain()


async def _serve_mcp_once(listener: socket.socket, lowlevel: Any) -> None:
    from mcp.server.stdio import stdio_server

    with listener:
        conn, _ = await anyio.to_thread.run_sync(listener.accept)
    with conn:
        reader = anyio.wrap_file(conn.makefile("r", encoding="utf-8", errors="replace"))
        writer = anyio.wrap_file(conn.makefile("w", encoding="utf-8"))
        try:
            async with stdio_server(reader, writer) as (read_stream, write_stream):
                await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        except Exception:  # noqa: BLE001 - a server that breaks shows up as a broken connection
            pass


async def _serve(conn: socket.socket, package: str, edition: str) -> None:
    reader, writer = await asyncio.open_connection(sock=conn, limit=wire.MAX_FRAME)
    host = Host(package, edition, writer)
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            length = wire.frame_length(await reader.readexactly(4))
            request = wire.parse(await reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError, wire.WireError):
            return
        task = asyncio.get_running_loop().create_task(host.dispatch(request))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


# the zygote ----------------------------------------------------------------------------------
_PRELOADED: dict[str, ModuleType] = {}  # check files loaded by the zygote, which hosts may not be able to read


def _load_checks(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_course_checks_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the check helpers in {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up there
    spec.loader.exec_module(module)
    return module


def _warm() -> None:
    """Import and warm up the SDK and HTTP stack (no student code), so each fork starts ready."""
    import checker.target  # noqa: F401 - the same warm-up the in-process checks get


def _become_host(conn: socket.socket, peer: tuple[int, int, int], request: dict[str, Any], limits: Limits) -> None:
    """In the forked child: join the requester's process group, take on its uid, serve. Never returns."""
    peer_pid, peer_uid, _ = peer
    try:
        try:
            os.setpgid(0, os.getpgid(peer_pid))  # killed along with the check that asked for it
        except OSError:
            os.setpgid(0, 0)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        apply_limits(limits)
        if os.geteuid() == 0 and peer_uid != 0:
            drop_privileges(peer_uid, limits)  # the check's own sandbox user, scratch folder included
        else:
            scratch = Path(tempfile.gettempdir()) / f"course-sandbox-{os.getuid()}"
            scratch.mkdir(exist_ok=True)
            os.chdir(scratch)
        edition = str(request["edition"])
        package = str(request["package"])
        sys.path.insert(0, edition)
        os.environ["PYTHONPATH"] = edition
        os.environ["COURSE_EDITION"] = edition
        sys.dont_write_bytecode = True
        conn.setblocking(True)
        conn.sendall(wire.frame({"pid": os.getpid()}))
        anyio.run(_serve, conn, package, edition)
    finally:
        os._exit(0)


def zygote(path: str, limits: Limits, preload: list[str]) -> None:
    """Fork a host for every check that connects; refuse a requester that already has too many.

    `preload` are the check files whose helpers may run in hosts (`target.in_host`). The zygote
    loads them before it forks, so a host needs no access to them: when grading is sandboxed
    they sit in a folder only the grader can read, hidden checks included.
    """
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)  # die with the worker
    _warm()
    for check_file in preload:
        _PRELOADED[os.path.realpath(check_file)] = _load_checks(check_file)
    gc.collect()
    gc.freeze()  # hosts' collections then skip (and so do not copy) the warmed-up heap they inherit
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)  # checks run as sandbox users; SO_PEERCRED says who asked
    listener.listen(64)
    alive: dict[int, int] = {}  # host pid -> requester uid
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        while alive:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                alive.clear()
                break
            if pid == 0:
                break
            alive.pop(pid, None)
        try:
            peer = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            conn.settimeout(5)
            request = wire.recv_frame(conn)
            if sum(1 for uid in alive.values() if uid == peer[1]) >= MAX_HOSTS_PER_UID:
                conn.sendall(wire.frame({"error": "too many hosts for one check"}))
                conn.close()
                continue
        except (OSError, wire.WireError, struct.error):
            conn.close()
            continue
        pid = os.fork()
        if pid == 0:
            listener.close()
            _become_host(conn, peer, request, limits)
        alive[pid] = peer[1]
        conn.close()



def main() -> None:
    path, wall, memory_mb, output_mb, *preload = sys.argv[1:]
    zygote(path, Limits(float(wall), int(memory_mb), int(output_mb)), preload)


if __name__ == "__main__":
    main()
