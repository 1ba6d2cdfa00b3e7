"""Lesson 9, going further: the plumbing of the observability checks (visible and hidden).

The spans are collected where student code runs: an OpenTelemetry SDK tracer provider with an
in-memory exporter is installed in that process (through `target.library`, so in a grading sandbox
it is the sandbox's own SDK), and each finished span comes back as the SDK's JSON. The desk's log
lines are read from what its process wrote to stderr; its metrics from a real GET /metrics, parsed
by prometheus_client's own parser. What the checks compare with is what the check's client saw.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx2
from mcp import Client, MCPError
from prometheus_client.parser import text_string_to_metric_families

from checker.checks.kit.text import word
from checker.checks.support.lesson09 import Desk
from checker.target import Target

OUTCOME = "research_desk.outcome"   # the attributes the lesson documents (observability.py)
TOOL = "mcp.tool.name"


class Spans:
    """An in-memory span exporter installed in student code's process; `finished()` reads it."""

    def __init__(self, target: Target) -> None:
        api = target.library("opentelemetry.trace")
        sdk = target.library("opentelemetry.sdk.trace")
        export = target.library("opentelemetry.sdk.trace.export")
        memory = target.library("opentelemetry.sdk.trace.export.in_memory_span_exporter")
        self.exporter = memory.InMemorySpanExporter()
        provider = api.get_tracer_provider()
        if "opentelemetry.sdk.trace.TracerProvider" not in target.classes(provider):   # the API's no-op proxy
            api.set_tracer_provider(sdk.TracerProvider())
            provider = api.get_tracer_provider()
        provider.add_span_processor(export.SimpleSpanProcessor(self.exporter))

    def finished(self) -> list[dict[str, Any]]:
        """Every span finished since the last `clear`, as the SDK's JSON."""
        spans = self.exporter.get_finished_spans()
        return [json.loads(str(spans[i].to_json())) for i in range(len(spans))]

    def clear(self) -> None:
        self.exporter.clear()


@dataclass
class Call:
    """One tools/call the check made, and how it ended as the client saw it."""

    tool: str
    outcome: str          # "ok", "tool_error" or "error"


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> Call:
    """Call `tool`; what the client got back, as an outcome."""
    try:
        result = await client.call_tool(tool, arguments)
    except MCPError:
        return Call(tool, "error")
    return Call(tool, "tool_error" if result.is_error else "ok")


def reused_key() -> list[tuple[str, dict[str, Any]]]:
    """A note saved, then another note under the same idempotency key: the second is a protocol error."""
    key, title = word(None, 12, 20), word()
    return [("save_note", {"title": title, "body": word(), "idempotency_key": key}),
            ("save_note", {"title": title, "body": f"{word()} {word()}", "idempotency_key": key})]


def sdk_spans(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The SDK's SERVER spans of tools/call requests, in the order they finished."""
    return [s for s in spans if s["kind"] == "SpanKind.SERVER"
            and s["attributes"].get("mcp.method.name") == "tools/call"]


def children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    """The spans whose parent is `parent` (same trace, parent id = its span id)."""
    return [s for s in spans if s.get("parent_id") == parent["context"]["span_id"]
            and s["context"]["trace_id"] == parent["context"]["trace_id"]]


def desk_span_of(spans: list[dict[str, Any]], tool: str) -> dict[str, Any] | None:
    """A span anywhere in `spans` that says it is the desk's span of `tool` (for messages)."""
    return next((s for s in spans if s["attributes"].get(TOOL) == tool and s["kind"] != "SpanKind.SERVER"), None)


def trace_hex(span: dict[str, Any]) -> str:
    """A span's trace id as 32 hex digits (how a log line names it)."""
    return format(int(span["context"]["trace_id"], 16), "032x")


def request_of(span: dict[str, Any]) -> str:
    """The JSON-RPC id of the request the SDK's span is for."""
    return str(span["attributes"].get("jsonrpc.request.id"))


Page = dict[tuple[str, tuple[tuple[str, str], ...]], float]
"""A parsed /metrics page: (sample name, sorted labels) -> value."""

LOG_LINE = re.compile(r"research_desk\.observability \[request (\S+) trace (\S+)\] (.*)")


def log_lines(output: str) -> list[tuple[str, str, str]]:
    """(request id, trace id, message) of every line the desk's telemetry logged."""
    return [m.groups() for m in map(LOG_LINE.search, output.splitlines()) if m]  # type: ignore[misc]


async def scrape(url: str, desk: Desk, token: str | None) -> httpx2.Response:
    """GET /metrics of the desk at `url` through the 'proxy', with `token` as the bearer (None: none)."""
    headers = {"Host": desk.host}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(10)) as http:
        return await http.get(url.rsplit("/mcp", 1)[0] + "/metrics", headers=headers)


