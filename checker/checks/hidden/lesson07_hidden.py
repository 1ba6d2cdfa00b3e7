"""Lesson 7, instructor-only checks: the visible checks' requirements, with inputs students never saw.

Left out of the student release and run by `course grade`. Each re-tests a requirement a visible
check already enforces (no backend and an over-answering service; a reused key; a failed export)
with other data, so a submission that hard-codes the visible cases loses these points, and one
that meets the requirements passes them.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
from mcp import MCPError
from mcp.types import INVALID_PARAMS

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson07 import (
    Healthy,
    Workspace,
    assert_failed_and_cleaned,
    build_workspace,
    export_meanwhile,
    idempotency_key,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """Fewer and shorter documents than the visible checks' workspace."""
    return build_workspace(tmp_path / "workspace", random.Random(), documents=(5, 8), words=(5, 30))


def _into_folder(path: Path) -> None:
    """A document turns into a folder of the same name."""
    path.unlink()
    path.mkdir()


# -- the checks ----------------------------------------------------------------------------------


@check(
    "with no search service configured, search degrades; a service's extra hits are cut to the limit",
    points=1,
    hint="A desk without a backend is an outage too: answer from the local titles, labelled degraded with a "
    "notice. And `limit` is your promise to the model: never pass on more hits than it asked for.",
)
async def test_search_without_service_and_over_answering_service(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors = target.module("errors")
    desk = errors.ErrorDesk(workspace.root)  # no backend at all
    server = errors.create_server(desk)
    for mode in MODES:
        title = workspace.titles[rng.choice(workspace.names)]
        start = rng.randint(0, max(0, len(title) - 3))
        query = title[start : start + 3].swapcase()
        limit = rng.randint(1, 5)
        expected = workspace.title_matches(query, limit)
        async with target.client(server, mode=mode) as client:
            result = await client.call_tool("search_documents", {"query": query, "limit": limit})
        answer = result.structured_content or {}
        assert not result.is_error, (
            f"[{mode}] with no search service configured (backend=None), search_documents failed: "
            f"{text_of(result)[:200]!r}; a missing service is an outage, so answer from the local titles"
        )
        assert answer.get("degraded") is True and answer.get("source") == "local-titles" and answer.get("notice"), (
            f"[{mode}] with no search service configured, the answer should be degraded=True, "
            f"source='local-titles', with a notice; got {answer!r}"
        )
        assert answer.get("hits") == expected, (
            f"[{mode}] with no search service, the fallback for {query!r} (limit {limit}) should be the title "
            f"matches {expected}, got {answer.get('hits')}"
        )

    hits = rng.sample(workspace.names, k=len(workspace.names))
    limit = rng.randint(1, len(hits) - 1)
    desk.backend = target.expose(Healthy(list(hits)), methods=["search"])
    async with target.client(server) as client:
        result = await client.call_tool("search_documents", {"query": word(rng), "limit": limit})
    answer = result.structured_content or {}
    assert not result.is_error, f"search_documents failed with a healthy service: {text_of(result)[:200]!r}"
    assert answer.get("source") == "search-service" and not answer.get("degraded"), (
        f"a healthy service's answer is not degraded; got {answer!r}"
    )
    assert answer.get("hits") == hits[:limit], (
        f"the search service sent {len(hits)} hits although the model asked for at most {limit}; the answer should "
        f"be its first {limit} ({hits[:limit]}), got {answer.get('hits')}: do not trust a dependency to honour "
        f"the limit"
    )


@check(
    "a reused idempotency key is a conflict whenever the note differs, however little",
    points=1,
    hint="A key stands for one exact note: compare everything the note is made of (title and body, kept apart "
    "and in order, exactly as sent), and let a rejected request leave the stored receipt untouched.",
)
async def test_key_conflict_on_any_difference(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors = target.module("errors")
    desk = errors.ErrorDesk(workspace.root)
    server = errors.create_server(desk)
    for mode in MODES:
        key = idempotency_key(rng)
        head, middle, tail = word(rng).title(), word(rng), word(rng)
        title, body = f"{head} {middle}", tail
        conflicts = [
            ("the title and the body swapped", {"title": body, "body": title}),
            ("the title in another case, the same body", {"title": title.swapcase(), "body": body}),
            ("the same characters with the title/body boundary moved", {"title": head, "body": f" {middle}{tail}"}),
        ]
        rng.shuffle(conflicts)
        async with target.client(server, mode=mode) as client:
            first = await client.call_tool("save_note", {"title": title, "body": body, "idempotency_key": key})
            assert not first.is_error, f"[{mode}] save_note failed: {text_of(first)[:300]!r}"
            for what, note in conflicts:
                try:
                    result = await client.call_tool("save_note", {**note, "idempotency_key": key})
                except MCPError as exc:
                    assert exc.code == INVALID_PARAMS, (
                        f"[{mode}] reusing a key for {what} should fail with code {INVALID_PARAMS}, got {exc.code}"
                    )
                else:
                    pytest.fail(
                        f"[{mode}] the key of note (title={title!r}, body={body!r}) was reused for {what} "
                        f"(title={note['title']!r}, body={note['body']!r}) and the call was accepted "
                        f"(is_error={result.is_error}: {text_of(result)[:120]!r}); that is a different note, "
                        f"so it must be refused as a protocol error"
                    )
            retry = await client.call_tool("save_note", {"title": title, "body": body, "idempotency_key": key})
            assert not retry.is_error and retry.structured_content == first.structured_content, (
                f"[{mode}] after the rejected conflicts, a true retry should still get the original receipt "
                f"{first.structured_content}, got {retry.structured_content or text_of(retry)[:200]!r}"
            )
    notes = desk.notes
    assert len(notes) == len(MODES), f"only the {len(MODES)} original notes may be saved, found {len(notes)}"


@check(
    "an export whose document turns into a folder midway is marked failed and leaves no partial file",
    points=1,
    hint="Cancellation is not the only way out of the loop: a step can raise too. Mark the job failed, let the "
    "error reach the caller, and remove the partial file in the same finally block.",
)
async def test_failed_export_cleans_up(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors = target.module("errors")
    desk = errors.ErrorDesk(workspace.root, step_seconds=0.04)
    server = errors.create_server(desk)
    names = workspace.names
    for mode in MODES:
        victim = rng.choice(names)
        others = [n for n in names if n != victim]
        batch = [rng.choice(others) for _ in range(rng.randint(10, 13))] + [victim]
        before = set(desk.jobs)
        async with target.client(server, mode=mode) as client:
            # validated and under way: the last document becomes a folder before its step
            meddle = functools.partial(_into_folder, workspace.root / victim)
            started, result = await export_meanwhile(client, desk, batch, meddle)
        assert_failed_and_cleaned(target, desk, before, started, result, mode, batch,
                                  f"{victim!r} became a folder")
        # put the document back where student code runs (a link planted in its place leads nowhere else)
        target.library("os").rmdir(str(workspace.root / victim))
        target.library("pathlib").Path(str(workspace.root / victim)).write_text(workspace.texts[victim])
