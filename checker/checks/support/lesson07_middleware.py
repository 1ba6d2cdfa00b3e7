"""Lesson 7, going further: the plumbing of the middleware checks (visible and hidden).

Each check puts the student's `RequestGuard` around lesson 7's desk and talks to it through real
MCP clients; these build that set-up and state the refusal the rate limit must send."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.types import Implementation

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.text import word
from checker.target import Target

RATE_LIMITED = -32010  # the code the lesson documents (middleware.RATE_LIMITED)
STARTERS = {"auto": "server/discover", "legacy": "initialize"}  # what opens a connection in each era


@pytest.fixture
def workspace(tmp_path: Path) -> dict[str, str]:
    """A workspace of a few random documents: name -> text."""
    root = tmp_path / "workspace"
    root.mkdir()
    documents = {}
    for _ in range(random.randint(3, 6)):
        name = f"{word()}.md"
        documents[name] = f"# {word().title()} {word().title()}\n\n{' '.join(word() for _ in range(12))}\n"
        (root / name).write_text(documents[name])
    return documents


class SlowSearch:
    """A healthy search service that takes `seconds` to answer (its calls run in the check's process)."""

    def __init__(self, seconds: float, hits: list[str]) -> None:
        self.seconds, self.hits = seconds, hits

    async def search(self, query: str, limit: int) -> list[str]:
        await anyio.sleep(self.seconds)
        return self.hits[:limit]


def guarded(target: Target, root: Path, limit: int | None, window: float = 30.0,
            search: SlowSearch | None = None, clock: CheckClock | None = None) -> tuple[Any, Any, Any]:
    """(desk, guard, server): the student's RequestGuard around lesson 7's desk in `root`, on
    `clock` when one is given (time then moves only when the check moves it)."""
    errors, middleware = target.module("errors"), target.module("middleware")
    desk = errors.ErrorDesk(root, step_seconds=0)
    if search is not None:
        desk.backend = target.expose(search, methods=["search"])
    timing = {} if clock is None else {"clock": target.expose(clock, name="clock")}
    guard = middleware.RequestGuard(limit=limit, window=window, **timing)
    return desk, guard, middleware.create_server(desk, guard)


def client(target: Target, server: Any, mode: str, name: str) -> Any:
    """A client of `server` in `mode` that declares itself as `name`."""
    return target.client(server, mode=mode, client_info=Implementation(name=name, version="1.0"))


def trail(guard: Any) -> list[dict[str, Any]]:
    """The guard's records as plain dicts, oldest first."""
    return [dict(entry) for entry in guard.trail()]


def calls(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(tool, outcome, code) of every tools/call record, in order."""
    return [(r["tool"], r["outcome"], r["code"]) for r in records if r["method"] == "tools/call"]


def refused(exc: MCPError, window: float, what: str) -> None:
    """`exc` must be the rate limit's refusal, saying (in `data`) when to retry."""
    assert exc.error.code == RATE_LIMITED, (
        f"{what} should be refused with code {RATE_LIMITED} (RATE_LIMITED), got {exc.error.code}: {exc.error.message}")
    data = exc.error.data if isinstance(exc.error.data, dict) else {}
    retry = data.get("retryAfter")
    assert isinstance(retry, (int, float)) and 0 < retry <= window + 0.05, (
        f"{what}: the error's data should say retryAfter, in seconds, more than 0 and at most the window "
        f"({window:g} s), so the client knows when to retry; got data={exc.error.data!r}")


async def burst(session: Any, count: int) -> None:
    """`count` requests that must all be served (tools/list: one request each, no tool runs)."""
    for sent in range(1, count + 1):
        try:
            await session.list_tools()
        except MCPError as exc:
            pytest.fail(f"request {sent} of {count} was refused ({exc.error.code}: {exc.error.message}), but the "
                        f"limit allows {count}: count only the client's requests, not what opens the connection, "
                        "not notifications, and allow exactly `limit` within the window")


async def refused_next(session: Any, window: float, what: str) -> None:
    """The next request of `session` must be refused by the rate limit."""
    try:
        await session.list_tools()
    except MCPError as exc:
        refused(exc, window, what)
    else:
        pytest.fail(f"{what} was served: a client that has used its `limit` within the window must be refused")
