"""Lesson 7 checks, recovery: a retried call acts once, a cancelled or failed export cleans up, memory stays bounded.

The desk is driven through a real in-memory MCP client; clients give up (timeouts), documents vanish
mid-export and `.exports` is planted as a link, and the checks read the desk's jobs, notes and
receipts afterwards.
"""

from __future__ import annotations

import functools
import random
import shutil
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.types import REQUEST_TIMEOUT

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.eras import MODES, side_by_side
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson07 import (
    Workspace,
    assert_failed_and_cleaned,
    export_meanwhile,
    files_in,
    idempotency_key,
    make_desk,
    not_written,
    ok,
)
from checker.checks.support.lesson07 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio



@check(
    "a retried call with the same idempotency key acts once and returns the same receipt",
    points=3,
    hint="Keep a receipt per key and hold a per-key lock while checking and writing, so retries (even "
    "concurrent ones) find the first receipt; store the note and its receipt together, after the slow write.",
)
async def test_retry_acts_once(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await make_desk(target, workspace.root, write_seconds=0.06)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        args = {"title": word(rng).title(), "body": word(rng), "idempotency_key": idempotency_key(rng)}
        receipts = [(await ok(client, "save_note", args)).structured_content for _ in range(rng.randint(2, 4))]
        assert len(desk.notes) == 1, f"{len(receipts)} calls with one idempotency key saved {len(desk.notes)} notes"
        assert all(r == receipts[0] for r in receipts), f"retries returned different receipts: {receipts}"

        burst = {"title": word(rng).title(), "body": word(rng), "idempotency_key": idempotency_key(rng)}
        results: list[Any] = []

        async def send() -> None:
            results.append((await ok(client, "save_note", burst)).structured_content)

        async with anyio.create_task_group() as tg:
            for _ in range(rng.randint(3, 5)):
                tg.start_soon(send)
        assert len(desk.notes) == 2, (
            f"{len(results)} concurrent retries with one key saved {len(desk.notes) - 1} notes: two calls both saw "
            f"no receipt and both wrote; hold a lock per key across the check and the write"
        )
        assert all(r == results[0] for r in results), "concurrent retries returned different receipts"

        late = {"title": word(rng).title(), "body": word(rng), "idempotency_key": idempotency_key(rng)}
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("save_note", late, read_timeout_seconds=0.03)
        assert timed_out.value.code == REQUEST_TIMEOUT
        await anyio.sleep(0.08)  # past the write: the abandoned call has ended, one way or the other
        retried = (await ok(client, "save_note", late)).structured_content
        assert len(desk.notes) == 3, (
            f"after a timed-out call and its retry there should be exactly one new note, found {len(desk.notes) - 2}"
        )
        assert retried and retried.get("note_id") in desk.notes
        fresh = await ok(client, "save_note", {**late, "idempotency_key": idempotency_key(rng)})
        assert len(desk.notes) == 4 and fresh.structured_content != retried, "a new key must save a new note"


ENDED = ("finished", "cancelled", "failed")  # how a Job's status ends (the given dataclass says so)


async def until_settled(desk: Any, seconds: float = 2.0) -> None:
    """Wait until the desk's one export job has ended one way or another (or `seconds` pass: the
    assertions that follow then say what is wrong)."""
    with anyio.move_on_after(seconds):
        while not (len(desk.jobs) == 1 and next(iter(desk.jobs.values())).status in ENDED):
            await anyio.sleep(0.02)


@check(
    "a cancelled call stops its work and cleans up",
    points=3,
    hint="A client timeout cancels the handler: the cancellation arrives at an await. Mark the job cancelled, "
    "re-raise, and remove the partial file in a finally block; a finished export must keep its file.",
)
async def test_cancelled_call_stops_work(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    rng = random.Random()

    async def era_check(mode: str, era: str) -> None:
        # an exports folder the operator put outside the workspace, one desk per era
        exports = tmp_path / f"exports-{mode}-{word(rng)}"
        names = [rng.choice(workspace.names) for _ in range(rng.randint(30, 40))]
        small = rng.sample(workspace.names, k=2)
        errors, desk = await make_desk(target, workspace.root, step_seconds=0.05, exports=exports)
        async with target.client(errors.create_server(desk), mode=mode) as client:
            # The client gives up once the export is well under way: sooner on a machine that answers fast.
            began = time.monotonic()
            await client.list_tools()
            patience = min(0.8, 0.15 + 4 * (time.monotonic() - began))  # the export takes 1.5 s at least
            try:
                result = await client.call_tool("export_bundle", {"names": names}, read_timeout_seconds=patience)
            except MCPError as exc:
                assert exc.code == REQUEST_TIMEOUT, (
                    f"expected the client's timeout error, got {exc.code}: {exc.message}"
                )
            else:
                pytest.fail(
                    f"[{mode}] the export of {len(names)} documents should outlast the {patience:.2f} s timeout, "
                    f"but it answered: {text_of(result)[:200]!r}{not_written(text_of(result), 'export_bundle')}"
                )
            await until_settled(desk)
            jobs = desk.jobs
            assert len(jobs) == 1, f"expected one export job in desk.jobs, found {len(jobs)}"
            job = next(iter(jobs.values()))
            done = job.done
            await anyio.sleep(max(0.15, patience))  # three steps or more: a job that went on would have done more
            assert job.done == done and done < len(names), (
                f"[{mode}] the export kept working after the client gave up ({done} -> {job.done} documents): let "
                f"the cancellation propagate instead of catching it"
            )
            assert job.status == "cancelled", (
                f"[{mode}] a cancelled export should end with status 'cancelled', got {job.status!r}"
            )
            assert job.id in desk.cleanups, f"[{mode}] the cancelled job's cleanup did not run (desk.cleanups)"
            leftovers = files_in(target, exports) + files_in(target, workspace.root / ".exports")
            assert not leftovers, f"[{mode}] the cancelled export left files behind: {leftovers}"
            done_result = (await ok(client, "export_bundle", {"names": small})).structured_content or {}
            bundle = exports / str(done_result.get("bundle"))
            assert target.library("os.path").isfile(str(bundle)), (
                f"a finished export must keep its bundle file in the desk's exports folder ({exports}, as "
                f"ErrorDesk(exports=...) was given); {bundle.name} is not there"
            )
            content = target.read_text(bundle)
            assert all(workspace.texts[n].strip() in content for n in small), (
                "the bundle should hold each document's text"
            )
            target.library("os").remove(str(bundle))

    await side_by_side(era_check)


@check(
    "an export that fails midway is marked failed and leaves no partial file",
    points=2,
    hint="Cancellation is not the only way out of the loop: a step can raise too (a document deleted while the "
    "export runs). Mark the job failed, let the error reach the caller, and remove the partial file in the "
    "same finally block that handles cancellation.",
)
async def test_failed_export_leaves_nothing(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    rng = random.Random()
    victims = dict(zip(MODES, rng.sample(workspace.names, k=len(MODES)), strict=True))  # one per era
    others = [n for n in workspace.names if n not in victims.values()]

    async def era_check(mode: str, era: str) -> None:
        victim = victims[mode]
        batch = [rng.choice(others) for _ in range(rng.randint(10, 13))] + [victim]
        errors, desk = await make_desk(target, workspace.root, step_seconds=0.02, exports=tmp_path / f"exports-{mode}")
        async with target.client(errors.create_server(desk), mode=mode) as client:
            # validated and under way: the last document vanishes before its step
            vanish = functools.partial(target.library("os").remove, str(workspace.root / victim))
            started, result = await export_meanwhile(client, desk, batch, vanish)
        assert_failed_and_cleaned(target, desk, set(), started, result, mode, batch, f"{victim!r} was deleted")
        target.library("pathlib").Path(str(workspace.root / victim)).write_text(workspace.texts[victim])

    await side_by_side(era_check)


@check(
    "an export never writes through a linked exports folder",
    points=2,
    hint="A write follows whatever is on the disk: a .exports planted as a link leads it out of the workspace. "
    "Open the bundle with start_bundle (it reaches the folder without following links and refuses one), "
    "publish it when done, and do the file work on a worker thread.",
)
async def test_export_refuses_linked_folder(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    rng = random.Random()
    names = rng.sample(workspace.names, k=2)
    outside = tmp_path / f"outside-{word(rng)}"
    outside.mkdir()
    errors, desk = await make_desk(target, workspace.root, step_seconds=0)
    async with target.client(errors.create_server(desk)) as client:
        fine = (await ok(client, "export_bundle", {"names": names})).structured_content or {}
    bundle = workspace.root / ".exports" / str(fine.get("bundle"))
    assert target.library("os.path").isfile(str(bundle)) and all(
        workspace.texts[n].strip() in target.read_text(bundle) for n in names
    ), f"export_bundle({names}) answered {fine} but its bundle is not in the workspace's .exports folder"
    shutil.rmtree(workspace.root / ".exports")
    (workspace.root / ".exports").symlink_to(outside, target_is_directory=True)
    errors, desk = await make_desk(target, workspace.root, step_seconds=0)
    async with target.client(errors.create_server(desk)) as client:
        result = await client.call_tool("export_bundle", {"names": names})
    written = sorted(p.name for p in outside.iterdir())
    assert not written, (
        f"with .exports a link to a folder outside the workspace, export_bundle wrote {written} there: "
        "a write must never follow a link"
    )
    assert result.is_error and "incident" not in text_of(result).lower(), (
        f"an export that cannot be written inside the workspace must fail with a tool error saying why, got "
        f"is_error={result.is_error}: {text_of(result)[:200]!r}"
    )
    assert not desk.jobs or all(job.status != "finished" for job in desk.jobs.values()), "a refused export finished"


@check(
    "what the desk remembers is bounded, and a full desk says so",
    points=2,
    hint="A long-running server must not grow forever. Refuse a new note once the desk holds max_notes (a "
    "ToolError that says the limit and how to make room), and keep receipts in the ReceiptBook: find() "
    "forgets a receipt older than receipt_seconds, keep() the oldest beyond max_receipts.",
)
async def test_memory_is_bounded(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    limit, kept = rng.randint(3, 6), rng.randint(2, 4)
    clock = CheckClock()
    errors, desk = await make_desk(target, workspace.root, max_notes=limit, receipt_seconds=1.0,
                                   clock=target.expose(clock, name="clock"))
    async with target.client(errors.create_server(desk)) as client:
        first_key = idempotency_key(rng)
        first = (
            await ok(client, "save_note", {"title": "first", "body": "kept", "idempotency_key": first_key})
        ).structured_content or {}
        again = (
            await ok(client, "save_note", {"title": "first", "body": "kept", "idempotency_key": first_key})
        ).structured_content or {}
        assert again == first, (
            f"a retry within receipt_seconds (1 s) should get the stored receipt {first}, got {again}"
        )
        for n in range(limit - 1):
            await ok(
                client, "save_note", {"title": f"n{n}", "body": word(rng), "idempotency_key": idempotency_key(rng)}
            )
        full = await client.call_tool(
            "save_note", {"title": "one too many", "body": "x", "idempotency_key": idempotency_key(rng)}
        )
        assert full.is_error and str(limit) in text_of(full) and "delete_note" in text_of(full), (
            f"the desk holds max_notes={limit} notes; one more should be refused with a tool error that says the "
            f"limit ({limit}) and that delete_note makes room, got is_error={full.is_error}: {text_of(full)[:200]!r}"
        )
        assert len(desk.notes) == limit, f"max_notes={limit}, yet the desk holds {len(desk.notes)} notes"
        await ok(client, "delete_note", {"note_id": first.get("note_id")})
        clock.advance(1.2)  # past receipt_seconds: the first key's receipt is forgotten
        try:
            reused = await client.call_tool(
                "save_note", {"title": "first", "body": "a new note", "idempotency_key": first_key}
            )
        except MCPError as exc:
            pytest.fail(
                f"an idempotency key reused after receipt_seconds (1 s) was refused ({exc.code}: "
                f"{exc.message}): its receipt should have been forgotten"
            )
        assert not reused.is_error and (reused.structured_content or {}).get("note_id") != first.get("note_id"), (
            f"after receipt_seconds, the same key should save a new note; got {text_of(reused)[:200]!r}"
        )
    errors, desk = await make_desk(target, workspace.root, max_receipts=kept)
    async with target.client(errors.create_server(desk)) as client:
        for _ in range(kept + 3):
            await ok(client, "save_note", {"title": "t", "body": word(rng), "idempotency_key": idempotency_key(rng)})
    assert len(desk.receipts) == kept, (
        f"max_receipts={kept}, yet {len(desk.receipts)} receipts are kept after {kept + 3} notes: forget the oldest"
    )
