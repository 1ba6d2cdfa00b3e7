"""Lesson 7, going further: one middleware audits every message and rate-limits each client.

Each check puts the student's `RequestGuard` around lesson 7's desk (`middleware.create_server`)
and talks to it through real MCP clients in both protocol eras. What the checks compare with is
computed here: the calls this check made, in order, and what each one got back. Limits, windows,
client names and how long the search service takes are drawn from the fork's seeded generator.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError
from mcp.types import INVALID_PARAMS

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.eras import MODES, side_by_side
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson07_middleware import (
    RATE_LIMITED,
    STARTERS,
    SlowSearch,
    burst,
    calls,
    client,
    guarded,
    refused,
    refused_next,
    trail,
)
from checker.checks.support.lesson07_middleware import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

# -- the checks ----------------------------------------------------------------------------------

@check("middleware records every message once, with the tool and how it ended (both eras)", points=3,
       hint="Wrap the whole answer: start a clock, `await call_next(ctx)`, and record one RequestRecord in a "
            "`finally` for every message, whatever its method, and for notifications too (request_id None). A "
            "result with isError set is a tool_error; an MCPError is an error with its code; re-raise it.")
async def test_every_message_is_audited(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    for mode, era in MODES.items():
        desk, guard, server = guarded(target, tmp_path / "workspace", limit=None)
        name, missing = random.choice(sorted(workspace)), f"{word()}-{random.randint(100, 999)}.md"
        key = word(None, 12, 20)
        unknown = f"{word()}_{word()}"
        expected: list[tuple[Any, ...]] = []
        async with client(target, server, mode, word()) as session:
            await session.list_tools()
            for tool, args in [("read_document", {"name": name}), ("read_document", {"name": missing}),
                               (unknown, {}), ("save_note", {"title": word(), "body": word(), "idempotency_key": key}),
                               ("save_note", {"title": word(), "body": word(), "idempotency_key": key})]:
                try:
                    result = await session.call_tool(tool, args)
                except MCPError as exc:
                    expected.append((tool, "error", exc.error.code))
                else:
                    expected.append((tool, "tool_error" if result.is_error else "ok", None))
        assert expected[-1] == ("save_note", "error", INVALID_PARAMS), (
            "lesson 7's desk should refuse a reused idempotency key with -32602 (is errors.py finished?)")
        records = trail(guard)
        assert records, f"[{era}] the guard recorded nothing: every message must leave one RequestRecord"
        got = calls(records)
        assert got == expected, (
            f"[{era}] the tools/call records (tool, outcome, code) should be exactly the calls made, in order:\n"
            f"  expected {expected}\n  recorded {got}")
        methods = [r["method"] for r in records]
        for method in (STARTERS[mode], "tools/list"):
            assert method in methods, (
                f"[{era}] no record of {method!r}: middleware wraps every request, not only tool calls "
                f"(recorded methods: {sorted(set(methods))})")
        if mode == "legacy":
            notes = [r for r in records if r["method"] == "notifications/initialized"]
            assert len(notes) == 1 and notes[0]["request_id"] is None and notes[0]["outcome"] == "ok", (
                f"[{era}] the client's notifications/initialized should be recorded once, with request_id None "
                f"and outcome ok: got {notes}")
        ids = [r["request_id"] for r in records if not r["method"].startswith("notifications/")]
        assert None not in ids and len(ids) == len(set(ids)), (
            f"[{era}] each request should be recorded once, under its own request id: got ids {ids}")


@check("a record's duration spans the whole answer", points=2,
       hint="Read the clock before `call_next` and again after it has returned or raised (a `finally`): a "
            "record written before the handler runs says every request took no time at all.")
async def test_duration_spans_the_answer(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    async def era_check(mode: str, era: str) -> None:
        pause, query = random.uniform(0.15, 0.25), word(None, 2, 3)
        search = SlowSearch(pause, sorted(workspace))
        _, guard, server = guarded(target, tmp_path / "workspace", limit=None, search=search)
        async with client(target, server, mode, word()) as session:
            await session.list_tools()
            started = time.monotonic()
            result = await session.call_tool("search_documents", {"query": query})
            elapsed = time.monotonic() - started
        assert not result.is_error, f"search_documents failed: {text_of(result)[:200]!r}"
        records = trail(guard)
        searches = [r for r in records if r["tool"] == "search_documents"]
        assert len(searches) == 1, f"[{era}] expected one record of the search_documents call, got {searches}"
        seconds = searches[0]["seconds"]
        assert isinstance(seconds, (int, float)) and pause * 0.95 <= seconds <= elapsed + 0.05, (
            f"[{era}] the search service took {pause:.3f} s and the client waited {elapsed:.3f} s, so the record's "
            f"`seconds` should lie between them; it says {seconds!r}")
        listing = [r["seconds"] for r in records if r["method"] == "tools/list"]
        assert listing and all(isinstance(s, (int, float)) and 0 <= s < pause for s in listing), (
            f"[{era}] a tools/list record should say how long that listing took (well under {pause:.2f} s), "
            f"got {listing}")

    await side_by_side(era_check)


@check("a client that sends more than `limit` requests in the window is refused with -32010 and retryAfter",
       points=3,
       hint="Count each client's requests in the last `window` seconds (by `client_key(ctx)`); when `limit` "
            "are there already, raise MCPError(RATE_LIMITED, ..., data={'retryAfter': ...}) before call_next, "
            "so no tool runs. Exactly `limit` requests are allowed; other clients keep their own allowance.")
async def test_burst_is_refused(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    for mode, era in MODES.items():
        limit, window = random.randint(2, 6), random.uniform(20, 60)
        desk, guard, server = guarded(target, tmp_path / "workspace", limit=limit, window=window)
        greedy, other = word(), f"{word()}-{random.randint(10, 99)}"
        async with client(target, server, mode, greedy) as first, client(target, server, mode, other) as second:
            await burst(first, limit)
            await refused_next(first, window, f"[{era}] request {limit + 1} of a client limited to {limit}")
            try:
                await first.call_tool("save_note", {"title": word(), "body": word(),
                                                    "idempotency_key": word(None, 12, 20)})
            except MCPError as exc:
                refused(exc, window, f"[{era}] a tool call past the limit")
            else:
                pytest.fail(f"[{era}] a tool call past the limit was served: refuse it before call_next")
            assert not desk.notes, f"[{era}] a refused save_note saved a note: refuse before the tool runs"
            await burst(second, limit)  # another client: its own allowance
        refusals = [r for r in trail(guard) if r["outcome"] == "error"]
        assert len(refusals) == 2 and all(r["code"] == RATE_LIMITED for r in refusals), (
            f"[{era}] the two refused requests should be recorded as errors with code {RATE_LIMITED}: got {refusals}")


@check("the rate limit never stops a client from connecting, pinging or notifying", points=2,
       hint="Leave notifications (request_id None) and NEVER_LIMITED methods (initialize, server/discover, "
            "ping) alone: they are neither counted nor refused, so a limited client can still connect and "
            "learn when to come back.")
async def test_connecting_is_never_limited(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    for mode, era in MODES.items():
        limit, window = random.randint(1, 4), random.uniform(20, 60)
        _, guard, server = guarded(target, tmp_path / "workspace", limit=limit, window=window)
        name = word()
        async with client(target, server, mode, name) as first:
            await burst(first, limit)
        for again in range(2):
            try:
                async with client(target, server, mode, name) as session:
                    if mode == "legacy":
                        await session.send_ping()
                    await refused_next(session, window, f"[{era}] a request of a client that used its limit")
            except MCPError as exc:
                pytest.fail(f"[{era}] a client that has used its limit could not connect or ping (attempt "
                            f"{again + 1}): {exc.error.code} {exc.error.message}. Never count or refuse "
                            "initialize, server/discover, ping or notifications")
        starters = [r for r in trail(guard) if r["method"] in (STARTERS[mode], "ping") or r["request_id"] is None]
        assert starters and all(r["outcome"] == "ok" for r in starters), (
            f"[{era}] connecting, pinging and notifications should all end ok: got {starters}")


@check("once the window has passed, a refused client is served again", points=2,
       hint="Forget a client's requests older than `window` seconds before counting, by the guard's own clock "
            "(now = self.clock(): the check moves it on); retryAfter is when the oldest one leaves the window.")
async def test_served_again_after_window(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    async def era_check(mode: str, era: str) -> None:
        limit, window, clock = random.randint(2, 4), random.uniform(0.6, 0.9), CheckClock()
        _, _, server = guarded(target, tmp_path / "workspace", limit=limit, window=window, clock=clock)
        async with client(target, server, mode, word()) as session:
            await burst(session, limit)
            clock.advance(window * 0.9)  # still inside the window
            await refused_next(session, window, f"[{era}] request {limit + 1} within {window:.2f} s")
            clock.advance(window * 0.1 + 0.15)
            await burst(session, limit)

    await side_by_side(era_check)
