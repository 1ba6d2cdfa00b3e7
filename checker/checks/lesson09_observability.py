"""Lesson 9 checks, going further: observability, and two promises of the deployed desk.

Each check deploys the student's `build_app(settings)` under a real uvicorn (`support/lesson09.py`)
and calls it through real MCP clients in both protocol eras. The spans are collected in memory
where the desk runs, its log lines read from its stderr, its metrics from a real GET /metrics
(`support/lesson09_observability.py`). Documents, tools called, token and pace are drawn from the
check's seeded generator; what each call should be recorded as is what the client saw.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from mcp import MCPError
from mcp.types import Implementation

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson06 import hints_given, hints_on_the_wire
from checker.checks.support.lesson09 import (
    Desk,
    desk_client,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    desk_settings,
    own_errors,
    serve,
)
from checker.checks.support.lesson09_observability import (
    Call,
    Spans,
    call,
    counts_match,
    log_lines,
    request_of,
    reused_key,
    samples,
    scrape,
    sdk_spans,
    spans_match,
    tool_seconds,
    trace_hex,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

RATE_LIMITED = -32010   # lesson 7's documented code (middleware.RATE_LIMITED)


def mixed_calls(desk: Desk) -> list[tuple[str, dict[str, Any]]]:
    """A random order of calls that end in every way: served, a tool error (a document or a tool that
    does not exist: both are results with isError), and a protocol error (an idempotency key reused
    for another note: lesson 7's -32602, raised through the middleware)."""
    calls = [("read_document", {"name": random.choice(desk.names)}),
             ("read_document", {"name": f"{word()}-{random.randint(100, 999)}.md"}),
             (f"{word()}_{word()}", {}), ("list_documents", {})]
    calls += random.sample(calls, 2)
    random.shuffle(calls)
    return calls + reused_key()



async def made(url: str, desk: Desk, mode: str, plan: list[tuple[str, dict[str, Any]]]) -> list[Call]:
    """Make the calls of `plan` through one client in `mode`; how each ended."""
    async with desk_client(url, desk, mode) as client:
        return [await call(client, tool, arguments) for tool, arguments in plan]


@check("each tool call gets the desk's span, a child of the SDK's, with the tool and its outcome (both eras)",
       points=3,
       hint="Open the span inside your middleware with tracer.start_as_current_span while the SDK's span is "
            "current: MCPServer(middleware=[...]) runs after the SDK's OpenTelemetryMiddleware, so the span nests. "
            "Set mcp.tool.name and research_desk.outcome; a tool error or an exception sets StatusCode.ERROR, and "
            "an exception is recorded (span.record_exception) and re-raised.")
async def test_desk_span_per_tool_call(target: Target, desk: Desk) -> None:
    spans = Spans(target)
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode, era in MODES.items():
                spans.clear()
                calls = await made(url, desk, mode, mixed_calls(desk))
                spans_match(spans.finished(), calls, era)


@check("the desk's log lines name the request and the trace they belong to", points=2,
       hint="Set the request id (str(ctx.request_id)) in a ContextVar before `call_next` and reset it after; log "
            "the INFO line while the span is current. RequestIdFilter, on the handler, stamps every record with "
            "both, and configure_logging prints them as [request <id> trace <trace id>].")
async def test_log_lines_carry_request_id(target: Target, desk: Desk) -> None:
    spans = Spans(target)
    target.output()
    with own_errors():
        async with serve(target, desk_settings(target, desk, log_level="INFO")) as url:
            for mode, era in MODES.items():
                spans.clear()
                before = len(log_lines(target.output()))
                calls = await made(url, desk, mode, mixed_calls(desk))
                servers = sdk_spans(spans.finished())
                lines = log_lines(target.output())[before:]
                for made_call, parent in zip(calls, servers, strict=False):
                    mine = [m for rid, tid, m in lines if rid == request_of(parent) and tid == trace_hex(parent)]
                    assert len(mine) == 1 and made_call.tool in mine[0], (
                        f"[{era}] expected one research_desk.observability line naming request "
                        f"{request_of(parent)} (the JSON-RPC id) and trace {trace_hex(parent)} for the "
                        f"{made_call.tool!r} call; the telemetry logged {lines[:6]}")
                assert len(servers) == len(calls), f"[{era}] the SDK's spans of the tool calls are missing"


@check("/metrics counts every request by method and outcome, and times every tool call", points=2,
       hint="Count in a `finally`, after the outcome is known, so failures count too; observe the tool's seconds "
            "once call_next has returned or raised (a clock read before it says every tool takes no time).")
async def test_metrics_count_and_time(target: Target, desk: Desk) -> None:
    pace = random.uniform(0.02, 0.05)
    with own_errors():
        async with serve(target, desk_settings(target, desk, index_pace=pace)) as url:
            for mode, era in MODES.items():
                before = samples((await scrape(url, desk, desk.token)).text)
                plan = mixed_calls(desk) + [("index_documents", {})]
                calls = await made(url, desk, mode, plan)
                response = await scrape(url, desk, desk.token)
                assert response.status_code == 200, f"GET /metrics with the token answered {response.status_code}"
                page = samples(response.text)
                counts_match(before, page, calls, era)
                spent = tool_seconds(page, "index_documents")[1] - tool_seconds(before, "index_documents")[1]
                least = pace * len(desk.names)
                assert spent >= least * 0.9, (
                    f"[{era}] index_documents waits {pace:.3f} s after each of {len(desk.names)} documents, yet "
                    f"research_desk_tool_seconds_sum grew by {spent:.3f} s: time the whole call")


@check("/metrics is served, and wants the desk's token when it has one", points=1,
       hint="Custom routes skip the SDK's bearer check: compare the Authorization header with `Bearer <token>` "
            "yourself (hmac.compare_digest) and answer 401 without it.")
async def test_metrics_need_the_token(target: Target, desk: Desk) -> None:
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for token, wanted in ((None, 401), (desk.token[::-1] + "x", 401), (desk.token, 200)):
                response = await scrape(url, desk, token)
                shown = "no token" if token is None else "the right token" if wanted == 200 else "a wrong token"
                assert response.status_code == wanted, (
                    f"GET /metrics with {shown} answered {response.status_code}, expected {wanted}: the page "
                    f"names every tool and how often it runs")


@check("the deployed desk limits each client with lesson 7's RequestGuard", points=1,
       hint="create_server puts middleware.RequestGuard(limit=settings.rate_limit or None, window=60.0) first in "
            "server.middleware, so every message passes it.")
async def test_capstone_has_request_guard(target: Target, desk: Desk) -> None:
    limit = random.randint(3, 6)
    with own_errors():
        async with serve(target, desk_settings(target, desk, rate_limit=limit)) as url:
            for mode, era in MODES.items():   # one client name per era: each is a client of its own
                name = Implementation(name=f"{word()}-{mode}", version="1.0")
                async with desk_client(url, desk, mode, client_info=name) as client:
                    refused = None
                    for sent in range(1, limit + 4):
                        try:
                            await client.call_tool("desk_info", {})
                        except MCPError as exc:
                            refused = (sent, exc.error.code)
                            break
                assert refused is not None and refused[1] == RATE_LIMITED, (
                    f"[{era}] with rate_limit={limit}, {limit + 3} calls in a row were "
                    f"{'all served' if refused is None else f'refused with {refused[1]}'}: the desk should refuse "
                    f"the client with {RATE_LIMITED} (is lesson 7's RequestGuard in server.middleware?)")
                assert refused[0] > 1, f"[{era}] the first call was already refused: count only this client's calls"


@check("the deployed desk's results carry desk_cache_hints()", points=1,
       hint="Pass cache_hints=scaling.desk_cache_hints() to MCPServer in create_server, so every list and read "
            "result tells a cache how long it may keep it, and whether it may share it.")
async def test_capstone_cache_hints(target: Target, desk: Desk) -> None:
    expected = hints_given(target.module("scaling").desk_cache_hints())
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url, \
                desk_client(url, desk, cache=None) as client:   # hints are a 2026-07-28 field
            seen = await hints_on_the_wire(client)
    assert seen == expected, (
        f"the desk's results arrived with (ttlMs, cacheScope) {seen}; desk_cache_hints() sets {expected}")
