"""Lesson 6's check plumbing: real replicas, split multi-round-trip calls, nginx, and events.

Real replicas are separate `python -m uvicorn --factory <package>.scaling:build_app` processes on
loopback ports, started where student code runs (`target.command`: in the submission's sandbox,
inside the check's limits, when grading) and killed when the check's `async with replicas(...)`
ends. Either way they start warm, forked past the SDK's import by the runner's command zygote or
the submission's (`checker.host.warmstart`), so a replica costs its own work, not an interpreter.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import string
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.caching import InMemoryResponseCacheStore
from mcp.shared.subscriptions import PromptsListChanged, ResourcesListChanged, ResourceUpdated, ToolsListChanged
from mcp.types import INVALID_PARAMS, ElicitResult, InputRequiredResult

from checker.checks.kit.processes import free_port, free_ports, log_file, log_text
from checker.checks.kit.services import nginx_server, wait_for_health
from checker.target import Target

KEYS = "RESEARCH_DESK_STATE_KEYS"
NOTES = "desk://notes"


def replica_names(count: int) -> list[str]:
    """`count` different random replica names: a letter, then three letters or digits."""
    names: set[str] = set()
    alphabet = string.ascii_lowercase + string.digits
    while len(names) < count:
        names.add(random.choice(string.ascii_lowercase) + "".join(random.choices(alphabet, k=3)))
    return sorted(names)


def written(target: Target, path: Path) -> str | None:
    """A file the replicas' side wrote, read where they run; None if there is none."""
    try:
        return target.read_text(path)
    except OSError:
        return None


def error_text(result: Any) -> str:
    """The first text block of a failed tool result (what the server said went wrong)."""
    return getattr(result.content[0], "text", "") if result.content else ""


# --- real replicas ----------------------------------------------------------------------------


@dataclasses.dataclass
class Replica:
    """One replica: its name, its port, its process (the relay's when it runs elsewhere), and the
    nameless file its output goes to."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: TextIO

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def _startup_error(output: str) -> str:
    lines = output.strip().splitlines()
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Exit)\b", line)]
    return (errors[-1] if errors else "\n".join(lines[-3:])) or "no output"


async def _wait_healthy(replica: Replica) -> None:
    if not await wait_for_health(replica.port, lambda: replica.process.poll() is not None):
        pytest.fail(f"replica {replica.name} did not start: {_startup_error(log_text(replica.log))}")


@asynccontextmanager
async def replicas(target: Target, tmp: Path, specs: dict[str, dict[str, str]]) -> AsyncIterator[list[Replica]]:
    """One real uvicorn process per name, started in parallel, with only the given configuration.

    Each is `python -m uvicorn --factory <package>.scaling:build_app`, started where student code
    runs (`target.command`), so it starts warm, past the SDK's import, yet sees what a cold start
    would. They are killed when the block ends: nothing the check reads comes after that, and a
    graceful stop would only wait out uvicorn's shutdown tick.
    """
    started: list[Replica] = []
    try:
        for (name, extra), port in zip(specs.items(), free_ports(len(specs)), strict=True):
            log = log_file(tmp)
            env = target.env({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp / "workspace"), **extra})
            argv = [sys.executable, "-m", "uvicorn", "--factory", f"{target.package}.scaling:build_app",
                    "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
            process = subprocess.Popen(target.command(argv), env=env, cwd=tmp, stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=log)
            started.append(Replica(name, port, process, log))
        async with anyio.create_task_group() as tg:
            for replica in started:
                tg.start_soon(_wait_healthy, replica)
        yield started
    finally:
        for replica in started:
            replica.process.kill()
        for replica in started:
            replica.process.wait()
            replica.log.close()


# --- multi-round-trip by hand ------------------------------------------------------------------


async def accept_filing(context: Any, params: Any) -> ElicitResult:
    """An elicitation answer: yes, file it."""
    return ElicitResult(action="accept", content={"file_it": True})


def _answers(opening: InputRequiredResult) -> dict[str, Any]:
    return {key: ElicitResult(action="accept", content={"file_it": True}) for key in opening.input_requests or {}}


class Split:
    """One file_note call whose first round went to one replica and whose retry went to another."""

    def __init__(self, result: dict[str, Any] | None = None, error: MCPError | None = None) -> None:
        self.result, self.error = result, error


async def split_call(first: Replica, second: Replica, title: str, text: str) -> Split:
    """file_note's first round on `first`, its retry (with the sealed request_state) on `second`."""
    args = {"title": title, "text": text}
    with anyio.fail_after(10):
        async with Client(first.url, elicitation_callback=accept_filing) as a, \
                Client(second.url, elicitation_callback=accept_filing) as b:
            opening = await a.session.call_tool("file_note", args, allow_input_required=True)
            if not isinstance(opening, InputRequiredResult):
                pytest.fail(f"file_note on replica {first.name} should ask before filing (an InputRequiredResult), "
                            f"got {type(opening).__name__}")
            try:
                final = await b.session.call_tool("file_note", args, input_responses=_answers(opening),
                                                  request_state=opening.request_state, allow_input_required=True)
            except MCPError as exc:
                return Split(error=exc)
    if isinstance(final, InputRequiredResult):
        pytest.fail(f"replica {second.name} asked again instead of finishing the call it was given")
    if final.is_error:
        pytest.fail(f"file_note failed on replica {second.name}: {error_text(final)}")
    return Split(result=final.structured_content or {})


