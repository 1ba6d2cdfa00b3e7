"""Lesson 9 load and soak test: the capstone in production shape, next to a minimal server.

    PYTHONPATH=solutions/src uv run python bench/capstone_load.py                 # ~1 minute
    PYTHONPATH=solutions/src uv run python bench/capstone_load.py --soak 60       # plus a 60 s soak

Two servers run as separate processes on 127.0.0.1, each started the way it would be deployed:

* **capstone**: ``python -m uvicorn --factory research_desk.server:build_app --no-access-log``
  with the documented production settings (bearer token, a public host name on the Host
  allowlist, shared request-state keys, a replica name): every request passes the Host check,
  the bearer check and the session tagger before it reaches MCP.
* **minimal**: an ``MCPServer`` with one trivial ``async def`` tool and nothing else, started with
  the SDK's own ``mcp.run(transport="streamable-http")`` (SDK defaults; log level WARNING, as every
  server in this course, so the access log does not dominate).

The load generator is this process: N concurrent clients, each on its own keep-alive HTTP
connection, sending self-contained 2026-07-28 ``tools/call`` requests (the modern path has no
session, so a client is just a stream of POSTs) and checking every answer. Phases:

0. ``cancellation``: the capstone must stop a call whose client hangs up (an export of 100
   documents, the connection closed once it started writing): the throughput below is only
   worth comparing if the cheap JSON path it measures still cancels. If not, the run fails.
1. ``compare``: the trivial tool on both servers at --clients (default 32), rounds interleaved
   so background noise hits both alike; the capstone's throughput as a ratio of the minimal's
   (target >= 1.2x).
2. ``latency``: the same at --latency-clients (default 8); p50 and p99.
3. ``mixed``: the capstone's mixed tool set (documents, files, search, summaries that fall back
   to the extractive summary, indexing with progress over SSE, idempotent note saving), in
   rounds at --clients; p99 target <= 100 ms, and each tool's p99 beside it.
4. ``workers trap``: sequential keep-alive latency of the capstone as one process, and under
   ``uvicorn --workers 2`` (on Linux the pre-bound socket loses TCP_NODELAY: uvicorn issue 3149);
5. ``soak`` (with --soak SECONDS): the mixed set for that long; errors, and server RSS in the
   first and last 10 s.

Everything is bounded in time and in calls (--max-calls per phase), loopback only, and both
servers are stopped at the end (also on Ctrl-C). The machine's load average is printed first:
on a shared machine, re-run when it is quiet before trusting a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psutil

from checker.host.serving import free_port

MODERN = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
PUBLIC_HOST = "desk.bench.example"

MINIMAL_SERVER = textwrap.dedent('''
    import sys
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("minimal", log_level="WARNING")

    @mcp.tool()
    async def echo(text: str) -> str:
        """Return the text."""
        return text

    mcp.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
''')


# --- servers ---------------------------------------------------------------------------------


@dataclass
class Server:
    label: str
    process: subprocess.Popen[bytes]
    port: int
    headers: dict[str, str]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def rss_mb(self) -> float:
        try:
            return psutil.Process(self.process.pid).memory_info().rss / 2**20
        except psutil.Error:
            return float("nan")

    def cpu_seconds(self) -> float:
        try:
            times = psutil.Process(self.process.pid).cpu_times()
            return times.user + times.system
        except psutil.Error:
            return float("nan")


def make_workspace(folder: Path, documents: int) -> list[str]:
    """A workspace of small Markdown documents; returns their names."""
    words = ("fox owl river stone lantern harbour meadow signal archive compass ledger orchard "
             "glacier beacon thread quarry").split()
    names = []
    for index in range(documents):
        name = f"notes/doc-{index:03d}.md" if index % 2 else f"doc-{index:03d}.md"
        body = " ".join(words[(index + k) % len(words)] for k in range(60))
        text = f"# Document {index}\n\n" + ". ".join(body[i:i + 80] for i in range(0, len(body), 80)) + ".\n"
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
        names.append(name)
    return names


async def wait_ready(server: Server, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx2.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.label} exited:\n{server.log.read_text(errors='replace')[-2000:]}")
            try:
                response = await http.post(server.url, json=discover_body(), headers=server.headers
                                           | {"Mcp-Method": "server/discover"})
                if response.status_code == 200:
                    return
            except httpx2.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{server.label} did not answer within {timeout:g} s")


def start_capstone(work: Path, workspace: Path, python: str) -> Server:
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")}
    env.update({
        "RESEARCH_DESK_ROOTS": str(workspace),
        "RESEARCH_DESK_TOKEN": token,
        "RESEARCH_DESK_PUBLIC_URL": f"https://{PUBLIC_HOST}/mcp",
        "RESEARCH_DESK_STATE_KEYS": secrets.token_hex(32),
        "RESEARCH_DESK_REPLICA": "a",
        "RESEARCH_DESK_LOG_LEVEL": "WARNING",
    })
    log = work / "capstone.log"
    command = [python, "-m", "uvicorn", "--factory", "research_desk.server:build_app",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    headers = base_headers() | {"Authorization": f"Bearer {token}", "Host": PUBLIC_HOST}
    return Server("capstone", process, port, headers, log)


def start_minimal(work: Path, python: str) -> Server:
    port = free_port()
    script = work / "minimal_server.py"
    script.write_text(MINIMAL_SERVER, encoding="utf-8")
    log = work / "minimal.log"
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")}
    with log.open("wb") as out:
        process = subprocess.Popen([python, str(script), str(port)], env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return Server("minimal", process, port, base_headers() | {"Host": f"127.0.0.1:{port}"}, log)


def stop(servers: list[Server]) -> None:
    for server in servers:
        if server.process.poll() is None:
            try:
                os.killpg(server.process.pid, signal.SIGTERM)   # uvicorn --workers: the supervisor and its workers
            except (ProcessLookupError, PermissionError):
                server.process.terminate()
    for server in servers:
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()


# --- the wire ----------------------------------------------------------------------------------


def base_headers() -> dict[str, str]:
    return {"Accept": ACCEPT, "Content-Type": "application/json", "MCP-Protocol-Version": MODERN}


def _meta(**extra: Any) -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "capstone-load", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": {}, **extra}


def discover_body() -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 0, "method": "server/discover", "params": {"_meta": _meta()}}


def call_body(request_id: int, name: str, arguments: dict[str, Any], progress: bool) -> dict[str, Any]:
    meta = _meta(progressToken=f"p{request_id}") if progress else _meta()
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta}}


@dataclass
class Call:
    name: str
    arguments: dict[str, Any]
    progress: bool = False
    expect_progress: int = 0      # the total a correct answer's progress reaches (0: no progress expected)


def trivial_calls(label: str) -> list[Call]:
    return [Call("echo", {"text": "ping"})] if label == "minimal" else [Call("replica_info", {})]


def mixed_calls(names: list[str]) -> list[Call]:
    """The capstone's mixed tool set, one of each kind of work; a client cycles through it."""
    first, second = names[0], names[1]
    return [
        Call("replica_info", {}),
        Call("desk_info", {}),
        Call("list_documents", {}),
        Call("read_document", {"name": first}),
        Call("read_file", {"path": second}),
        Call("search_documents", {"query": "lantern harbour", "limit": 5}),
        Call("search_files", {"query": "glacier"}),
        Call("summarise", {"text": "Foxes are quick. Owls watch the river. The archive keeps every ledger.",
                           "max_words": 20}),
        Call("summarise_document", {"name": first, "max_words": 30}),
        Call("index_documents", {}, progress=True, expect_progress=len(names)),
        Call("save_note", {"title": "load", "body": "same body", "idempotency_key": "loadtest-key-0001"}),
    ]


