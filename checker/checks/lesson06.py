"""Lesson 6 checks: replicas that behave as one server.

Real replicas are separate `python -m uvicorn --factory research_desk.scaling:build_app`
processes on loopback ports, started in parallel and stopped in `finally`. nginx and
redis-server are started by the checks that need them, on free loopback ports with private
working folders; without the binary those checks are skipped (with install advice), never failed.
Keys, names, channels and titles are random on every run, so only code that reads its
configuration passes.
"""

from __future__ import annotations

import ast
import contextlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import string
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
import dataclasses
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.caching import CacheConfig, InMemoryResponseCacheStore
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import RequestStateSecurity
from mcp.server.request_state import InvalidRequestState
from mcp.shared.subscriptions import (PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged,
                                      event_from_wire, event_to_notification)
from mcp.types import INVALID_PARAMS, ElicitResult, InputRequiredResult

from checker.marks import check, installed_or_skip
from checker.target import Target, free_port, leaf_exception

pytestmark = pytest.mark.anyio

KEYS = "RESEARCH_DESK_STATE_KEYS"
NOTES = "desk://notes"


def _word(k: int = 6) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=k))


def _replica_names(count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        names.add(random.choice(string.ascii_lowercase) + "".join(random.choices(string.ascii_lowercase + string.digits, k=3)))
    return sorted(names)


# --- real replicas ---------------------------------------------------------------------------
#
# A replica is `uvicorn --factory <package>.scaling:build_app` in its own OS process. Importing
# the SDK takes a CPU-second or more, so a small "zygote" process imports the SDK and uvicorn
# once (never the student's package) and forks each replica from there; every child then runs
# uvicorn's own command line, exactly as `python -m uvicorn` does, and imports the student's
# module itself. The zygote serves one connection per check: each line read is a replica to
# fork (its pid is the answer); when the check closes its side, that check's replicas are
# stopped, and the connection closes once they have gone. The zygote records how each replica
# ended.
#
# For a self-check, one zygote serves the whole lesson run (`lesson_services`, started by the
# runner before the checks fork), so the SDK is imported once, not once per check. When grading,
# each check starts its own through `target.command`, so it and its replicas run in the
# submission's sandbox, inside that check's limits: the check reads what they write with
# `target.read_text`, and stops them only through the zygote (its stdin, or killing it, which
# takes its process group along).

_ZYGOTE = r"""
import json, os, select, signal, socket, sys, time, traceback
import starlette.applications, httpx2
from uvicorn.main import main as uvicorn_main
import mcp.server.mcpserver, mcp.server.streamable_http_manager, mcp.server.subscriptions
logs = {}    # replica pid -> its log file
owned = {}   # connection -> the pids of the replicas it asked for
buffers = {}

def reap(*_):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in logs:
            with open(logs.pop(pid) + ".exit", "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))

def stop(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 1
    while any(pid in logs for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
        reap()
    for pid in pids:
        if pid in logs:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

def fork(spec, reply, keep):
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            os.close(fd)
        os.chdir(spec.get("cwd") or ".")
        os.environ.clear()
        os.environ.update(spec["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0); os.dup2(out, 1); os.dup2(out, 2)
        sys.argv = ["uvicorn", *spec["argv"]]
        code = 1
        try:
            uvicorn_main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    logs[pid] = spec["log"]
    reply(f"{pid}\n".encode())
    return pid

signal.signal(signal.SIGCHLD, reap)
if len(sys.argv) < 2:  # one check's own zygote: its requests on stdin, the pids on stdout
    pids = []
    for line in sys.stdin:
        pids.append(fork(json.loads(line), lambda data: (sys.stdout.buffer.write(data), sys.stdout.flush()), []))
    stop(pids)
    sys.exit(0)
# The lesson's zygote: the runner's listening socket is fd argv[1]; it ends when its stdin closes.
listener = socket.socket(fileno=int(sys.argv[1]))
while True:
    try:
        ready, _, _ = select.select([sys.stdin, listener, *owned], [], [])
    except InterruptedError:
        continue
    if sys.stdin in ready and not sys.stdin.buffer.read1(1):
        break
    if listener in ready:
        conn, _ = listener.accept()
        owned[conn], buffers[conn] = [], b""
    for conn in [c for c in ready if c in owned]:
        data = conn.recv(65536)
        if not data:
            stop(owned.pop(conn))
            buffers.pop(conn)
            conn.close()
            continue
        buffers[conn] += data
        while b"\n" in buffers[conn]:
            line, buffers[conn] = buffers[conn].split(b"\n", 1)
            keep = [listener.fileno(), *(c.fileno() for c in owned)]
            owned[conn].append(fork(json.loads(line), conn.sendall, keep))
stop([pid for pids in owned.values() for pid in pids])
"""

_shared_zygote: str | None = None  # the lesson's zygote's socket, in a self-check (see lesson_services)


@contextlib.contextmanager
def lesson_services() -> Any:
    """The runner enters this once around all of a self-check's checks: one zygote for the lesson.

    The listening socket is made here, before the checks fork, so a check can connect at once;
    the zygote accepts once it has imported the SDK. It ends when its stdin closes (here, or when
    the runner exits). Its replicas are never older than the check that asked for them.
    """
    global _shared_zygote
    import socket
    import tempfile

    target = Target.from_environment()
    folder = Path(tempfile.mkdtemp(prefix="lesson06-zygote-"))
    path = folder / "zygote.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    zygote = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(listener.fileno())], env=target.env(_passthrough()),
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              pass_fds=[listener.fileno()])
    listener.close()
    _shared_zygote = str(path)
    try:
        yield
    finally:
        _shared_zygote = None
        assert zygote.stdin is not None
        zygote.stdin.close()
        try:
            zygote.wait(timeout=5)
        except subprocess.TimeoutExpired:
            zygote.kill()
            zygote.wait()
        shutil.rmtree(folder, ignore_errors=True)


def _passthrough() -> dict[str, str]:
    return {k: os.environ[k] for k in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE") if k in os.environ}


def _written(target: Target, path: Path) -> str | None:
    """A file the replicas' side wrote, read where they run; None if there is none."""
    try:
        return target.read_text(path)
    except OSError:
        return None


class Replica:
    def __init__(self, target: Target, name: str, port: int, log: Path) -> None:
        self.target, self.name, self.port, self.log = target, name, port, log

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def exit_code(self) -> int | None:
        marker = _written(self.target, Path(f"{self.log}.exit"))
        if marker is None:
            return None
        try:
            return int(marker)
        except ValueError:
            return 1


def _startup_error(target: Target, log: Path) -> str:
    lines = (_written(target, log) or "").strip().splitlines()
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (errors[-1] if errors else "\n".join(lines[-3:])) or "no output"


async def _wait_healthy(replica: Replica) -> None:
    async with httpx2.AsyncClient(timeout=2) as http:
        with anyio.fail_after(15):
            while True:
                if replica.exit_code() is not None:
                    pytest.fail(f"replica {replica.name} did not start: {_startup_error(replica.target, replica.log)}")
                try:
                    response = await http.get(f"http://127.0.0.1:{replica.port}/health")
                    if response.status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.05)