async def split_in_memory(first: Any, second: Any, title: str, text: str) -> Any:
    """Round 1 of file_note through one client, the retry through the other: the final result, or the MCPError."""
    args = {"title": title, "text": text}
    opening = await first.session.call_tool("file_note", args, allow_input_required=True)
    if not isinstance(opening, InputRequiredResult):
        pytest.fail(f"file_note should ask before filing (an InputRequiredResult), got {type(opening).__name__}")
    try:
        return await second.session.call_tool("file_note", args, input_responses=_answers(opening),
                                              request_state=opening.request_state, allow_input_required=True)
    except MCPError as exc:
        return exc


async def server_names(*replicas: Replica) -> dict[str, str]:
    """The server name each replica announces, by replica name."""
    names = {}
    for replica in replicas:
        async with Client(replica.url) as client:
            names[replica.name] = client.server_info.name if client.server_info else "?"
    return names


def is_rejected_state(error: MCPError | None) -> bool:
    """Whether `error` is the SDK's 'Invalid or expired requestState' (-32602)."""
    return error is not None and error.code == INVALID_PARAMS and "requeststate" in error.message.lower()


# --- routing -------------------------------------------------------------------------------------


class RoundRobin(httpx2.AsyncBaseTransport):
    """Send each HTTP request to the next replica in turn (what a plain load balancer does)."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(port=next(self._ports))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def replica_of(client: Any) -> str:
    """Which replica answered a replica_info call on `client`."""
    result = await client.call_tool("replica_info", {})
    assert not result.is_error, f"replica_info failed: {error_text(result)}"
    return str((result.structured_content or {}).get("replica"))


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
async def nginx(target: Target, binary: str, tmp: Path, replicas: dict[str, int]) -> AsyncIterator[str]:
    """nginx with the student's deploy/nginx-sticky.conf in front of `replicas`; yields its MCP URL."""
    scaling = target.module("scaling")
    template = written(target, Path(scaling.__file__).parent / "deploy" / "nginx-sticky.conf")
    if template is None:
        pytest.fail(f"{target.package}/deploy/nginx-sticky.conf is missing")
    prefix = tmp / "nginx"
    prefix.mkdir()
    port = free_port()
    conf = prefix / "nginx.conf"
    with open(conf, "x", encoding="utf-8") as out:  # a new file: never one student code put there
        out.write(_render_nginx(template, replicas, port, prefix))
    async with nginx_server(target, binary, conf, port, "deploy/nginx-sticky.conf"):
        yield f"http://127.0.0.1:{port}/mcp"


