"""Lesson 7, going further, instructor-only: the middleware requirements with inputs students never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check of
`lesson07_middleware.py` enforces, with other data: the audit trail of other methods (prompts and
resources listings, a search, a crashing export), and the rate limit with three clients and tool
calls instead of listings. A submission that meets the visible requirements passes these too.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson07_middleware import (
    RATE_LIMITED,
    STARTERS,
    calls,
    client,
    guarded,
    refused,
    trail,
    workspace,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

__all__ = ["workspace"]  # the fixture, shared with the visible checks


@check("hidden: other methods and outcomes are recorded once each (both eras)", points=2,
       hint="Record every message once, after its answer, whatever its method and however it ended.")
async def test_other_messages_are_audited(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    for mode, era in MODES.items():
        _, guard, server = guarded(target, tmp_path / "workspace", limit=None)
        names = sorted(workspace)
        expected: list[tuple[Any, ...]] = []
        async with client(target, server, mode, word()) as session:
            await session.list_resources()
            await session.list_prompts()
            for tool, args in [("search_documents", {"query": word(None, 2, 3), "limit": random.randint(1, 5)}),
                               ("export_bundle", {"names": [random.choice(names), f"{word()}.txt"]}),
                               ("read_document", {"name": random.choice(names)})]:
                try:
                    result = await session.call_tool(tool, args)
                except MCPError as exc:
                    expected.append((tool, "error", exc.error.code))
                else:
                    expected.append((tool, "tool_error" if result.is_error else "ok", None))
        records = trail(guard)
        assert calls(records) == expected, (
            f"[{era}] the tools/call records should be exactly the calls made: expected {expected}, "
            f"recorded {calls(records)}")
        methods = [r["method"] for r in records]
        for method in (STARTERS[mode], "resources/list", "prompts/list"):
            assert methods.count(method) == 1, f"[{era}] {method!r} should be recorded once: got {methods}"


@check("hidden: three clients, each limited on its own tool calls", points=2,
       hint="Count per client (client_key), refuse past `limit` with RATE_LIMITED and retryAfter, before "
            "the tool runs.")
async def test_three_clients_limited_apart(target: Target, workspace: dict[str, str], tmp_path: Path) -> None:
    mode = random.choice(list(MODES))
    limit, window = random.randint(3, 7), random.uniform(20, 60)
    desk, guard, server = guarded(target, tmp_path / "workspace", limit=limit, window=window)
    names = [f"{word()}{n}" for n in range(3)]
    name = random.choice(sorted(workspace))
    async with client(target, server, mode, names[0]) as a, client(target, server, mode, names[1]) as b, \
            client(target, server, mode, names[2]) as c:
        for session in (a, b, c):
            await session.list_tools()           # the client's own listing, counted once, up front
        for index, session in enumerate((a, b, c)):
            for sent in range(limit - 1):
                try:
                    await session.call_tool("read_document", {"name": name})
                except MCPError as exc:
                    pytest.fail(f"[{MODES[mode]}] client {index + 1}'s request {sent + 2} of {limit} was refused "
                                f"({exc.error.code}): each client has its own allowance of {limit}")
            try:
                await session.call_tool("save_note", {"title": word(), "body": word(),
                                                      "idempotency_key": word(None, 12, 20)})
            except MCPError as exc:
                refused(exc, window, f"[{MODES[mode]}] client {index + 1}'s request {limit + 1}")
            else:
                pytest.fail(f"[{MODES[mode]}] client {index + 1}'s request {limit + 1} was served (limit {limit})")
    assert not desk.notes, "a refused save_note saved a note: refuse before the tool runs"
    refusals = [r for r in trail(guard) if r["code"] == RATE_LIMITED]
    assert len(refusals) == 3, f"each client's refusal should be recorded once: got {refusals}"