async def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 4
    for process in processes:
        while process.poll() is None and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        if process.poll() is None:
            process.kill()
            process.wait()


class _OwnZygote:
    """This check's own zygote (when grading): requests on its stdin, pids on its stdout."""

    def __init__(self, target: Target, tmp: Path) -> None:
        self.process = subprocess.Popen(target.command([sys.executable, "-c", _ZYGOTE]), env=target.env(_passthrough()),
                                        cwd=tmp, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def ask(self, request: bytes) -> bytes:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(request)
        self.process.stdin.flush()
        return self.process.stdout.readline()

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None
            self.process.stdin.close()
        deadline = time.monotonic() + 5
        while self.process.poll() is None and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


class _SharedZygote:
    """A connection to the lesson's zygote (a self-check): it stops this check's replicas when closed."""

    def __init__(self, path: str) -> None:
        import socket

        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.socket.connect(path)
        self.reader = self.socket.makefile("rb")

    def ask(self, request: bytes) -> bytes:
        self.socket.sendall(request)
        return self.reader.readline()

    async def close(self) -> None:
        import socket

        with contextlib.suppress(OSError):
            self.socket.shutdown(socket.SHUT_WR)  # "no more": the zygote stops this check's replicas
            self.socket.settimeout(5)
            await anyio.to_thread.run_sync(self.reader.read)  # ...and closes its side once they have gone
        self.reader.close()
        self.socket.close()


@asynccontextmanager
async def _replicas(target: Target, tmp: Path, specs: dict[str, dict[str, str]]) -> AsyncIterator[list[Replica]]:
    """One real uvicorn process per name, started in parallel, with only the given configuration."""
    zygote: _OwnZygote | _SharedZygote
    if _shared_zygote is not None and not target.isolated:
        zygote = _SharedZygote(_shared_zygote)
    else:
        zygote = _OwnZygote(target, tmp)
    started: list[Replica] = []
    try:
        for name, extra in specs.items():
            port = free_port()
            log = tmp / f"replica-{name}.log"
            env = target.env({**_passthrough(), "RESEARCH_DESK_REPLICA": name,
                              "RESEARCH_DESK_ROOT": str(tmp / "workspace"), **extra})
            argv = ["--factory", f"{target.package}.scaling:build_app", "--host", "127.0.0.1", "--port", str(port),
                    "--log-level", "warning", "--no-access-log"]
            request = json.dumps({"env": env, "argv": argv, "log": str(log), "cwd": str(tmp)}) + "\n"
            line = await anyio.to_thread.run_sync(zygote.ask, request.encode())  # it forked the replica
            if not line.strip():
                pytest.fail("could not start the replicas (the helper process exited): is the SDK installed?")
            started.append(Replica(target, name, port, log))
        async with anyio.create_task_group() as tg:
            for replica in started:
                tg.start_soon(_wait_healthy, replica)
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            await zygote.close()


# --- multi-round-trip by hand ------------------------------------------------------------------


async def _accept(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"file_it": True})


class Split:
    """One file_note call whose first round went to one replica and whose retry went to another."""

    def __init__(self, result: dict[str, Any] | None = None, error: MCPError | None = None) -> None:
        self.result, self.error = result, error


async def _split_call(first: Replica, second: Replica, title: str, text: str) -> Split:
    args = {"title": title, "text": text}
    with anyio.fail_after(10):
        async with Client(first.url, elicitation_callback=_accept) as a, \
                Client(second.url, elicitation_callback=_accept) as b:
            opening = await a.session.call_tool("file_note", args, allow_input_required=True)
            if not isinstance(opening, InputRequiredResult):
                pytest.fail(f"file_note on replica {first.name} should ask before filing (an InputRequiredResult), "
                            f"got {type(opening).__name__}")
            answers = {key: ElicitResult(action="accept", content={"file_it": True}) for key in opening.input_requests}
            try:
                final = await b.session.call_tool("file_note", args, input_responses=answers,
                                                  request_state=opening.request_state, allow_input_required=True)
            except MCPError as exc:
                return Split(error=exc)
    if isinstance(final, InputRequiredResult):
        pytest.fail(f"replica {second.name} asked again instead of finishing the call it was given")
    if final.is_error:
        pytest.fail(f"file_note failed on replica {second.name}: {final.content[0].text if final.content else ''}")
    return Split(result=final.structured_content or {})


async def _server_names(*replicas: Replica) -> dict[str, str]:
    names = {}
    for replica in replicas:
        async with Client(replica.url) as client:
            names[replica.name] = client.server_info.name if client.server_info else "?"
    return names


def _is_rejected_state(error: MCPError | None) -> bool:
    return error is not None and error.code == INVALID_PARAMS and "requeststate" in error.message.lower()


# --- routing helpers ---------------------------------------------------------------------------------


class _RoundRobin(httpx2.AsyncBaseTransport):
    """Send each HTTP request to the next replica in turn (what a plain load balancer does)."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(port=next(self._ports))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def _replica_of(client: Any) -> str:
    result = await client.call_tool("replica_info", {})
    assert not result.is_error, f"replica_info failed: {result.content[0].text if result.content else ''}"
    return str((result.structured_content or {}).get("replica"))


# --- events where the student's code lives ------------------------------------------------------
#
# Buses, listeners and the events they carry live where the student's code does. The check makes
# the events it publishes there from the SDK's own classes (`target.library`), gives buses listeners
# of its own (`target.expose`), and turns every event it hears or gets back into the SDK's class
# here, from the class and fields it reads: so the checks compare real events, and anything that is
# not one of the SDK's events becomes a stand-in that equals nothing.

_EVENT_CLASSES = {f"{cls.__module__}.{cls.__qualname__}": cls
                  for cls in (ToolsListChanged, PromptsListChanged, ResourcesListChanged, ResourceUpdated)}


class _NotAnEvent:
    """What the student's code gave instead of one of the SDK's events, as its repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _kind(target: Target, obj: Any) -> str:
    """The name of the class of `obj`, a value from the student's code."""
    return target.classes(obj)[0].rsplit(".", 1)[-1]


