"""The check's side of process isolation: handles on objects that live in the host process.

`Target` hands a check `Remote` handles instead of the student's real modules when grading is
isolated. Reading an attribute, calling, awaiting, entering a context manager: each is one
request to the host (see `checker.host.host`). What comes back is either plain data, rebuilt here
from JSON as built-in values, or another handle. An exception raised by student code arrives
as a stand-in class created here, with the same name and the nearest base class this process
already trusts (ToolError, ValueError, ...), so `except` and `pytest.raises` read as usual.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import os
import socket
import struct
import sys
import termios
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

from checker import wire

# Modules whose exception classes may serve as the base of a stand-in. Looked up only among modules
# this process has already imported, so a name sent by the host never makes us import anything.
TRUSTED_ROOTS = frozenset({"builtins", "mcp", "mcp_types", "pydantic", "pydantic_core", "anyio", "httpx",
                           "httpx2", "starlette", "uvicorn", "json", "checker"})


class HostEnded(Exception):
    """The host process stopped answering: student code exited, crashed or ran out of memory."""

    remote_described = ("the process running your code ended abruptly: does it call sys.exit() or "
                        "os._exit(), crash, or use too much memory?")


class HostUnavailable(HostEnded):
    """No host could be started for this check (the submission's sandbox no longer answers)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.remote_described = f"no process could be started to run your code ({reason})"


class Mirrored:
    """Mixed into every stand-in exception: its text is the one the host computed."""

    remote_described = ""
    remote_text = ""
    remote_class: tuple[str, str] = ("builtins", "Exception")
    remote: object = None  # the host's exception itself, by reference, when it can be reached

    def __str__(self) -> str:
        return self.remote_text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.remote_text!r})"


_MIRRORS: dict[tuple[tuple[str, str], ...], type] = {}


def _trusted_class(module: str, qualname: str) -> type | None:
    if module.split(".")[0] not in TRUSTED_ROOTS:
        return None
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None) if found is not None else None
    # Exceptions only, and SystemExit (argument parsers raise it): never a class that steers the
    # checker's own control flow, such as CancelledError, KeyboardInterrupt or GeneratorExit.
    if isinstance(found, type) and (issubclass(found, Exception) or found is SystemExit):
        return found
    return None


def mirror_class(chain: Any) -> type:
    """A local exception class standing for the remote class whose MRO is `chain`."""
    if type(chain) is not list or not all(type(c) is list and len(c) == 2 and all(type(s) is str for s in c)
                                          for c in chain):
        raise wire.WireError("malformed exception class")
    return _mirror(tuple((m, q) for m, q in chain))


def _mirror(key: tuple[tuple[str, str], ...]) -> type:
    if key in _MIRRORS:
        return _MIRRORS[key]
    if not key:
        cls: type = type("Exception", (Mirrored, Exception), {})
    else:
        module, qualname = key[0]
        trusted = _trusted_class(module, qualname)
        if trusted is not None:
            cls = type(trusted.__name__, (Mirrored, trusted), {"__module__": trusted.__module__})
        else:
            cls = type(qualname.rsplit(".", 1)[-1][:100], (_mirror(key[1:]),), {"__module__": module[:200]})
        cls.remote_class = (module, qualname)  # type: ignore[attr-defined]  # where the real class lives
    _MIRRORS[key] = cls
    return cls


