"""The host: the process that imports student code and answers one check's requests about it.

A check never imports the submission. It asks the zygote for a host, and the host, forked per
check, answers over one socket: import a module, read an attribute, call a function, enter a
context manager, serve a server over MCP or HTTP. Whatever student code does here (patch pytest,
forge results, exit) stays in this process: the verdict is reached in the check's process, from
the values sent back.

The conversation goes both ways. A check may hand student code one of its own objects (a fake
model, a spy, a callback) with `Target.expose`; student code here sees a `JudgeObject` whose
calls travel back to the check, which runs them in its own process and keeps what it saw. So no
code of the check ever runs where student code could replace it.

Threads: a reader thread takes every frame off the socket. Requests go to the asyncio loop that
runs student code; replies to this process's own calls into the check resolve their futures.
While student code waits synchronously for the check (the loop thread blocked in a `JudgeObject`
call), the reader thread answers the check's synchronous requests itself, so a check may look at
student objects while it handles the call.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import importlib
import itertools
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any

import anyio

from checker import wire
from checker.host.recording import recording_yields
from checker.host.serving import serve_asgi
from checker.host.toolcrash import last_tool_crash
from checker.runner.failures import describe_failure, leaf_exception
from checker.runner.imports import diagnose

# Operations that never await: safe to run on the reader thread while the loop waits for the check.
SYNC_OPS = frozenset({"import", "library", "getattr", "setattr", "call", "enter", "exit", "len", "bool", "repr",
                      "str", "getitem", "contains", "items", "classes", "tool_crash", "flush", "read_file",
                      "new_exception"})
MAX_READ = 16 * 1024 * 1024  # bytes of one file a check may read back


class _ByRef:
    """Send this object as a handle even if it is plain data (a list the check watches grow)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class JudgeError(Exception):
    """The check's side of a call failed in a way student code could not have caused."""


class JudgeFunction:
    """A function of the check, callable by student code: each call runs in the check's process."""

    def __init__(self, host: Host, ident: int, method: str, kind: str) -> None:
        self._host, self._ident, self._method, self._kind = host, ident, method, kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._kind == "async":
            return self._host.call_judge_async(self._ident, self._method, args, kwargs)
        return self._host.call_judge(self._ident, self._method, args, kwargs)

    def __repr__(self) -> str:
        return f"<the check's {self._method or 'function'}>"