def _event(target: Target, obj: Any) -> Any:
    """`obj` (from the student's code) as the SDK event it is, None, or a stand-in that equals nothing."""
    if obj is None:
        return None
    cls = _EVENT_CLASSES.get(target.classes(obj)[0])
    if cls is not None:
        try:
            fields: dict[str, Any] | None = {field.name: getattr(obj, field.name) for field in dataclasses.fields(cls)}
        except AttributeError:
            fields = None
        if fields is not None and all(type(value) is str for value in fields.values()):
            return cls(**fields)
    try:
        text = repr(obj)[:300]
    except Exception:  # noqa: BLE001 - a student's __repr__ may raise
        text = "<?>"
    return _NotAnEvent(f"{text} (a {_kind(target, obj)})")


def _there(target: Target, event: Any) -> Any:
    """The same SDK event, made where the student's code runs (to publish it, or to encode it)."""
    cls = getattr(target.library(type(event).__module__), type(event).__qualname__)
    return cls(**dataclasses.asdict(event))


def _listener(target: Target, heard: list[Any]) -> Any:
    """A listener of the check's for a bus: every event it hears goes into `heard`, as the SDK's event."""
    return target.expose(lambda event: heard.append(_event(target, event)))


def _exploding(complaint: str) -> Any:
    """A listener that always raises, with `complaint` as its message."""
    def explode(event: Any) -> None:
        raise RuntimeError(complaint)
    return explode


# --- checks ----------------------------------------------------------------------------------------


@check("request-state keys come from configuration, never from code", points=2,
       hint="Replicas can only share what they all read: the environment. RESEARCH_DESK_STATE_KEYS holds a key "
            "ring (comma-separated); RequestStateSecurity takes a ring in which the first key seals and every key "
            "unseals, which is how keys rotate. No variable: no policy. When the SDK refuses a key, the operator "
            "needs to hear which setting to fix.")
async def test_state_keys_from_configuration(target: Target) -> None:
    scaling = target.module("scaling")
    current, previous, other = (secrets.token_hex(32) for _ in range(3))
    env = {KEYS: f"{current},{previous}", "RESEARCH_DESK_REPLICA": "a"}
    policy = scaling.state_security_from_env(env)
    sdk_policy = f"{RequestStateSecurity.__module__}.{RequestStateSecurity.__qualname__}"
    assert sdk_policy in target.classes(policy), (
        f"with {KEYS} set, state_security_from_env should return a RequestStateSecurity, got {policy!r}")
    payload = secrets.token_bytes(24)
    token = policy.codec.seal(payload)
    try:
        assert RequestStateSecurity(keys=[current]).codec.unseal(token) == payload
    except InvalidRequestState:
        pytest.fail(f"state was not sealed with the first key in {KEYS}: the first key seals, every key unseals")
    try:
        old = RequestStateSecurity(keys=[previous]).codec.seal(payload)
        assert policy.codec.unseal(old) == payload
    except InvalidRequestState:
        pytest.fail(f"state sealed with the second key in {KEYS} was rejected: every configured key must "
                    f"unseal, or a key rotation logs everyone out")
    again = scaling.state_security_from_env(dict(env))
    try:
        again.codec.unseal(token)
    except InvalidRequestState:
        pytest.fail("two policies built from the same configuration do not accept each other's state: the key "
                    "must come from the configuration, not be generated in the process")
    stranger = scaling.state_security_from_env({KEYS: other})
    with pytest.raises(InvalidRequestState, match=""):
        stranger.codec.unseal(token)
    for empty in ({}, {KEYS: ""}):
        assert scaling.state_security_from_env(empty) is None, (
            f"with {empty or 'no configuration'}, return None (the SDK then keeps a key for this one process)")
    for short in (_word(12), "k" * 31, "é" * 15 + "k"):
        try:
            scaling.state_security_from_env({KEYS: short})
        except ValueError as exc:
            assert KEYS in str(exc), f"the error for a short key should name {KEYS} so the operator knows what to fix: {exc}"
        else:
            pytest.fail(f"a {len(short.encode())}-byte secret was accepted: request-state keys need at least 32 bytes")
    for exact in (secrets.token_hex(16), "é" * 16):
        try:
            fits = scaling.state_security_from_env({KEYS: exact})
        except ValueError as exc:
            pytest.fail(f"a key of exactly 32 bytes ({len(exact)} characters) was refused ({exc}): the SDK wants at least "
                        "32 bytes, so 32 is enough; let RequestStateSecurity judge the keys")
        assert sdk_policy in target.classes(fits), f"a 32-byte key should give a RequestStateSecurity, got {fits!r}"
    source = target.read_text(scaling.__file__)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) >= 32:
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            looks_random = (re.fullmatch(r"[A-Za-z0-9+/=_\-]+", text) is not None
                            and re.search(r"[0-9]", text) is not None and re.search(r"[A-Za-z]", text) is not None)
            if isinstance(node.value, bytes) or looks_random:
                pytest.fail(f"scaling.py line {node.lineno} holds a string that looks like a secret key "
                            f"({text[:6]}...): keys belong in the environment, never in code")


@check("every replica has the same server name and publishes through the bus it is given", points=2,
       hint="The SDK seals request state for an audience: the server's name. Name the server the same on every "
            "replica (tell replicas apart elsewhere, e.g. in replica_info), and pass the bus as the server's "
            "`subscriptions`.")