def samples(text: str) -> Page:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def counted(page: Page, method: str) -> Counter[str]:
    """research_desk_requests_total for `method`, by outcome."""
    found: Counter[str] = Counter()
    for (name, labels), value in page.items():
        label = dict(labels)
        if name == "research_desk_requests_total" and label.get("method") == method:
            found[label.get("outcome", "?")] += int(value)
    return found


def tool_seconds(page: Page, tool: str) -> tuple[int, float]:
    """(count, sum) of research_desk_tool_seconds for `tool`."""
    labels = (("tool", tool),)
    return (int(page.get(("research_desk_tool_seconds_count", labels), 0)),
            page.get(("research_desk_tool_seconds_sum", labels), 0.0))


# --- what the visible checks and their hidden twins assert ------------------------------------------


def spans_match(finished: list[dict[str, Any]], calls: list[Call], era: str) -> None:
    """Each call has the SDK's span, and under it exactly one desk span that tells how the call ended."""
    servers = sdk_spans(finished)
    assert len(servers) == len(calls), (
        f"[{era}] expected the SDK's span for each of the {len(calls)} tool calls, found {len(servers)}: "
        f"is the SDK's OpenTelemetryMiddleware still first in server.middleware?")
    for made_call, parent in zip(calls, servers, strict=True):
        mine = children(finished, parent)
        stray = desk_span_of(finished, made_call.tool)
        assert len(mine) == 1, (
            f"[{era}] the SDK's span {parent['name']!r} should have exactly one child, the desk's span, found "
            f"{len(mine)}" + (f"; a span for {made_call.tool!r} exists, but its parent is "
                              f"{stray.get('parent_id')}: open it while the SDK's span is current"
                              if stray and not mine else ""))
        attributes = mine[0]["attributes"]
        assert attributes.get(TOOL) == made_call.tool, (
            f"[{era}] the desk's span of a {made_call.tool!r} call has {TOOL}={attributes.get(TOOL)!r}")
        assert attributes.get(OUTCOME) == made_call.outcome, (
            f"[{era}] {made_call.tool!r} ended as {made_call.outcome!r} for the client, yet its span says "
            f"{OUTCOME}={attributes.get(OUTCOME)!r}")
        status = mine[0]["status"]["status_code"]
        failed = made_call.outcome != "ok"
        assert (status == "ERROR") == failed, (
            f"[{era}] the span of a {made_call.tool!r} call that ended {made_call.outcome!r} has status {status}: "
            f"a failed call is StatusCode.ERROR, a successful one is not")
        if made_call.outcome == "error":
            assert any(e["name"] == "exception" for e in mine[0]["events"]), (
                f"[{era}] the call of {made_call.tool!r} raised, but its span records no exception "
                f"(span.record_exception)")


def counts_match(before: Page, after: Page, calls: list[Call], era: str) -> None:
    """Between two scrapes, the calls were counted by outcome and each tool's calls observed once each."""
    got = counted(after, "tools/call") - counted(before, "tools/call")
    expected = Counter(c.outcome for c in calls)
    assert got == expected, (
        f"[{era}] research_desk_requests_total{{method=\"tools/call\"}} grew by {dict(got)} over calls that ended "
        f"{dict(expected)}: every answered call counts once, under its outcome")
    for tool in {c.tool for c in calls}:
        count = tool_seconds(after, tool)[0] - tool_seconds(before, tool)[0]
        made = sum(c.tool == tool for c in calls)
        assert count == made, (
            f"[{era}] research_desk_tool_seconds_count{{tool={tool!r}}} grew by {count} over {made} calls")