class JudgeObject:
    """An object of the check: only the methods and plain attributes it chose to show exist here."""

    def __init__(self, host: Host, ident: int, methods: dict[str, str], attrs: dict[str, Any], name: str) -> None:
        object.__setattr__(self, "_methods", {m: JudgeFunction(host, ident, m, kind) for m, kind in methods.items()})
        object.__setattr__(self, "_attrs", attrs)
        object.__setattr__(self, "_name", name)

    def __getattr__(self, name: str) -> Any:
        if name in self._methods:
            return self._methods[name]
        if name in self._attrs:
            return self._attrs[name]
        raise AttributeError(f"{self._name} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._attrs[name] = value  # stays here: the check's object is not changed

    def __repr__(self) -> str:
        return f"<{self._name}>"


class Host:
    """Objects the check holds handles to, and the operations it may ask for."""

    def __init__(self, package: str, edition: str, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.package = package
        self.edition = edition
        self.sock = sock
        self.loop = loop
        self.objects: dict[int, Any] = {}
        self.ids: dict[int, int] = {}
        self.closers: dict[int, Callable[[], Awaitable[None]]] = {}
        self.send_lock = threading.Lock()
        self.calls: dict[int, Future[Any]] = {}
        self.call_ids = itertools.count(1)
        self.waiting_in_loop = 0  # the loop thread is blocked in a synchronous call into the check

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
        return [[c.__module__, c.__qualname__] for c in cls.__mro__ if c is not object]

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
        return {"chain": self.exception_class(type(exc)), "str": plain, "described": text, "attrs": attrs,
                "ref": self.handle(exc)["$ref"]["id"]}

    # values in ------------------------------------------------------------------------------
    def arg(self, data: Any) -> Any:
        def on_tag(tag: str, payload: Any) -> Any:
            if tag == "$ref":
                return self.objects[int(payload)]
            if tag == "$judge":
                return self.judge_object(payload)
            raise wire.WireError(f"unknown tag {tag}")
        return wire.decode(data, on_tag)

    def judge_object(self, payload: Any) -> Any:
        if type(payload) is not dict or type(payload.get("id")) is not int:
            raise wire.WireError("malformed object of the check")
        ident, kind = payload["id"], payload.get("call")
        if kind in ("sync", "async"):
            return JudgeFunction(self, ident, "", str(kind))
        methods = {str(k): str(v) for k, v in dict(payload.get("methods") or {}).items()}
        attrs = self.arg(payload.get("attrs") or {"$dict": []})
        return JudgeObject(self, ident, methods, attrs if type(attrs) is dict else {}, str(payload.get("name", "")))

    # calls into the check -------------------------------------------------------------------
    def _call_judge(self, ident: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Future[Any]:
        future: Future[Any] = Future()
        call = next(self.call_ids)
        self.calls[call] = future
        try:
            self.send({"cb": call, "obj": ident, "method": method, "args": [self.out(a) for a in args],
                       "kwargs": self.out(kwargs)})
        except BaseException:
            self.calls.pop(call, None)
            raise
        return future

    def call_judge(self, ident: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """A synchronous call from student code: block until the check has answered.

        The loop counts as waiting before the call leaves: the check may ask about student
        objects as soon as it has the call, and those requests must not queue behind it.
        """
        in_loop = threading.current_thread() is threading.main_thread()
        self.waiting_in_loop += in_loop
        try:
            future = self._call_judge(ident, method, args, kwargs)
            return self._judge_result(future.result())
        finally:
            self.waiting_in_loop -= in_loop

    async def call_judge_async(self, ident: int, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self._judge_result(await asyncio.wrap_future(self._call_judge(ident, method, args, kwargs)))

    def _judge_result(self, reply: dict[str, Any]) -> Any:
        if "error" not in reply:
            return self.arg(reply.get("ok"))
        error = reply["error"] if type(reply["error"]) is dict else {}
        raised = error.get("raise")
        if type(raised) is int and isinstance(self.objects.get(raised), BaseException):
            raise self.objects[raised]  # an exception object of the student's, made here, raised as asked
        kind = getattr(builtins, str(error.get("type", "")), None)
        text = str(error.get("text", ""))
        if isinstance(kind, type) and issubclass(kind, Exception):
            raise kind(text)
        raise JudgeError(text)

    # operations -----------------------------------------------------------------------------
    async def op_import(self, name: str) -> Any:
        return importlib.import_module(f"{self.package}.{name}")

    async def op_diagnose_import(self, name: str, timeout: float, owners: dict[str, int]) -> Any:
        """Import `<package>.<name>` for the runner's pre-flight: None, or why it does not import."""
        report = diagnose(self.package, name, self.edition, float(timeout), dict(owners))
        return report.to_json() if report else None

    async def op_library(self, name: str) -> Any:
        """A module of the SDK or the standard library, as student code sees it (never the student's own)."""
        if name == self.package or name.startswith(f"{self.package}."):
            raise ValueError(f"{name} is the graded package: use import")
        return importlib.import_module(name)

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

    async def op_new_exception(self, module: str, qualname: str, args: list[Any]) -> Any:
        """An exception of a class already loaded here (the student's, say), made here, for a check to raise."""
        found: Any = sys.modules[module]
        for part in qualname.split("."):
            found = getattr(found, part)
        if not (isinstance(found, type) and issubclass(found, BaseException)):
            raise TypeError(f"{module}.{qualname} is not an exception class")
        return _ByRef(found(*args))

    async def op_classes(self, obj: Any) -> list[str]:
        """The qualified names of every class `obj` is an instance of (the check decides what it is)."""
        return [f"{c.__module__}.{c.__qualname__}" for c in type(obj).__mro__]

    async def op_tool_crash(self) -> str:
        return last_tool_crash()

    async def op_flush(self) -> None:
        """Push what student code printed so far out to the check, which collects it."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    async def op_read_file(self, path: str) -> bytes:
        """A file as student code sees it: inside the sandbox, a link cannot lead to the grader's files."""
        with open(path, "rb") as handle:
            return handle.read(MAX_READ)

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
            with contextlib.suppress(BaseException):  # a server failing on its way down is reported elsewhere
                await task
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
            self.send(reply)
        except (wire.WireError, TypeError, ValueError) as exc:
            self.send({"id": ident, "error": {"chain": [["builtins", "ValueError"]], "str": str(exc),
                                              "described": f"the reply could not be sent: {exc}", "attrs": {}}})

    def dispatch_here(self, request: dict[str, Any]) -> None:
        """Answer a synchronous request on this (the reader) thread: the loop is waiting for the check."""
        coroutine = self.dispatch(request)
        try:
            coroutine.send(None)  # none of SYNC_OPS awaits, so this runs to the end
        except StopIteration:
            return
        coroutine.close()

    def send(self, message: Any) -> None:
        body = wire.frame(message)
        with self.send_lock:
            self.sock.sendall(body)

    def read_forever(self) -> None:
        """The reader thread: every frame from the check, until it hangs up; then the host ends."""
        try:
            while True:
                message = wire.recv_frame(self.sock)
                if type(message) is not dict:
                    continue
                if "cb" in message:
                    future = self.calls.pop(message["cb"], None) if type(message["cb"]) is int else None
                    if future is not None:
                        future.set_result(message)
                elif self.waiting_in_loop and message.get("op") in SYNC_OPS:
                    self.dispatch_here(message)
                else:
                    self.loop.call_soon_threadsafe(_start, self.loop, self.dispatch(message))
        except (OSError, wire.WireError):
            pass
        for future in list(self.calls.values()):
            future.set_result({"error": {"type": "ConnectionError", "text": "the check has ended"}})
        self.loop.call_soon_threadsafe(self.loop.stop)


_TASKS: set[asyncio.Task[None]] = set()


def _start(loop: asyncio.AbstractEventLoop, coroutine: Any) -> None:
    task = loop.create_task(coroutine)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


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


def serve(sock: socket.socket, package: str, edition: str) -> None:
    """Answer the check on `sock` until it hangs up. Runs the loop on this (the main) thread."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    host = Host(package, edition, sock, loop)
    threading.Thread(target=host.read_forever, name="course-host-reader", daemon=True).start()
    try:
        loop.run_forever()
    finally:
        for task in list(_TASKS):
            task.cancel()