async def test_one_name_and_the_given_bus(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    first, second = _replica_names(2)
    servers = [scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
               for name in (first, second)]
    assert servers[0].name == servers[1].name, (
        f"replicas {first} and {second} are named {servers[0].name!r} and {servers[1].name!r}: state sealed by "
        f"one is addressed to a different audience than the other, so a retry on a sibling fails")
    assert first not in servers[0].name, "the replica's own name is part of the server name; keep it out"
    bus = target.library("mcp.server.subscriptions").InMemorySubscriptionBus()  # the SDK's, where the server lives
    heard: list[Any] = []
    bus.subscribe(_listener(target, heard))
    server = scaling.create_server({"RESEARCH_DESK_REPLICA": first, "RESEARCH_DESK_ROOT": str(tmp_path)}, bus=bus)
    title = f"{_word()} {_word()}"
    async with target.client(server, elicitation_callback=_accept) as client:
        result = await client.call_tool("file_note", {"title": title, "text": _word(20)})
    assert not result.is_error, f"file_note failed: {result.content[0].text if result.content else ''}"
    assert ResourceUpdated(uri=NOTES) in heard, (
        "filing a note published nothing on the bus create_server was given: pass it to MCPServer(subscriptions=...)")
    # The lifespan replica_server is handed is the one that keeps a Redis bus connected: it must run.
    noted: list[str] = []
    stand_in = target.library("unittest.mock").MagicMock
    on_exit = target.expose(lambda *exc_info: noted.append("stop"))

    def lifespan(app: Any) -> Any:
        noted.append("start")
        return stand_in(**{"__aenter__.return_value": {}, "__aexit__.side_effect": on_exit})

    bare = scaling.replica_server({"RESEARCH_DESK_REPLICA": second, "RESEARCH_DESK_ROOT": str(tmp_path)},
                                  lifespan=target.expose(lifespan),
                                  events=target.library("mcp.server.subscriptions").InMemorySubscriptionBus())
    async with target.client(bare) as client:
        await client.list_tools()
    assert noted[:1] == ["start"], (
        "replica_server(environ, lifespan=..., events=...) built a server that never ran the lifespan it was given: "
        "pass it to MCPServer(lifespan=...), it is what connects a Redis bus")


@check("create_server is configured only from the mapping it is given", points=2,
       hint="create_server(environ) hands `environ` to replica_server, and everything must come from it, never from "
            "os.environ: the notebook and the tests build replicas in one process from dicts. Two mappings with the "
            "same RESEARCH_DESK_STATE_KEYS share state; a mapping with another key does not.")
async def test_configured_from_the_mapping(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    key, other = secrets.token_hex(32), secrets.token_hex(32)
    first, second, stranger = _replica_names(3)

    def build(name: str, ring: str) -> Any:
        return scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path), KEYS: ring})

    one, sibling, foreign = build(first, key), build(second, key), build(stranger, other)
    text = " ".join(_word() for _ in range(6))
    with anyio.fail_after(10):
        async with target.client(one, elicitation_callback=_accept) as a, \
                target.client(sibling, elicitation_callback=_accept) as b, \
                target.client(foreign, elicitation_callback=_accept) as c:
            finished = await _split_in_memory(a, b, f"{_word()} {_word()}", text)
            refused = await _split_in_memory(a, c, _word(), _word())
    if isinstance(finished, MCPError):
        pytest.fail(f"round 1 on replica {first}, retry on replica {second}, both built from mappings holding the same "
                    f"{KEYS}: MCPError {finished.code} {finished.message}. Does replica_server read the mapping it is "
                    "given, rather than os.environ?")
    assert not isinstance(finished, InputRequiredResult), f"replica {second} asked again instead of finishing the call"
    receipt = finished.structured_content or {}
    assert not finished.is_error and receipt.get("replica") == second and receipt.get("filed"), (
        f"the retry should be finished (and filed) by replica {second}, got {receipt or finished.content}")
    assert text in (_written(target, tmp_path / str(receipt.get("name"))) or ""), "the note was not written"
    if not isinstance(refused, MCPError):
        pytest.fail(f"state sealed by replica {first} was accepted by replica {stranger}, whose mapping holds another "
                    "key: the keys in use are not the ones the mapping configures")
    assert _is_rejected_state(refused), f"expected 'Invalid or expired requestState' (-32602), got {refused}"


async def _split_in_memory(first: Any, second: Any, title: str, text: str) -> Any:
    """Round 1 of file_note through one client, the retry through the other: the final result, or the MCPError."""
    args = {"title": title, "text": text}
    opening = await first.session.call_tool("file_note", args, allow_input_required=True)
    if not isinstance(opening, InputRequiredResult):
        pytest.fail(f"file_note should ask before filing (an InputRequiredResult), got {type(opening).__name__}")
    answers = {key: ElicitResult(action="accept", content={"file_it": True}) for key in opening.input_requests}
    try:
        return await second.session.call_tool("file_note", args, input_responses=answers,
                                              request_state=opening.request_state, allow_input_required=True)
    except MCPError as exc:
        return exc


@check("a multi-round-trip call finishes on a sibling replica when keys are shared", points=3,
       hint="Round 1 on one replica returns sealed request_state; the retry may reach any replica. Give every "
            "replica the same RESEARCH_DESK_STATE_KEYS and read them in state_security_from_env; keep the server "
            "name identical everywhere.")
async def test_retry_on_a_sibling(target: Target, tmp_path: Path) -> None:
    key = secrets.token_hex(32)
    first, second = _replica_names(2)
    async with _replicas(target, tmp_path, {first: {KEYS: key}, second: {KEYS: key}}) as (a, b):
        for one, other in ((a, b), (b, a)):
            title = f"{_word()} {_word()}"
            text = " ".join(_word() for _ in range(8))
            split = await _split_call(one, other, title, text)
            if split.error is not None:
                names = await _server_names(a, b)
                why = (f"the replicas are named {names[a.name]!r} and {names[b.name]!r}, so the audience differs"
                       if len(set(names.values())) > 1 else
                       f"both replicas were started with the same {KEYS}: is it read?")
                pytest.fail(f"round 1 on replica {one.name}, retry on replica {other.name}: "
                            f"MCPError {split.error.code} {split.error.message}; {why}")
            assert split.result and split.result.get("replica") == other.name and split.result.get("filed"), (
                f"the retry should be finished (and filed) by replica {other.name}, got {split.result}")
            note = tmp_path / "workspace" / str(split.result.get("name"))
            assert text in (_written(target, note) or ""), f"the note was not written to {note}"


@check("replicas without keys, or with other keys, reject each other's state", points=2,
       hint="Without RESEARCH_DESK_STATE_KEYS each process must seal with a key of its own (return None and let "
            "the SDK make one); a key written in the code, or a default key, would let any copy of the code "
            "forge state for your server.")
async def test_strangers_reject_state(target: Target, tmp_path: Path) -> None:
    lone1, lone2, keyed = _replica_names(3)
    specs = {lone1: {}, lone2: {}, keyed: {KEYS: secrets.token_hex(32)}}
    async with _replicas(target, tmp_path, specs) as (p, q, k):
        same = await _split_call(p, p, _word(), _word())
        assert same.error is None, (
            f"without keys a replica must still finish its own multi-round-trip calls, got {same.error}")
        for one, other in ((p, q), (p, k), (k, p)):
            split = await _split_call(one, other, _word(), _word())
            if split.error is None:
                pytest.fail(f"state sealed by replica {one.name} ({'own key' if one is not k else 'configured key'}) "
                            f"was accepted by replica {other.name} ({'configured key' if other is k else 'no key'}): "
                            f"they share a key nobody configured. Is there a key (or a default) in the code?")
            assert _is_rejected_state(split.error), (
                f"expected 'Invalid or expired requestState' (-32602), got {split.error.code} {split.error.message}")