# --- load --------------------------------------------------------------------------------------


@dataclass
class Report:
    label: str
    clients: int
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    per_tool: Counter[str] = field(default_factory=Counter)
    tool_ms: dict[str, list[float]] = field(default_factory=dict)
    first_error: str = ""
    rss_samples: list[tuple[float, float]] = field(default_factory=list)  # (t, MiB)
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self) -> str:
        text = (f"{self.label:<30} c={self.clients:<3} {self.throughput:8.1f} calls/s  p50 {self.pct(0.5):6.2f} ms  "
                f"p99 {self.pct(0.99):7.2f} ms  ok {self.calls:6d}  errors {self.errors}  "
                f"CPU server {self.server_cpu / self.seconds if self.seconds else 0:.2f} "
                f"client {self.client_cpu / self.seconds if self.seconds else 0:.2f} cores")
        return text + (f"\n{'':30} first error: {self.first_error}" if self.first_error else "")


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prebuilt requests (a lean client: the load
    generator shares the machine with the server, so every microsecond it spends is the server's loss)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def exchange(self, request: bytes) -> tuple[int, str, bytes]:
        """Send one request; return (status, content type, body)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            body = b"".join(parts)
        else:
            body = await self.reader.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status, headers.get("content-type", ""), body


def encode_request(server: Server, call: Call, request_id: int) -> bytes:
    body = json.dumps(call_body(request_id, call.name, call.arguments, call.progress)).encode()
    headers = server.headers | {"Mcp-Method": "tools/call", "Mcp-Name": call.name,
                                "Content-Length": str(len(body)), "Connection": "keep-alive"}
    head = "POST /mcp HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


def decode_messages(content_type: str, body: bytes) -> list[dict[str, Any]]:
    """The JSON-RPC messages of one answer: a JSON body, or the data lines of an SSE stream."""
    if content_type.startswith("text/event-stream"):
        out = []
        for block in body.decode().replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if data.strip():
                out.append(json.loads(data))
        return out
    return [json.loads(body)]


def check_answer(call: Call, status: int, content_type: str, body: bytes) -> str:
    """'' for a correct answer, else what was wrong."""
    if status != 200:
        return f"HTTP {status}: {body[:200]!r}"
    found = decode_messages(content_type, body)
    result = next((m for m in found if "id" in m), None)
    if result is None:
        return "no response message"
    if "error" in result:
        return f"JSON-RPC error {result['error']}"
    if result["result"].get("isError"):
        return f"tool error: {json.dumps(result['result'].get('content'))[:200]}"
    steps = [m["params"]["progress"] for m in found if m.get("method") == "notifications/progress"]
    if not call.expect_progress:
        return f"{call.name}: {len(steps)} progress notifications, expected none" if steps else ""
    # How often a job reports is the server's choice (the capstone reports at a bounded rate); what makes
    # progress correct is that it arrives, only climbs, and reaches the total.
    if not steps or steps != sorted(set(steps)) or steps[-1] != call.expect_progress:
        return f"{call.name}: progress went {steps}, expected it to climb to {call.expect_progress}"
    return ""


async def run_load(server: Server, calls: list[Call], *, label: str, clients: int, seconds: float,
                   max_calls: int, sample_rss: bool = False) -> Report:
    report = Report(label, clients)
    ids = itertools.count(1)
    started = time.monotonic()
    deadline = started + seconds
    cpu0, own0 = server.cpu_seconds(), time.process_time()

    async def client(index: int) -> None:
        connection = Connection(server.port)
        try:
            for step in itertools.count(index):
                if time.monotonic() >= deadline or report.calls + report.errors >= max_calls:
                    return
                call = calls[step % len(calls)]
                request = encode_request(server, call, next(ids))
                t0 = time.perf_counter()
                try:
                    async with asyncio.timeout(30):
                        problem = check_answer(call, *await connection.exchange(request))
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                    await connection.close()
                elapsed = (time.perf_counter() - t0) * 1000
                if problem:
                    report.errors += 1
                    report.first_error = report.first_error or f"{call.name}: {problem}"
                else:
                    report.calls += 1
                    report.latencies_ms.append(elapsed)
                    report.per_tool[call.name] += 1
                    report.tool_ms.setdefault(call.name, []).append(elapsed)
        finally:
            await connection.close()

    async def sampler() -> None:
        while time.monotonic() < deadline:
            report.rss_samples.append((time.monotonic() - started, server.rss_mb()))
            await asyncio.sleep(1.0)

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    if sample_rss:
        tasks.append(asyncio.create_task(sampler()))
    await asyncio.gather(*tasks)
    report.seconds = time.monotonic() - started
    report.server_cpu = server.cpu_seconds() - cpu0
    report.client_cpu = time.process_time() - own0
    return report


JOBS = ("index_documents",)
"""Calls in the mixed set that report progress over SSE: every event, and every trip to a worker thread
and back, waits for a turn of the event loop, so a job that makes many takes many turns under full load
where a one-answer call takes a few."""


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples) or [float("nan")]
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tool_p99(report: Report, tool: str) -> float:
    return pct(report.tool_ms.get(tool, []), 0.99)


async def keepalive_latency(server: Server, call: Call, calls: int = 30) -> float:
    """Median milliseconds of `calls` sequential requests on one keep-alive connection (the first skipped)."""
    connection = Connection(server.port)
    samples: list[float] = []
    try:
        for request_id in range(1, calls + 1):
            request = encode_request(server, call, request_id)
            t0 = time.perf_counter()
            status, content_type, body = await connection.exchange(request)
            samples.append((time.perf_counter() - t0) * 1000)
            problem = check_answer(call, status, content_type, body)
            if problem:
                raise RuntimeError(f"{server.label}: {problem}")
    finally:
        await connection.close()
    return statistics.median(samples[1:])


def start_capstone_workers(work: Path, workspace: Path, python: str, workers: int,
                           pythonpath: str | None = None) -> Server:
    """The capstone under `uvicorn --workers N`: the configuration the deployment notes warn against."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    env.update({"RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_REPLICA": "w",
                "RESEARCH_DESK_STATE_KEYS": secrets.token_hex(32)})
    log = work / f"capstone-workers-{workers}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([python, "-m", "uvicorn", "--factory", "research_desk.server:build_app",
                                    "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
                                    "--no-access-log", "--log-level", "warning"],
                                   env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Server(f"capstone --workers {workers}", process, port, base_headers() | {"Host": f"127.0.0.1:{port}"}, log)


