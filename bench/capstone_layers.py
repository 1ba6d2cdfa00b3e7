"""What each of the capstone's layers costs a request, measured without sockets.

    PYTHONPATH=solutions/src uv run python bench/capstone_layers.py            # ~2 minutes
    PYTHONPATH=solutions/src uv run python bench/capstone_layers.py --calls 800 --rounds 3   # quicker

`capstone_load.py` compares whole servers by throughput, which on a shared machine moves with
everyone else's load. This script asks a narrower, steadier question: how much CPU does the
capstone's ASGI app spend on one trivial `tools/call`, and how much of that does each desk layer
add? Every app runs in this process and is called directly (scope, receive, send: no uvicorn, no
HTTP parsing, no socket), 32 calls at a time as the load test's clients send them, and timed in
process CPU time, so waiting for the machine does not count. Each variant leaves one part out:

* CancelOnDisconnect (the JSON twin's disconnect watch), CORS, bearer auth (no token: then
  LoopbackOnly guards instead), and each server middleware (RequestGuard, DeskTelemetry,
  honest_capabilities);
* all of them at once: what the desk's own layers cost together;
* and, one at a time, the SDK features the desk switches on: lesson 3's tasks extension, lesson 6's
  request-state security and cache hints;
* beside them, a minimal `MCPServer` app with SDK defaults (the load test's baseline).

Every app serves the same `echo` tool, so the tools' own work cancels out. Rounds alternate the
variants; the figures are medians. Process time is steadier than throughput, not immune: caches and cores
shared with a busy machine still move it by some 10 µs, so on one a single layer's few microseconds
are within the noise while the sum of them is not. What an app costs is only part of what a served request costs:
uvicorn's HTTP parsing and the socket add roughly as much again, the same for both servers (compare
the load test's server CPU per call), so a layer's share of the throughput is about half its share
here.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from capstone_load import PUBLIC_HOST, base_headers, call_body, make_workspace

CONCURRENT = 32   # calls in flight at once, as the load test's default clients


async def echo(text: str) -> str:
    """Return the text."""
    return text


def request(host: str, token: str | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The body and ASGI headers of one modern `tools/call` of echo."""
    body = json.dumps(call_body(1, "echo", {"text": "ping"}, progress=False)).encode()
    headers = base_headers() | {"Mcp-Method": "tools/call", "Mcp-Name": "echo", "Content-Length": str(len(body)),
                                "Host": host}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return body, [(key.lower().encode("latin-1"), value.encode("latin-1")) for key, value in headers.items()]


async def call_once(app: Any, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/mcp", "raw_path": b"/mcp", "root_path": "", "query_string": b"", "headers": headers,
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "state": {}}
    delivered = False
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()   # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    if statuses != [200]:
        raise RuntimeError(f"the app answered {statuses}, not 200")