@check("stateless legacy calls spread over replicas, stateful sessions stay the default", points=2,
       hint="streamable_http_app has a switch that serves 2025 clients without sessions, so any replica can answer "
            "any of their requests. It also removes their back-channel, so it is opt-in: on only when "
            "RESEARCH_DESK_STATELESS says \"1\".")
async def test_legacy_stateless_spreads(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    names = _replica_names(2)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}
    for value in (None, "0", "false", "1"):
        env = {"RESEARCH_DESK_REPLICA": names[0], "RESEARCH_DESK_ROOT": str(tmp_path)}
        if value is not None:
            env["RESEARCH_DESK_STATELESS"] = value
        async with target.http(scaling.build_app(env), graceful=False) as url:
            async with httpx2.AsyncClient() as http:
                response = await http.post(url, headers={"accept": "application/json, text/event-stream"}, json=initialize)
        ids = response.headers.get_list("mcp-session-id")
        setting = "without RESEARCH_DESK_STATELESS" if value is None else f"with RESEARCH_DESK_STATELESS={value!r}"
        if value == "1":
            assert response.status_code == 200 and not ids, (
                f"{setting} a legacy initialize got Mcp-Session-Id {ids} (HTTP {response.status_code}): stateless serving "
                "has no session, so there is nothing to tag, and a made-up id would send the client back with it")
        else:
            assert ids, (f"{setting} a legacy client should get a session (Mcp-Session-Id): stateless mode drops the "
                         "back-channel, so it is on only for the value \"1\"")
    served: list[str] = []
    spec = {name: {"RESEARCH_DESK_STATELESS": "1"} for name in names}
    async with _replicas(target, tmp_path, spec) as (a, b):
        transport = _RoundRobin([a.port, b.port])
        async with httpx2.AsyncClient(transport=transport, timeout=10) as http:
            try:
                with anyio.fail_after(10):
                    async with Client(streamable_http_client(a.url, http_client=http), mode="legacy") as client:
                        for _ in range(8):
                            served.append(await _replica_of(client))
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"a legacy client whose requests alternate between two replicas failed with "
                            f"{type(leaf).__name__}: {leaf} (with RESEARCH_DESK_STATELESS=1 there must be no session)")
    counts = {name: served.count(name) for name in names}
    assert all(count >= 2 for count in counts.values()), f"calls should reach both replicas, got {counts}"


@check("a legacy session id names the replica that owns it", points=2,
       hint="An ASGI middleware sees both directions: it can add the owner to the Mcp-Session-Id a response "
            "carries, and take off its own owner (and only its own) from a request's header before the SDK looks "
            "the session up.")
async def test_session_ids_name_their_owner(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    name, stranger = _replica_names(2)
    seen: list[str] = []

    async def record(response: httpx2.Response) -> None:
        if response.headers.get("mcp-session-id"):
            seen.append(response.headers["mcp-session-id"])

    app = scaling.build_app({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
    async with target.http(app) as url:
        async def raw_call(session_id: str) -> int:
            headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25",
                       "mcp-session-id": session_id}
            async with httpx2.AsyncClient(timeout=5) as raw:
                answer = await raw.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
            return answer.status_code

        async with httpx2.AsyncClient(event_hooks={"response": [record]}, timeout=10) as http:
            try:
                async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                    served = [await _replica_of(client) for _ in range(3)]
                    current = seen[0] if seen else ""
                    raw_id = current.split(".", 1)[-1]
                    own, foreign = await raw_call(current), await raw_call(f"{stranger}.{raw_id}")
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"a legacy session broke after the first response: {type(leaf).__name__}: {leaf}. "
                            f"Does the middleware strip its prefix from incoming session ids?")
        assert seen, "the legacy client never received an Mcp-Session-Id"
        assert all(value.startswith(f"{name}.") and len(value) > len(name) + 8 for value in seen), (
            f"session ids should look like '{name}.<id>', got {seen[0]!r}")
        assert served == [name] * 3
        assert own == 200, f"a request with this replica's own session id got HTTP {own}, expected 200"
        assert foreign == 404, (
            f"a session id tagged for replica {stranger} reached replica {name} and got HTTP {foreign}; only "
            f"this replica's own prefix may be removed, so anything else stays 'Session not found' (404)")
        async with target.client(url) as modern:
            assert await _replica_of(modern) == name, "modern clients must work through the middleware too"
        async with httpx2.AsyncClient(timeout=5) as raw:
            discover = await raw.post(url, headers={"accept": "application/json, text/event-stream",
                                                    "mcp-protocol-version": "2026-07-28", "mcp-method": "server/discover"},
                                      json={"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
                                          "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                          "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
                                          "io.modelcontextprotocol/clientCapabilities": {}}}})
        assert discover.status_code == 200 and "mcp-session-id" not in discover.headers, (
            f"a modern request through the middleware got HTTP {discover.status_code} with Mcp-Session-Id "
            f"{discover.headers.get('mcp-session-id')!r}: tag only a session id the SDK sent, never invent one")


def _render_nginx(template: str, replicas: dict[str, int], port: int, prefix: Path) -> str:
    out: list[str] = []
    for line in template.splitlines():
        if line.lstrip().startswith("#"):
            continue
        line = line.replace("{{prefix}}", str(prefix)).replace("{{port}}", str(port))
        if "{{replica" in line:
            out += [line.replace("{{replica_port}}", str(p)).replace("{{replica}}", n) for n, p in replicas.items()]
        else:
            out.append(line)
    return "\n".join(out) + "\n"