class Remote:
    """A handle on one object in the host. Only plain data ever comes back by value."""

    __slots__ = ("_session", "_id", "_type", "__weakref__")

    def __init__(self, session: RemoteSession, ident: int, kind: str) -> None:
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_id", ident)
        object.__setattr__(self, "_type", kind)

    def __getattr__(self, name: str) -> Any:
        return self._session.request("getattr", self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._session.request("setattr", self, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.request("call", self, list(args), kwargs)

    def __await__(self) -> Any:
        return self._session.arequest("await", self).__await__()

    async def __aenter__(self) -> Any:
        return await self._session.arequest("aenter", self)

    async def __aexit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        raised = None if kind is None else {"type": kind.__name__, "text": str(exc)}
        return bool(await self._session.arequest("aexit", self, raised))

    def __enter__(self) -> Any:
        return self._session.request("enter", self)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        return bool(self._session.request("exit", self))

    def __len__(self) -> int:
        return int(self._session.request("len", self))

    def __bool__(self) -> bool:
        return self._session.request("bool", self) is True

    def __getitem__(self, key: Any) -> Any:
        return self._session.request("getitem", self, key)

    def __contains__(self, item: Any) -> bool:
        return self._session.request("contains", self, item) is True

    def __iter__(self) -> Any:
        items = self._session.request("items", self)
        return iter(items if type(items) is list else [])

    def __repr__(self) -> str:
        try:
            text = self._session.request("repr", self)
        except Exception:  # noqa: BLE001 - a message about the object should not fail the check itself
            text = None
        return text if type(text) is str else f"<{self._type} in the student's process>"

    def __str__(self) -> str:
        try:
            text = self._session.request("str", self)
        except Exception:  # noqa: BLE001
            text = None
        return text if type(text) is str else repr(self)

    def __hash__(self) -> int:
        return object.__hash__(self)

    def __eq__(self, other: object) -> bool:
        return self is other


class Exposed:
    """One of the check's objects, handed to student code: calls on it come back to this process.

    Only the listed methods can be called, and only plain data and handles cross; student code
    can never reach the object's other attributes, its class or the check's module.
    """

    def __init__(self, obj: Any, methods: dict[str, str] | None, attrs: dict[str, Any] | None, name: str) -> None:
        self.obj, self.methods, self.attrs, self.name = obj, methods, attrs or {}, name


class RaiseInHost(Exception):
    """Raised by an exposed function: student code gets `error`, an exception object made in its process."""

    def __init__(self, error: Remote) -> None:
        super().__init__(repr(error))
        self.error = error


def call_kind(fn: Any) -> str:
    """"async" for a coroutine function, or an object whose __call__ is one (which callable() cannot
    tell apart), else "sync"."""
    dunder_call = getattr(fn, "__call__", None)  # noqa: B004 - the method itself, not whether fn is callable
    return "async" if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(dunder_call) else "sync"


class RemoteSession:
    """One connection to one host process (one per check)."""

    def __init__(self, sock: socket.socket, pid: int, output: int | None = None) -> None:
        self.sock = sock
        self.pid = pid  # as this process sees it (the kernel's word, not the host's): signal it, limit it
        self.lock = threading.Lock()
        self.pending: dict[int, Future[Any]] = {}
        self.proxies: dict[int, Remote] = {}
        self.exposed: dict[int, Exposed] = {}
        self.counter = 0
        self.ended = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self.blocking = 0
        self.output = _Output(output) if output is not None else None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @classmethod
    def spawn(cls, zygote: str, edition: str, package: str, *, cwd: str = "",
              procs_files: list[str] | None = None) -> RemoteSession:
        """A fresh host from the zygote, its output captured here and, if given, inside the check's limits.

        `procs_files` are the `cgroup.procs` files of the check's resource groups: the host joins
        them before it runs a line of student code, so everything it starts counts there too.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        read_end, write_end = os.pipe()
        try:
            sock.connect(zygote)
            request = {"kind": "host", "edition": os.path.abspath(edition), "package": package, "cwd": cwd}
            socket.send_fds(sock, [wire.frame(request)], [write_end])
            reply, pid = recv_with_sender(sock)
        except (OSError, wire.WireError) as exc:
            os.close(read_end)
            sock.close()
            raise HostUnavailable(str(exc)) from None
        finally:
            os.close(write_end)
        if type(reply) is not dict or type(reply.get("pid")) is not int or not pid:
            os.close(read_end)
            sock.close()
            raise HostUnavailable(f"the sandbox answered {str(reply)[:200]}")
        join_groups(procs_files or [], pid)
        return cls(sock, pid, read_end)

    def close(self) -> None:
        self.ended = True
        with suppress(OSError):
            self.sock.close()
        if self.output is not None:
            self.output.close()

    # what crosses -----------------------------------------------------------------------------
    def expose(self, obj: Any, methods: list[str] | None = None, name: str = "") -> Exposed:
        """Let student code call `obj` (a function), or the named `methods` of `obj`."""
        kinds = None if methods is None else {m: call_kind(getattr(obj, m)) for m in methods}
        return Exposed(obj, kinds, None, name or type(obj).__name__)

    def _reference(self, obj: Any) -> Any:
        if isinstance(obj, Remote) and obj._session is self:  # noqa: SLF001 - Remote is this module's own proxy
            return {"$ref": obj._id}  # noqa: SLF001
        if isinstance(obj, Exposed):
            ident = id(obj)
            self.exposed[ident] = obj
            if obj.methods is None:
                return {"$judge": {"id": ident, "call": call_kind(obj.obj)}}
            return {"$judge": {"id": ident, "methods": obj.methods, "name": obj.name,
                               "attrs": wire.encode(obj.attrs, self._reference)}}
        raise TypeError(f"a {type(obj).__name__} cannot be sent to the process hosting student code "
                        f"(only plain data, objects that came from it, and target.expose(...))")

    # requests -------------------------------------------------------------------------------
    def _send(self, op: str, args: tuple[Any, ...]) -> Future[Any]:
        future: Future[Any] = Future()
        with self.lock:
            if self.ended:
                raise HostEnded(HostEnded.remote_described)
            self.counter += 1
            ident = self.counter
            body = wire.frame({"id": ident, "op": op, "args": [wire.encode(a, self._reference) for a in args]})
            self.pending[ident] = future
            try:
                self.sock.sendall(body)
            except OSError:
                self.pending.pop(ident, None)
                raise HostEnded(HostEnded.remote_described) from None
        return future

    def request(self, op: str, *args: Any) -> Any:
        on_loop = threading.current_thread() is threading.main_thread()
        self.blocking += on_loop  # while the check's loop waits here, it cannot run an exposed coroutine
        try:
            return self._result(self._send(op, args).result())
        finally:
            self.blocking -= on_loop

    async def arequest(self, op: str, *args: Any) -> Any:
        self.loop = asyncio.get_running_loop()
        return self._result(await asyncio.wrap_future(self._send(op, args)))

    # replies, and calls from student code ------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                message = wire.recv_frame(self.sock)
                if type(message) is not dict:
                    raise wire.WireError("a message that is not an object")
                if "cb" in message:
                    threading.Thread(target=self._answer, args=(message,), daemon=True).start()
                    continue
                ident = message.get("id")
                future = self.pending.pop(ident, None) if type(ident) is int else None
                if future is not None:
                    future.set_result(message)
        except (OSError, wire.WireError):
            pass
        with self.lock:
            self.ended = True
            waiting, self.pending = self.pending, {}
        for future in waiting.values():
            future.set_exception(HostEnded(HostEnded.remote_described))

    def _answer(self, message: dict[str, Any]) -> None:
        """Run the exposed function student code called, here, and send back what it returned or raised."""
        call = message.get("cb")
        try:
            exposed = self.exposed.get(message.get("obj"))  # type: ignore[arg-type]
            method = message.get("method")
            if exposed is None or type(method) is not str:
                raise LookupError("no such object of the check")
            if exposed.methods is None:
                fn = exposed.obj
            elif method in exposed.methods:
                fn = getattr(exposed.obj, method)
            else:
                raise AttributeError(f"{exposed.name} has no method {method!r}")
            args = wire.decode(message.get("args", []), self._on_tag)
            kwargs = wire.decode(message.get("kwargs", {"$dict": []}), self._on_tag)
            if type(args) is not list or type(kwargs) is not dict:
                raise wire.WireError("malformed arguments")
            result = self._run(fn, args, kwargs)
            reply: dict[str, Any] = {"cb": call, "ok": wire.encode(result, self._reference)}
        except RaiseInHost as raised:
            reply = {"cb": call, "error": {"raise": self._reference(raised.error)["$ref"]}}
        except BaseException as exc:  # noqa: BLE001 - student code gets the exception, as from any function
            reply = {"cb": call, "error": {"type": type(exc).__name__, "text": str(exc)}}
        try:
            body = wire.frame(reply)
        except (wire.WireError, TypeError, ValueError) as exc:
            body = wire.frame({"cb": call, "error": {"type": "ValueError", "text": f"unsendable result: {exc}"}})
        with self.lock, suppress(OSError):
            self.sock.sendall(body)

    def _run(self, fn: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        result = fn(*args, **kwargs)
        if isinstance(result, Remote) or not inspect.isawaitable(result):
            return result  # a handle goes back as it is, even one on an awaitable of student code
        loop = self.loop
        if loop is not None and loop.is_running() and not self.blocking:  # the check awaits: its loop is free
            return asyncio.run_coroutine_threadsafe(_awaited(result), loop).result()
        return asyncio.run(_awaited(result))

    def _result(self, reply: dict[str, Any]) -> Any:
        if "error" in reply:
            raise self._exception(reply["error"])
        return wire.decode(reply.get("ok"), self._on_tag)

    def _on_tag(self, tag: str, payload: Any) -> Any:
        if tag == "$ref":
            if type(payload) is not dict or type(payload.get("id")) is not int:
                raise wire.WireError("malformed handle")
            ident = payload["id"]
            if ident not in self.proxies:
                self.proxies[ident] = Remote(self, ident, str(payload.get("type", "object"))[:200])
            return self.proxies[ident]
        if tag == "$exc_class":
            return mirror_class(payload)
        if tag == "$exc":
            return self._exception(payload)
        raise wire.WireError(f"unknown tag {tag[:40]}")

    def _exception(self, payload: Any) -> BaseException:
        if type(payload) is not dict:
            return wire.WireError("malformed error")
        cls = mirror_class(payload.get("chain"))
        # Each exception class makes its own instances (BaseException.__new__ refuses OSError's kin);
        # mypy knows only that mirror_class returns a `type`.
        exc = cls.__new__(cls)  # type: ignore[call-overload]
        assert isinstance(exc, Mirrored) and isinstance(exc, BaseException)  # what _mirror makes
        text = payload.get("str")
        exc.args = (text,) if type(text) is str else ()
        exc.remote_text = text if type(text) is str else ""
        described = payload.get("described")
        exc.remote_described = described if type(described) is str else exc.remote_text
        ref = payload.get("ref")
        if type(ref) is int:
            exc.remote = self._on_tag("$ref", {"id": ref, "type": "exception"})
        attrs = payload.get("attrs")
        if type(attrs) is dict:
            for name, value in attrs.items():
                if type(name) is str and not name.startswith("_") and name not in ("args", "with_traceback", "remote"):
                    try:
                        setattr(exc, name, wire.decode(value, self._on_tag))
                    except (wire.WireError, AttributeError, TypeError):
                        continue
        return exc


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def recv_with_sender(sock: socket.socket) -> tuple[Any, int]:
    """The next frame, and the pid of the process that sent it as the kernel reports it here.

    The pid comes from SCM_CREDENTIALS, which the kernel fills in and translates into this
    process's pid namespace: a host inside a sandbox cannot name any other process.
    """
    header, ancillary, _, _ = sock.recvmsg(4, socket.CMSG_SPACE(12))
    pid = 0
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(data) >= 12:
            pid = struct.unpack("3i", data[:12])[0]
    if len(header) < 4:
        header += wire.recv_exactly(sock, 4 - len(header))
    return wire.parse(wire.recv_exactly(sock, wire.frame_length(header))), pid


def join_groups(procs_files: list[str], pid: int) -> None:
    """Put `pid` into the check's resource groups (memory and process count for all it starts)."""
    for path in procs_files:
        with open(path, "w") as procs:
            procs.write(str(pid))


class _Output:
    """What the host writes to stdout and stderr, collected as it comes (the last MiB is kept)."""

    LIMIT = 1 << 20

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self.lock:
                self.data += chunk
                del self.data[:-self.LIMIT]

    def pending(self) -> int:
        """Bytes written but not yet collected."""
        try:
            return struct.unpack("i", fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0"))[0]
        except OSError:
            return 0

    def text(self) -> str:
        with self.lock:
            return self.data.decode("utf-8", "replace")

    def close(self) -> None:
        with suppress(OSError):
            os.close(self.fd)


@asynccontextmanager
async def mcp_over_tcp(port: int) -> AsyncIterator[Any]:
    """An MCP client transport: JSON-RPC messages as lines over a loopback TCP connection."""
    import mcp_types as types
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    stream = await anyio.connect_tcp("127.0.0.1", port)
    incoming = BufferedByteReceiveStream(stream)
    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)

    async def receive() -> None:
        async with read_writer:
            while True:
                try:
                    line = await incoming.receive_until(b"\n", wire.MAX_FRAME)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError,
                        anyio.BrokenResourceError, anyio.DelimiterNotFound, OSError):
                    return
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # noqa: BLE001 - the client reports a garbled message
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def send() -> None:
        async with write_reader:
            async for item in write_reader:
                data = item.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                try:
                    await stream.send(data.encode("utf-8"))
                except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                    return

    async with anyio.create_task_group() as tg:
        tg.start_soon(receive)
        tg.start_soon(send)
        try:
            yield read_stream, write_stream
        finally:
            await stream.aclose()
            tg.cancel_scope.cancel()