async def cpu_per_call(app: Any, body: bytes, headers: list[tuple[bytes, bytes]], calls: int) -> float:
    """Microseconds of process CPU per call, `CONCURRENT` calls at a time."""
    waves = max(1, calls // CONCURRENT)
    started = time.process_time()
    for _ in range(waves):
        await asyncio.gather(*(call_once(app, body, headers) for _ in range(CONCURRENT)))
    return (time.process_time() - started) / (waves * CONCURRENT) * 1e6


async def start_lifespan(app: Any) -> None:
    """Run the app's lifespan startup (its task keeps running for the rest of the process)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    asyncio.get_running_loop().create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                               inbox.get, outbox.put))
    answer = await outbox.get()
    if answer["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"lifespan failed: {answer}")


class Variant:
    """How to build the capstone app with some of its parts left out."""

    def __init__(self, label: str, *, leave_out: tuple[str, ...] = (), token: bool = True) -> None:
        self.label = label
        self.leave_out = set(leave_out)
        self.token = token

    @contextmanager
    def patched(self) -> Iterator[None]:
        """While building: echo added, and the parts left out replaced by nothing."""
        import research_desk.server as desk

        create_server = desk.create_server
        middlewares = {"RequestGuard": desk.middleware.RequestGuard, "DeskTelemetry": desk.observability.DeskTelemetry}

        def leaves_out(part: Any) -> bool:
            if part is desk.honest_capabilities:
                return "honest_capabilities" in self.leave_out
            return any(isinstance(part, kind) for name, kind in middlewares.items() if name in self.leave_out)

        def server_with_echo(settings: Any, *, http: bool = True) -> Any:
            server = create_server(settings, http=http)
            server.tool()(echo)
            server.middleware[:] = [part for part in server.middleware if not leaves_out(part)]
            return server

        with ExitStack() as stack:
            stack.enter_context(mock.patch.object(desk, "create_server", server_with_echo))
            if "CancelOnDisconnect" in self.leave_out:
                stack.enter_context(mock.patch.object(desk, "CancelOnDisconnect", lambda app: app))
            if "CORS" in self.leave_out:
                stack.enter_context(mock.patch.object(desk.Settings, "origins", property(lambda settings: [])))
            dropped = {argument for part, argument in SDK_OPTIONS.items() if part in self.leave_out}
            if dropped:
                sdk_server = desk.MCPServer

                def server_without(*args: Any, **options: Any) -> Any:
                    return sdk_server(*args, **{k: v for k, v in options.items() if k not in dropped})

                stack.enter_context(mock.patch.object(desk, "MCPServer", server_without))
            yield

    def build(self, workspace: Path, token: str) -> tuple[Any, tuple[bytes, list[tuple[bytes, bytes]]]]:
        """The app, and the request it is sent (through the public name with the token, or to
        127.0.0.1 without one: a desk with no token serves only its own machine)."""
        from research_desk.server import build_app

        settings = {"RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_STATE_KEYS": secrets.token_hex(32),
                    "RESEARCH_DESK_REPLICA": "a", "RESEARCH_DESK_LOG_LEVEL": "WARNING"}
        if self.token:
            settings |= {"RESEARCH_DESK_TOKEN": token, "RESEARCH_DESK_PUBLIC_URL": f"https://{PUBLIC_HOST}/mcp"}
        with self.patched():
            app = build_app(settings)
        return app, request(PUBLIC_HOST, token) if self.token else request("127.0.0.1:8000", None)


MIDDLEWARES = ("RequestGuard", "DeskTelemetry", "honest_capabilities")
SDK_OPTIONS = {"the tasks extension": "extensions", "request-state security": "request_state_security",
               "cache hints": "cache_hints"}
"""SDK features the desk switches on (lessons 3 and 6), by the MCPServer argument that does it."""
VARIANTS = [
    Variant("capstone, as served"),
    Variant("  without CancelOnDisconnect", leave_out=("CancelOnDisconnect",)),
    Variant("  without CORS", leave_out=("CORS",)),
    Variant("  without bearer auth (no token)", token=False),
    *(Variant(f"  without {name}", leave_out=(name,)) for name in MIDDLEWARES),
    Variant("  without all three server middlewares", leave_out=MIDDLEWARES),
    Variant("  without all of the above", leave_out=(*MIDDLEWARES, "CancelOnDisconnect", "CORS"), token=False),
    *(Variant(f"  without {name} (SDK)", leave_out=(name,)) for name in SDK_OPTIONS),
]


def minimal_app() -> Any:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("minimal", log_level="WARNING")
    server.tool()(echo)
    return server.streamable_http_app()


async def main(args: argparse.Namespace) -> None:
    workspace = Path(tempfile.mkdtemp(prefix="capstone-layers-"))
    make_workspace(workspace, 20)
    token = secrets.token_urlsafe(24)
    apps: dict[str, tuple[Any, tuple[bytes, list[tuple[bytes, bytes]]]]] = {
        variant.label: variant.build(workspace, token) for variant in VARIANTS}
    apps["minimal MCPServer"] = (minimal_app(), request("127.0.0.1:8000", None))
    logging.getLogger().setLevel(logging.WARNING)
    for app, _ in apps.values():
        await start_lifespan(app)
    gc.collect()
    gc.freeze()   # as the capstone's serving process does (and no harm to the minimal)
    samples: dict[str, list[float]] = {label: [] for label in apps}
    for app, (body, headers) in apps.values():   # warm-up: first-call costs
        await cpu_per_call(app, body, headers, CONCURRENT * 4)
    for _ in range(args.rounds):
        for label, (app, (body, headers)) in apps.items():
            samples[label].append(await cpu_per_call(app, body, headers, args.calls))
    full = statistics.median(samples[VARIANTS[0].label])
    print(f"# app CPU per trivial tools/call, {CONCURRENT} in flight, median of {args.rounds} rounds "
          f"of {args.calls} calls (python {sys.version.split()[0]})")
    for label, values in samples.items():
        median = statistics.median(values)
        print(f"{label:<42} {median:7.1f} us   {median - full:+7.1f} us   "
              f"(rounds {', '.join(f'{v:.0f}' for v in values)})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1600, help="calls per measurement (default 1600)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, variants alternating (default 7)")
    options = parser.parse_args()
    if not (32 <= options.calls <= 100_000 and 1 <= options.rounds <= 50):
        sys.exit("keep it bounded: 32 <= --calls <= 100000, 1 <= --rounds <= 50")
    asyncio.run(main(options))