@asynccontextmanager
async def _nginx(target: Target, tmp: Path, replicas: dict[str, int]) -> AsyncIterator[str]:
    """nginx with the student's configuration: it may load modules, so it runs where student code runs."""
    scaling = target.module("scaling")
    template = _written(target, Path(scaling.__file__).parent / "deploy" / "nginx-sticky.conf")
    if template is None:
        pytest.fail(f"{target.package}/deploy/nginx-sticky.conf is missing")
    prefix = tmp / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    with open(conf, "x", encoding="utf-8") as out:  # a new file: never one student code put there
        out.write(_render_nginx(template, replicas, port, prefix))
    # No `-e` (nginx >= 1.19.5 only): until it reads the configuration's own error_log, an nginx that
    # cannot open its built-in log path says so on stderr and carries on.
    process = subprocess.Popen(target.command([shutil.which("nginx") or "nginx", "-p", str(prefix), "-c", str(conf)]),
                               env=target.env(), cwd=prefix,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(10):
            while True:
                if process.poll() is not None:
                    log = (_written(target, prefix / "error.log") or "").strip().splitlines()
                    pytest.fail(f"nginx refused deploy/nginx-sticky.conf: {log[-1] if log else 'no error log'}")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([process])


@check("through nginx, every legacy session stays on its replica and sessions spread", points=3,
       hint="nginx cannot remember which replica answered an initialize, and that request has no session id "
            "yet. Route on what every later request carries: the owner written into Mcp-Session-Id. Requests "
            "without one may go anywhere.")
async def test_nginx_sticky_legacy_sessions(target: Target, tmp_path: Path) -> None:
    installed_or_skip("nginx")
    names = _replica_names(2)
    key = secrets.token_hex(32)
    async with _replicas(target, tmp_path, {name: {KEYS: key} for name in names}) as replicas:
        async with _nginx(target, tmp_path, {r.name: r.port for r in replicas}) as url:
            sessions: list[list[str]] = []
            failures: list[str] = []

            async def one_session() -> None:
                try:
                    with anyio.fail_after(10):
                        async with Client(url, mode="legacy") as client:
                            sessions.append([await _replica_of(client) for _ in range(3)])
                except Exception as exc:  # noqa: BLE001
                    leaf = leaf_exception(exc)
                    failures.append(f"{type(leaf).__name__}: {leaf}")

            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(one_session)
            assert not failures, (
                f"{len(failures)} of 12 legacy sessions through nginx failed ({failures[0]}): a request of a "
                f"session reached a replica that does not hold it")
            split = [s for s in sessions if len(set(s)) > 1]
            assert not split, f"one session was served by several replicas: {split[0]}"
            used = {s[0] for s in sessions}
            assert used == set(names), (
                f"all 12 sessions went to {sorted(used)}: new sessions should spread over every replica")
            with anyio.fail_after(10):
                async with Client(url, mode="legacy", elicitation_callback=_accept) as client:
                    long = [await _replica_of(client) for _ in range(15)]
                    result = await client.call_tool("file_note", {"title": _word(), "text": _word()})
            assert len(set(long)) == 1, f"one long legacy session was served by {sorted(set(long))}"
            assert not result.is_error and (result.structured_content or {}).get("filed"), (
                "a legacy file_note through nginx failed: the elicitation answer must reach the same replica")
            async with target.client(url) as modern:
                spread = {await _replica_of(modern) for _ in range(8)}
            assert spread == set(names), f"modern requests through nginx should reach every replica, got {sorted(spread)}"


@asynccontextmanager
async def _redis(tmp: Path) -> AsyncIterator[str]:
    port = free_port()
    folder = tmp / "redis"
    folder.mkdir()
    # It runs outside the sandbox but student code can reach it: only pub/sub and data commands are left,
    # none that loads code or moves its files (Redis 6 still allows MODULE LOAD by default).
    locked = [arg for command in ("MODULE", "CONFIG", "DEBUG") for arg in ("--rename-command", command, "")]
    process = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port),
                                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(folder), *locked],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with anyio.fail_after(10):
            while True:
                if process.poll() is not None:
                    pytest.fail("redis-server did not start")
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([process])


def _needs_redis() -> None:
    installed_or_skip("redis-server")


@check("bus events travel as the SDK's wire form and survive the trip through bytes", points=1,
       hint="The SDK already has a wire form for each event (mcp.shared.subscriptions: event_to_notification and "
            "event_from_wire): write the JSON of that notification, and read any such JSON back. Decoding must never "
            "raise: other programs may publish on the same channel, and a near miss (no uri, params that are not an "
            "object) is simply not an event.")
async def test_events_round_trip(target: Target) -> None:
    scaling = target.module("scaling")
    events = [ToolsListChanged(), PromptsListChanged(), ResourcesListChanged(),
              ResourceUpdated(uri=f"desk://{_word()}/{_word()}?v={random.randint(1, 999)}")]
    for event in events:
        data = scaling.encode_event(_there(target, event))
        assert isinstance(data, (bytes, str)), f"encode_event should return bytes, got {_kind(target, data)}"
        back = _event(target, scaling.decode_event(data))
        assert back == event, f"{event!r} came back as {back!r}"
        text = data.decode() if isinstance(data, bytes) else data
        assert _event(target, scaling.decode_event(text)) == event, (
            "decode_event should accept str as well as bytes")
    for event in events:   # what another program reads: the JSON of the SDK's own notification for the event
        data = scaling.encode_event(_there(target, event))
        try:
            message = json.loads(data)
        except ValueError:
            pytest.fail(f"encode_event({event!r}) is not JSON: {data[:80]!r}")
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params") if isinstance(message, dict) else None
        want = event_to_notification(event, {}).method
        assert method == want and event_from_wire(method, params if isinstance(params, dict) else None) == event, (
            f"encode_event({event!r}) wrote {data[:120]!r}: expected the SDK's notification for it (method {want!r}), "
            "which every replica, of any version, can read")
        wire = event_to_notification(event, {"io.modelcontextprotocol/subscriptionId": 7})
        fields = {"jsonrpc": "2.0", **wire.model_dump(mode="json", by_alias=True, exclude_none=True)}
        shuffled = json.dumps(dict(reversed(list(fields.items()))), indent=2).encode()
        assert _event(target, scaling.decode_event(shuffled)) == event, (
            f"decode_event({shuffled[:120]!r}) did not give {event!r}: read any JSON of the SDK's wire form (keys in any "
            "order, extra fields such as _meta), not only the exact bytes your encode_event writes")
    near_misses = [{"jsonrpc": "2.0", "method": "notifications/resources/updated"},
                   {"method": "notifications/resources/updated", "params": {"uri": 42}},
                   {"method": "notifications/resources/updated", "params": [NOTES]},
                   {"method": "notifications/resources/updated", "params": None},
                   {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}]
    for junk in (b"", b"not json", b"[1, 2]", b'{"method": 3}', b'{"method": "tools/call", "params": {}}',
                 _word().encode(), b"\x80\xff", *(json.dumps(x).encode() for x in near_misses)):
        try:
            got = _event(target, scaling.decode_event(junk))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"decode_event({junk!r}) raised {type(exc).__name__}: return None for anything that is not an event")
        assert got is None, f"decode_event({junk!r}) should be None, got {got!r}"


