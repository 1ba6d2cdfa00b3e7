"""Lesson 9, going further, instructor-only: the observability requirements with inputs students never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check of
`lesson09_observability.py` enforces, with other data: other tools (search, summaries, the file
tools, an export of a missing document), the legacy era first, and the rate limit reached with
listings instead of tool calls. A submission that meets the visible requirements passes these too.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from mcp import MCPError
from mcp.types import Implementation

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import word
from checker.checks.support.lesson09 import (
    Desk,
    desk_client,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    desk_settings,
    own_errors,
    serve,
)
from checker.checks.support.lesson09_observability import (
    Spans,
    call,
    counts_match,
    reused_key,
    samples,
    scrape,
    spans_match,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

RATE_LIMITED = -32010


def other_calls(desk: Desk) -> list[tuple[str, dict[str, Any]]]:
    """Calls of other tools, ending every way: served, refused by the tool, unknown, and a reused key."""
    plan: list[tuple[str, dict[str, Any]]] = [
        ("search_documents", {"query": word()}), ("summarise_document", {"name": random.choice(desk.names)}),
        ("list_files", {}), ("read_file", {"path": str(desk.secret_file)}),
        ("export_bundle", {"names": [f"{word()}-{random.randint(100, 999)}.md"]}),
        (f"{word()}_{word()}_{word()}", {"x": 1})]
    random.shuffle(plan)
    return plan + reused_key()


@check("hidden: other tools' calls get the desk's span under the SDK's, and are counted and timed", points=3,
       hint="One span per tool call, a child of the SDK's, with the tool and how it ended; count and time every "
            "call in a `finally`.")
async def test_other_tools_traced_and_counted(target: Target, desk: Desk) -> None:
    spans = Spans(target)
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode in reversed(list(MODES)):                    # the legacy era first this time
                era = MODES[mode]
                spans.clear()
                before = samples((await scrape(url, desk, desk.token)).text)
                async with desk_client(url, desk, mode) as client:
                    calls = [await call(client, tool, arguments) for tool, arguments in other_calls(desk)]
                spans_match(spans.finished(), calls, era)
                counts_match(before, samples((await scrape(url, desk, desk.token)).text), calls, era)


@check("hidden: the RequestGuard limits listings as well as tool calls", points=1,
       hint="Install lesson 7's RequestGuard in create_server, so every message passes it.")
async def test_guard_limits_listings(target: Target, desk: Desk) -> None:
    limit = random.randint(2, 5)
    with own_errors():
        async with serve(target, desk_settings(target, desk, rate_limit=limit)) as url:
            name = Implementation(name=f"{word()}-{word()}", version="2.0")
            async with desk_client(url, desk, client_info=name, cache=None) as client:   # every listing sent
                code = None
                for _ in range(limit + 3):
                    try:
                        await client.list_prompts()
                    except MCPError as exc:
                        code = exc.error.code
                        break
    assert code == RATE_LIMITED, (
        f"with rate_limit={limit}, {limit + 3} listings were "
        f"{'all served' if code is None else f'refused with {code}'}: lesson 7's RequestGuard should refuse them "
        f"with {RATE_LIMITED}")