async def cancellation_probe(server: Server, workspace: Path, names: list[str]) -> str:
    """'' if the server stops an export whose client hung up, else what happened.

    The export (100 steps of 50 ms) writes into <workspace>/.exports; once something is there the
    connection is closed, and within 2 s the unfinished bundle must be gone (the handler cancelled,
    its cleanup run) instead of growing into a bundle nobody will read.
    """
    exports = workspace / ".exports"

    def written() -> list[str]:
        return sorted(p.name for p in exports.iterdir()) if exports.is_dir() else []

    async def until(condition: Any, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline:
            await asyncio.sleep(0.03)
        return bool(condition())

    call = Call("export_bundle", {"names": [names[0]] * 100})
    connection = Connection(server.port)
    await connection.open()
    assert connection.writer is not None
    connection.writer.write(encode_request(server, call, 1))
    started = await until(lambda: bool(written()), 5)
    await connection.close()
    if not started:
        return "the export never started writing"
    if not await until(lambda: not written(), 2):
        return f"still writing {written()} two seconds after the client hung up"
    return ""


async def warm_up(server: Server, calls: list[Call]) -> None:
    """Every call once (first-call costs: schema caches, the first index), then a short burst."""
    for call in calls:
        await run_load(server, [call], label="warm-up", clients=1, seconds=5, max_calls=1)
    await run_load(server, calls, label="warm-up", clients=8, seconds=1.0, max_calls=2000)


async def smoke_with_sdk_client(server: Server, expected_tools: int) -> str:
    """One real SDK client lists the tools, so the raw requests below are known to be what a client sends."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    auth = {k: v for k, v in server.headers.items() if k in ("Authorization", "Host")}
    async with httpx2.AsyncClient(headers=auth, timeout=30) as http:
        async with Client(streamable_http_client(server.url, http_client=http)) as client:
            tools = await client.list_tools()
            if len(tools.tools) < expected_tools:
                return f"{server.label}: only {len(tools.tools)} tools listed"
            return f"{server.label}: {client.protocol_version}, {len(tools.tools)} tools"


# --- main --------------------------------------------------------------------------------------


async def main(args: argparse.Namespace) -> int:
    load1, load5, _ = os.getloadavg()
    print(f"# capstone load test: {os.cpu_count()} CPUs, load average {load1:.2f} / {load5:.2f} (1 / 5 min), "
          f"python {sys.version.split()[0]}, event loop {args.loop_note}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="capstone-load-"))
    workspace = work / "workspace"
    workspace.mkdir()
    names = make_workspace(workspace, args.documents)
    servers: list[Server] = []
    try:
        capstone = start_capstone(work, workspace, sys.executable)
        minimal = start_minimal(work, sys.executable)
        servers = [capstone, minimal]
        await asyncio.gather(wait_ready(capstone), wait_ready(minimal))
        print("# " + await smoke_with_sdk_client(capstone, 15) + "; " + await smoke_with_sdk_client(minimal, 1))
        cancel_problem = await cancellation_probe(capstone, workspace, names)
        print("# cancellation: " + (f"NOT SAFE: {cancel_problem}" if cancel_problem else
                                    "safe (an export whose client hung up stopped and cleaned up)"), flush=True)
        mixed = mixed_calls(names)
        await warm_up(capstone, mixed)
        await warm_up(minimal, trivial_calls("minimal"))
        rss_start = {s.label: s.rss_mb() for s in servers}
        print(f"# RSS after warm-up: capstone {rss_start['capstone']:.1f} MiB, minimal {rss_start['minimal']:.1f} MiB")

        failures = 1 if cancel_problem else 0
        rows: dict[str, list[Report]] = {}
        for phase, clients in (("compare", args.clients), ("latency", args.latency_clients)):
            for round_no in range(args.rounds):
                for server in (capstone, minimal) if round_no % 2 == 0 else (minimal, capstone):
                    label = f"{phase} {server.label} trivial"
                    report = await run_load(server, trivial_calls(server.label), label=label, clients=clients,
                                            seconds=args.seconds, max_calls=args.max_calls)
                    rows.setdefault(label, []).append(report)
                    print(f"round {round_no + 1}: {report.line()}", flush=True)
        for round_no in range(args.rounds):
            report = await run_load(capstone, mixed, label="mixed capstone", clients=args.clients,
                                    seconds=args.seconds, max_calls=args.max_calls)
            rows.setdefault("mixed capstone", []).append(report)
            print(f"round {round_no + 1}: {report.line()}", flush=True)

        print("\n# summary (median over rounds)")
        for label, reports in rows.items():
            errors = sum(r.errors for r in reports)
            failures += errors
            print(f"{label:<30} {statistics.median(r.throughput for r in reports):8.1f} calls/s  "
                  f"p50 {statistics.median(r.pct(0.5) for r in reports):6.2f} ms  "
                  f"p99 {statistics.median(r.pct(0.99) for r in reports):7.2f} ms  errors {errors}")

        def median_of(label: str) -> float:
            return statistics.median(r.throughput for r in rows[label])

        ratio = median_of("compare capstone trivial") / median_of("compare minimal trivial")
        p99 = statistics.median(r.pct(0.99) for r in rows["latency capstone trivial"])
        mixes = rows["mixed capstone"]
        mixed_p99 = statistics.median(r.pct(0.99) for r in mixes)
        safe = "cancellation-safe" if not cancel_problem else "NOT cancellation-safe"
        print(f"\ncapstone ({safe}) / minimal throughput at c={args.clients}: {ratio:.2f}x   (target >= 1.20x)")
        cpu = {label: statistics.median(r.server_cpu / max(r.calls, 1) * 1e6 for r in rows[f"compare {label} trivial"])
               for label in ("capstone", "minimal")}
        print(f"  server CPU per call: capstone {cpu['capstone']:.0f} us, minimal {cpu['minimal']:.0f} us "
              f"({cpu['minimal'] / cpu['capstone']:.2f}x: what the ratio tends to when each server has a core to itself)")
        print(f"capstone p99 at c={args.latency_clients}: {p99:.2f} ms   (target <= 10 ms)")
        print(f"mixed set p99 at c={args.clients}: {mixed_p99:.2f} ms   (target <= 100 ms)")
        answers = statistics.median(pct([ms for tool, v in r.tool_ms.items() if tool not in JOBS for ms in v], 0.99)
                                    for r in mixes)
        jobs = ", ".join(f"{tool} {statistics.median(tool_p99(r, tool) for r in mixes):.2f} ms" for tool in JOBS)
        print(f"  of which one-answer calls: {answers:.2f} ms; progress jobs (SSE): {jobs}")
        calls_per_tool: Counter[str] = sum((r.per_tool for r in mixes), Counter())
        print("mixed set, calls per tool: " + ", ".join(f"{k}={v}" for k, v in sorted(calls_per_tool.items())))
        print("mixed set, p99 per tool (ms, median over rounds): " + ", ".join(
            f"{tool}={statistics.median(tool_p99(r, tool) for r in mixes):.0f}" for tool in sorted(calls_per_tool)))

        if args.workers_trap:
            trap = start_capstone_workers(work, workspace, sys.executable, 2)
            servers.append(trap)
            await wait_ready(trap)
            single = await keepalive_latency(capstone, trivial_calls("capstone")[0])
            multi = await keepalive_latency(trap, trivial_calls("capstone")[0])
            print(f"\nkeep-alive latency, one connection, sequential: capstone (one process) {single:.2f} ms, "
                  f"`uvicorn --workers 2` {multi:.2f} ms  (TCP_NODELAY lost with --workers: uvicorn issue 3149)")
            stop([trap])

        if args.soak:
            soak = await run_load(capstone, mixed, label="soak capstone mixed", clients=args.clients,
                                  seconds=args.soak, max_calls=10**9, sample_rss=True)
            failures += soak.errors
            first = [mb for t, mb in soak.rss_samples if t < 10]
            last = [mb for t, mb in soak.rss_samples if t >= soak.seconds - 10]
            growth = (statistics.mean(last) / statistics.mean(first) - 1) * 100 if first and last else float("nan")
            print(f"\n{soak.line()}")
            print(f"soak {args.soak:g} s: {soak.calls} calls, {soak.errors} errors (target 0); RSS first 10 s "
                  f"{statistics.mean(first):.1f} MiB, last 10 s {statistics.mean(last):.1f} MiB, growth {growth:+.1f} % "
                  f"(target < 10 %)")
        print(f"RSS at end: capstone {capstone.rss_mb():.1f} MiB (start {rss_start['capstone']:.1f}), "
              f"minimal {minimal.rss_mb():.1f} MiB (start {rss_start['minimal']:.1f})")
        return 1 if failures else 0
    finally:
        stop(servers)
        shutil.rmtree(work, ignore_errors=True)


def loop_note() -> str:
    try:
        import uvloop  # noqa: F401
        loop = "uvloop available"
    except ImportError:
        loop = "asyncio (uvloop not installed)"
    try:
        import httptools  # noqa: F401
        return loop + ", httptools available"
    except ImportError:
        return loop + ", h11 (httptools not installed)"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients for compare/mixed/soak (default 32)")
    parser.add_argument("--latency-clients", type=int, default=8, help="concurrent clients for the latency phase (default 8)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per phase (default 3)")
    parser.add_argument("--soak", type=float, default=0.0, help="also soak the mixed set for this many seconds")
    parser.add_argument("--documents", type=int, default=20, help="documents in the workspace (default 20)")
    parser.add_argument("--max-calls", type=int, default=200_000, help="cap on calls per measurement")
    parser.add_argument("--no-workers-trap", dest="workers_trap", action="store_false",
                        help="skip measuring keep-alive latency under `uvicorn --workers 2`")
    options = parser.parse_args()
    if options.seconds > 60 or options.rounds > 10 or options.clients > 256 or options.soak > 600:
        sys.exit("keep it bounded: --seconds <= 60, --rounds <= 10, --clients <= 256, --soak <= 600")
    if options.documents < 2:
        sys.exit("--documents must be at least 2")
    options.loop_note = loop_note()
    sys.exit(asyncio.run(main(options)))