@check("RedisSubscriptionBus delivers every event once to every listener on the channel", points=2,
       hint="publish() only sends to Redis; each bus's reader gets every message on its channel (its own too) and "
            "calls the local listeners. Catch a listener's exception so the next listener still hears the event.")
async def test_redis_bus_fan_out(target: Target, tmp_path: Path) -> None:
    _needs_redis()
    scaling = target.module("scaling")
    channel = f"desk-{_word()}"
    async with _redis(tmp_path) as url:
        here = scaling.RedisSubscriptionBus(url, channel=channel)
        there = scaling.RedisSubscriptionBus(url, channel=channel)
        elsewhere = scaling.RedisSubscriptionBus(url, channel=channel + "-other")
        # The listeners are the check's: what they hear is noted here, as it arrives.
        heard: dict[str, list[Any]] = {"here": [], "there": [], "elsewhere": []}
        complaint = f"a broken listener {_word(8)}"
        here.subscribe(target.expose(_exploding(complaint)))
        # A plain handler on the root logger where the bus runs: each record, one line on that process's stderr.
        token = f"lesson06-{secrets.token_hex(6)}"
        logs = target.library("logging")
        handler = logs.StreamHandler()
        handler.setLevel(logs.WARNING)
        handler.setFormatter(logs.Formatter(f"{token} {{message!r}} {{exc_info!r}}", style="{"))
        logs.getLogger().addHandler(handler)
        here.subscribe(_listener(target, heard["here"]))
        stop_there = there.subscribe(_listener(target, heard["there"]))
        elsewhere.subscribe(_listener(target, heard["elsewhere"]))
        async with here, there, elsewhere:
            events = [ResourceUpdated(uri=f"desk://{_word()}"), ToolsListChanged(), ResourceUpdated(uri=NOTES)]
            for event in events:
                await here.publish(_there(target, event))
            import redis.asyncio as aioredis

            raw = aioredis.Redis.from_url(url)
            try:
                await raw.publish(channel, b"\x00 not an event")
            finally:
                await raw.aclose()
            last = PromptsListChanged()
            await there.publish(_there(target, last))
            with anyio.move_on_after(3):
                while len(heard["here"]) < 4 or len(heard["there"]) < 4:
                    await anyio.sleep(0.02)
            await anyio.sleep(0.3)
            stop_there()
            stop_there()
            await here.publish(_there(target, ResourcesListChanged()))
            await anyio.sleep(0.3)
        logs.getLogger().removeHandler(handler)
        logged = [line for line in target.output().splitlines() if line.startswith(f"{token} ") and complaint in line]
    want = [*events, last]
    assert heard["there"] == want, (
        f"the other replica's bus heard {heard['there']}, expected {want}: publish must go through Redis")
    assert heard["here"][:4] == want, (
        f"the publishing bus's own listener heard {heard['here'][:4]}, expected {want}. (A raising listener "
        f"must not stop the others, and junk on the channel must be skipped.)")
    assert heard["here"] == [*want, ResourcesListChanged()], (
        f"the publishing bus's listener heard {heard['here']}: each event exactly once (not once locally and "
        f"again from Redis)")
    assert not heard["elsewhere"], "a bus on another channel heard these events: subscribe to your own channel only"
    assert logged, (
        f"a listener raised RuntimeError({complaint!r}) and nothing was logged at WARNING or above: catch it so the "
        "others still hear the event, but log it (logger.exception), or a broken listener fails silently forever")


@check("a note filed on one replica reaches a listener on another through Redis", points=3,
       hint="ctx.notify_resource_updated publishes on the server's subscription bus and each listen stream reads "
            "from it. With RESEARCH_DESK_REDIS_URL set, the bus create_server hands to replica_server is a "
            "RedisSubscriptionBus: the server must use it, and it must carry events through Redis both ways.")
async def test_redis_bus_across_replicas(target: Target, tmp_path: Path) -> None:
    _needs_redis()
    names = _replica_names(2)
    async with _redis(tmp_path) as url:
        spec = {name: {"RESEARCH_DESK_REDIS_URL": url, "RESEARCH_DESK_BUS_CHANNEL": f"desk-{_word()}"}
                for name in names}
        channel = spec[names[0]]["RESEARCH_DESK_BUS_CHANNEL"]
        for extra in spec.values():
            extra["RESEARCH_DESK_BUS_CHANNEL"] = channel
        async with _replicas(target, tmp_path, spec) as (a, b):
            heard: dict[str, list[Any]] = {a.name: [], b.name: []}

            async def listen(replica: Replica, ready: anyio.Event) -> None:
                async with Client(replica.url) as client:
                    async with client.listen(resource_subscriptions=[NOTES]) as subscription:
                        ready.set()
                        async for event in subscription:
                            heard[replica.name].append(event)

            async with anyio.create_task_group() as tg:
                readies = [anyio.Event(), anyio.Event()]
                tg.start_soon(listen, a, readies[0])
                tg.start_soon(listen, b, readies[1])
                with anyio.fail_after(8):
                    for ready in readies:
                        await ready.wait()
                async with Client(b.url, elicitation_callback=_accept) as writer:
                    result = await writer.call_tool("file_note", {"title": _word(), "text": _word()})
                assert not result.is_error, f"file_note failed: {result.content[0].text if result.content else ''}"
                with anyio.move_on_after(4):
                    while not (heard[a.name] and heard[b.name]):
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    assert ResourceUpdated(uri=NOTES) in heard[a.name], (
        f"a client listening on replica {a.name} never heard that replica {b.name} filed a note: the event must "
        f"travel through Redis, not stay in {b.name}'s memory")
    assert ResourceUpdated(uri=NOTES) in heard[b.name], (
        f"a client listening on replica {b.name} itself did not hear the note it filed")


# --- caching hints (issue 19: ttlMs / cacheScope) ------------------------------------------------
#
# Added after the checks above, which they do not touch. Every client here is a real
# `mcp.Client`; what a result carries is read from that client's parsed result (`ttl_ms`,
# `cache_scope` are the wire's `ttlMs`, `cacheScope`). `cache=None` turns the client's own
# cache off, so every call reaches the server and shows what the server sent.

_LIST_CALLS = (("tools/list", "list_tools"), ("prompts/list", "list_prompts"),
               ("resources/list", "list_resources"), ("resources/templates/list", "list_resource_templates"))


async def _hints_on_the_wire(client: Any) -> dict[str, tuple[int, str]]:
    """(ttlMs, cacheScope) of every cacheable result the desk serves, as a real client received them."""
    seen: dict[str, tuple[int, str]] = {}
    for method, verb in _LIST_CALLS:
        result = await getattr(client, verb)()
        seen[method] = (result.ttl_ms, result.cache_scope)
    result = await client.read_resource(NOTES)
    seen["resources/read"] = (result.ttl_ms, result.cache_scope)
    return seen


