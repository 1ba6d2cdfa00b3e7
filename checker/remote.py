"""The check's side of process isolation: handles on objects that live in the host process.

`Target` hands a check `Remote` handles instead of the student's real modules when grading is
isolated. Reading an attribute, calling, awaiting, entering a context manager: each is one
request to the host (see `checker.host`). What comes back is either plain data, rebuilt here
from JSON as built-in values, or another handle. An exception raised by student code arrives
as a stand-in class created here, with the same name and the nearest base class this process
already trusts (ToolError, ValueError, ...), so `except` and `pytest.raises` read as usual.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
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


class Mirrored:
    """Mixed into every stand-in exception: its text is the one the host computed."""

    remote_described = ""
    remote_text = ""

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


class RemoteSession:
    """One connection to one host process (one per check)."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        self.lock = threading.Lock()
        self.pending: dict[int, Future[Any]] = {}
        self.proxies: dict[int, Remote] = {}
        self.counter = 0
        self.ended = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @classmethod
    def spawn(cls, zygote: str, edition: str, package: str) -> RemoteSession:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(zygote)
        sock.sendall(wire.frame({"edition": os.path.abspath(edition), "package": package}))
        reply = wire.recv_frame(sock)
        if type(reply) is not dict or type(reply.get("pid")) is not int:
            raise HostEnded(f"no process to host the code: {reply}")
        return cls(sock, reply["pid"])

    def close(self) -> None:
        self.ended = True
        try:
            self.sock.close()
        except OSError:
            pass

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
        return self._result(self._send(op, args).result())

    async def arequest(self, op: str, *args: Any) -> Any:
        return self._result(await asyncio.wrap_future(self._send(op, args)))

    def _reference(self, obj: Any) -> Any:
        if isinstance(obj, Remote) and obj._session is self:
            return {"$ref": obj._id}
        raise TypeError(f"a {type(obj).__name__} cannot be sent to the process hosting student code "
                        f"(only plain data and objects that came from it)")

    # replies --------------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while True:
                reply = wire.recv_frame(self.sock)
                if type(reply) is not dict:
                    raise wire.WireError("a reply that is not an object")
                future = self.pending.pop(reply.get("id"), None) if type(reply.get("id")) is int else None
                if future is not None:
                    future.set_result(reply)
        except (OSError, wire.WireError):
            pass
        with self.lock:
            self.ended = True
            waiting, self.pending = self.pending, {}
        for future in waiting.values():
            future.set_exception(HostEnded(HostEnded.remote_described))

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
        exc = cls.__new__(cls)
        text = payload.get("str")
        exc.args = (text,) if type(text) is str else ()
        exc.remote_text = text if type(text) is str else ""
        described = payload.get("described")
        exc.remote_described = described if type(described) is str else exc.remote_text
        attrs = payload.get("attrs")
        if type(attrs) is dict:
            for name, value in attrs.items():
                if type(name) is str and not name.startswith("_") and name not in ("args", "with_traceback"):
                    try:
                        setattr(exc, name, wire.decode(value, self._on_tag))
                    except (wire.WireError, AttributeError, TypeError):
                        continue
        return exc



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


class Zygote:
    """The warm process that forks a fresh host for every check (see `checker.host`)."""

    def __init__(self, wall_seconds: float, memory_mb: int, output_mb: int, preload: list[str]) -> None:
        import subprocess
        import tempfile

        self.folder = tempfile.mkdtemp(prefix="course-hosts-")
        os.chmod(self.folder, 0o755)  # sandboxed checks connect; the zygote checks who they are
        self.path = os.path.join(self.folder, "zygote.sock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "checker.host", self.path, str(wall_seconds), str(memory_mb), str(output_mb),
             *preload],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=_zygote_env())
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != b"ready":
            self.stop()
            raise RuntimeError("the process that hosts student code did not start")

    def stop(self) -> None:
        import shutil

        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _zygote_env() -> dict[str, str]:
    """The worker's environment without any edition on the path: the zygote imports no student code."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "COURSE_EDITION", "COURSE_HOST_ZYGOTE"):
        env.pop(name, None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root  # the `checker` package itself
    return env