# --- events where the student's code lives ------------------------------------------------------
#
# Buses, listeners and the events they carry live where the student's code does. The check makes
# the events it publishes there from the SDK's own classes (`target.library`), gives buses listeners
# of its own (`target.expose`), and turns every event it hears or gets back into the SDK's class
# here, from the class and fields it reads: so the checks compare real events, and anything that is
# not one of the SDK's events becomes a stand-in that equals nothing.

_EVENT_CLASSES = {f"{cls.__module__}.{cls.__qualname__}": cls
                  for cls in (ToolsListChanged, PromptsListChanged, ResourcesListChanged, ResourceUpdated)}


class NotAnEvent:
    """What the student's code gave instead of one of the SDK's events, as its repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def kind(target: Target, obj: Any) -> str:
    """The name of the class of `obj`, a value from the student's code."""
    return target.classes(obj)[0].rsplit(".", 1)[-1]


def event_here(target: Target, obj: Any, limit: int = 300) -> Any:
    """`obj` (from the student's code) as the SDK event it is, None, or a NotAnEvent that equals nothing
    (its repr: the first `limit` characters of `obj`'s, and its class)."""
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
        text = repr(obj)[:limit]
    except Exception:  # noqa: BLE001 - a student's __repr__ may raise
        text = "<?>"
    return NotAnEvent(f"{text} (a {kind(target, obj)})")


def event_there(target: Target, sdk_event: Any) -> Any:
    """The same SDK event, made where the student's code runs (to publish it, or to encode it)."""
    cls = getattr(target.library(type(sdk_event).__module__), type(sdk_event).__qualname__)
    return cls(**dataclasses.asdict(sdk_event))


def listener(target: Target, heard: list[Any]) -> Any:
    """A listener of the check's for a bus: every event it hears goes into `heard`, as the SDK's event."""
    return target.expose(lambda obj: heard.append(event_here(target, obj)))


async def heard_all(condition: Callable[[], bool], seconds: float = 3) -> None:
    """Return once `condition()` holds (polled every 10 ms), or after `seconds`: the check's assertions
    then say what is missing."""
    with anyio.move_on_after(seconds):
        while not condition():
            await anyio.sleep(0.01)


def exploding(complaint: str) -> Any:
    """A listener that always raises, with `complaint` as its message."""
    def explode(obj: Any) -> None:
        raise RuntimeError(complaint)
    return explode


# --- caching hints -------------------------------------------------------------------------------
#
# Every client here is a real `mcp.Client`; what a result carries is read from that client's parsed
# result (`ttl_ms`, `cache_scope` are the wire's `ttlMs`, `cacheScope`). `cache=None` turns the
# client's own cache off, so every call reaches the server and shows what the server sent.

LIST_CALLS = (("tools/list", "list_tools"), ("prompts/list", "list_prompts"),
              ("resources/list", "list_resources"), ("resources/templates/list", "list_resource_templates"))


async def hints_on_the_wire(client: Any) -> dict[str, tuple[int, str]]:
    """(ttlMs, cacheScope) of every cacheable result the desk serves, as a real client received them."""
    seen: dict[str, tuple[int, str]] = {}
    for method, verb in LIST_CALLS:
        result = await getattr(client, verb)()
        seen[method] = (result.ttl_ms, result.cache_scope)
    result = await client.read_resource(NOTES)
    seen["resources/read"] = (result.ttl_ms, result.cache_scope)
    return seen


def hints_given(hints: Any) -> dict[str, tuple[int, str]]:
    """(ttlMs, cacheScope) that `hints` (what desk_cache_hints() returned) sets for each cacheable method."""
    return {method: (hints[method].ttl_ms, hints[method].scope)
            for method in [m for m, _ in LIST_CALLS] + ["resources/read"]}


def two_ttls() -> tuple[int, int]:
    """A list TTL and a (shorter, different) read TTL, in milliseconds."""
    list_ttl = random.randrange(20_000, 600_000)
    return list_ttl, random.randrange(500, list_ttl // 4)


class WatchedStore:
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