def _two_ttls() -> tuple[int, int]:
    """A list TTL and a (shorter, different) read TTL, in milliseconds."""
    list_ttl = random.randrange(20_000, 600_000)
    return list_ttl, random.randrange(500, list_ttl // 4)


@check("desk_cache_hints marks every list shared and reads private, with the TTLs it is given", points=2,
       hint="A hint is a CacheHint(ttl_ms=..., scope=...) per method name. The four lists describe the desk and "
            "are the same for every caller: `public`. A read returns content only an admitted caller may see: "
            "`private`, the default scope. Use the TTL each argument gives, in milliseconds.")
async def test_cache_hints_as_given(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    list_ttl, read_ttl = _two_ttls()
    hints = scaling.desk_cache_hints(list_ttl_ms=list_ttl, read_ttl_ms=read_ttl)
    probe = target.library("mcp.server.mcpserver").MCPServer(f"probe-{_word()}", log_level="WARNING",
                                                               cache_hints=hints)
    scaling.register(probe, replica=_replica_names(1)[0], root=tmp_path)
    async with target.client(probe, cache=None) as client:
        seen = await _hints_on_the_wire(client)
    for method, _ in _LIST_CALLS:
        assert seen[method] == (list_ttl, "public"), (
            f"{method} arrived with ttlMs={seen[method][0]}, cacheScope={seen[method][1]!r} from "
            f"desk_cache_hints(list_ttl_ms={list_ttl}, read_ttl_ms={read_ttl}); expected ttlMs={list_ttl}, "
            f"'public': every list is the same for every caller")
    ttl, scope = seen["resources/read"]
    assert scope == "private", (
        f"resources/read arrived marked {scope!r}: a cache shared between users would hand one caller's read to "
        f"another without asking the server. Reads are 'private'")
    assert ttl == read_ttl, (
        f"resources/read arrived with ttlMs={ttl}; desk_cache_hints(read_ttl_ms={read_ttl}) asked for {read_ttl}")


@check("every replica's desk carries desk_cache_hints() on its results", points=2,
       hint="MCPServer(cache_hints=...) fills ttlMs/cacheScope on every list and read result. Build each "
            "replica's server with desk_cache_hints(), so whichever replica answers, a cache is told the same.")
async def test_desk_carries_its_hints(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    hints = scaling.desk_cache_hints()
    expected = {method: (hints[method].ttl_ms, hints[method].scope)
                for method in [m for m, _ in _LIST_CALLS] + ["resources/read"]}
    assert expected["tools/list"][1] == "public" and expected["resources/read"][1] == "private", (
        f"desk_cache_hints() gives tools/list {expected['tools/list']} and resources/read "
        f"{expected['resources/read']}: lists are 'public', reads 'private'")
    assert expected["tools/list"][0] > 0 and expected["resources/read"][0] > 0, (
        f"desk_cache_hints() keeps nothing (ttlMs {expected['tools/list'][0]} for lists, "
        f"{expected['resources/read'][0]} for reads): its defaults are LIST_TTL_MS and READ_TTL_MS")
    for name in _replica_names(2):
        desk = scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
        async with target.client(desk, cache=None) as client:
            seen = await _hints_on_the_wire(client)
        wrong = {method: got for method, got in seen.items() if got != expected[method]}
        assert not wrong, (
            f"replica {name} sent {wrong} (ttlMs, cacheScope), but desk_cache_hints() says "
            f"{ {m: expected[m] for m in wrong} }: does replica_server pass cache_hints=desk_cache_hints()?")


class _WatchedStore:
    """A response cache store shared by several clients; it records every entry a client decides to keep."""

    def __init__(self) -> None:
        self.inner = InMemoryResponseCacheStore()
        self.kept: list[tuple[str, str]] = []   # (method, partition) of every write: one per fetch worth keeping

    async def get(self, key: Any) -> Any:
        return await self.inner.get(key)

    async def set(self, key: Any, entry: Any) -> None:
        self.kept.append((key.method, key.partition))
        await self.inner.set(key, entry)

    async def delete(self, key: Any) -> None:
        await self.inner.delete(key)

    async def clear(self) -> None:
        await self.inner.clear()

    def fetches(self, method: str) -> int:
        return sum(1 for kept, _ in self.kept if kept == method)


@check("a cache shared by two users serves one user's list to the other, never a read", points=2,
       hint="A client keeps a result as long as ttlMs says. In a cache shared between users (CacheConfig with "
            "share_public=True), a 'public' result fetched for one user is served to the next without asking the "
            "server; a 'private' one is kept per user. Which of the desk's results may another user see?")
async def test_shared_cache_keeps_only_public(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    desk = scaling.create_server({"RESEARCH_DESK_REPLICA": _replica_names(1)[0], "RESEARCH_DESK_ROOT": str(tmp_path)})
    store, now, server_id = _WatchedStore(), [1_700_000_000.0], f"desk-{_word()}"
    alice, bob = f"alice-{_word()}", f"bob-{_word()}"

    def config(user: str) -> CacheConfig:
        return CacheConfig(store=store, partition=user, share_public=True, target_id=server_id, clock=lambda: now[0])

    async with target.client(desk, cache=config(alice)) as client:
        await client.list_tools()
        await client.read_resource(NOTES)
        await client.read_resource(NOTES)
    assert store.fetches("tools/list") == 1 and store.fetches("resources/read") == 1, (
        f"a client kept {store.fetches('tools/list')} tools/list and {store.fetches('resources/read')} "
        f"resources/read results, expected one of each: are the desk's ttlMs above 0?")
    async with target.client(desk, cache=config(bob)) as client:
        await client.list_tools()
        await client.read_resource(NOTES)
    assert store.fetches("tools/list") == 1, (
        "a second user's tools/list went to the server although another user's copy sat in the shared cache: "
        "the tool list is the same for everyone, mark it 'public'")
    assert store.fetches("resources/read") == 2, (
        "a second user was served the first user's resources/read from the shared cache, without the server "
        "deciding whether they may read it: reads are 'private'")
    read_ttl = scaling.desk_cache_hints()["resources/read"].ttl_ms
    now[0] += read_ttl / 1000 + 1
    async with target.client(desk, cache=config(alice)) as client:
        await client.read_resource(NOTES)
    assert store.fetches("resources/read") == 3, "a read kept past its ttlMs was served again instead of refetched"
