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


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text page: (name, sorted labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def counted(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], method: str) -> Counter[str]:
    """research_desk_requests_total for `method`, by outcome."""
    found: Counter[str] = Counter()
    for (name, labels), value in page.items():
        label = dict(labels)
        if name == "research_desk_requests_total" and label.get("method") == method:
            found[label.get("outcome", "?")] += int(value)
    return found


def tool_seconds(page: dict[tuple[str, tuple[tuple[str, str], ...]], float], tool: str) -> tuple[int, float]:
    """(count, sum) of research_desk_tool_seconds for `tool`."""
    labels = (("tool", tool),)
    return (int(page.get(("research_desk_tool_seconds_count", labels), 0)),
            page.get(("research_desk_tool_seconds_sum", labels), 0.0))
