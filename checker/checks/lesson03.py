"""Lesson 3 checks: progress a client can trust, and a bar that draws it.

Every run builds a workspace with a random number of randomly named documents, so the only way
to pass is to count the real work. Expected values (how many documents, their names, how many
words, how many cells of the bar are full) are computed from what the check wrote. Logging and a
clean stdout are checked in `lesson03_logging.py`; the drivers and spies both use are in
`support/lesson03.py`.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import pytest

from checker.checks.kit.text import word
from checker.checks.support.lesson03 import (
    LOOP_PATIENCE,
    LoopProbe,
    Recorder,
    Workspace,
    assert_climbs_to_total,
    assert_counts_the_work,
    assert_in_order,
    bad_line,
    bar_cases,
    bar_follows_steps,
    check_summary,
    disk_through,
    draw_bar,
    index_with_progress,
    stale_updates,
    stdio_params,
    summary_of,
    tail,
)
from checker.checks.support.lesson03 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("progress only grows and ends at the total", points=3,
       hint="Each report carries the absolute amount done so far (1, 2, 3 ... of N), not how much was added "
            "since the last report; the final report equals the total. Look at Context.report_progress.")
async def test_progress_climbs_to_total(target: Target, workspace: Workspace) -> None:
    recorder, _ = await index_with_progress(target, workspace)
    assert_climbs_to_total(recorder.updates, "in memory")


@check("the total is the real number of documents, one report per document", points=2,
       hint="Find the documents before indexing the first one: how many there are is the total. Then report "
            "once per document, so a workspace of 7 documents gives 7 reports ending at 7 of 7, and one with "
            "none gives no report claiming work and a summary of zeros.")
async def test_progress_total_counts_the_work(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    recorder, _ = await index_with_progress(target, workspace)
    assert recorder.updates, "no progress arrived although the client passed a progress callback"
    assert_counts_the_work(recorder.updates, len(workspace.names), "in memory")
    empty = Workspace(tmp_path / "empty", {})
    (empty.root / ".cache").mkdir(parents=True)
    (empty.root / ".cache" / "old.md").write_text("# hidden\nnot a document")
    (empty.root / "scan.png").write_text("not text")
    try:
        recorder, summary = await index_with_progress(target, empty)
    except AssertionError as exc:
        pytest.fail(f"a workspace without documents (only a hidden file and an image): {exc}; an empty workspace "
                    "is a valid one (watch for a division by the total)")
    check_summary(summary, empty, "a workspace without documents")
    claimed = [u for u in recorder.updates if u.progress > 0 or u.total not in (0, None)]
    assert not claimed, (f"indexing no documents reported {claimed[0].progress:g} of {claimed[0].total!r}; with "
                         "nothing to do, no report may claim work done or a total other than 0")


@check("every progress report has a message naming its document", points=2,
       hint="report_progress takes a message too: a short line a person can read, such as which document "
            "was just indexed. Clients show it next to the bar.")
async def test_progress_messages_name_documents(target: Target, workspace: Workspace) -> None:
    recorder, _ = await index_with_progress(target, workspace)
    assert recorder.updates, "no progress arrived although the client passed a progress callback"
    empty = [u for u in recorder.updates if not (u.message or "").strip()]
    assert not empty, (f"{len(empty)} of {len(recorder.updates)} progress reports had no message; "
                       "give each one a line a person can read")
    messages = [u.message or "" for u in recorder.updates]
    for name in workspace.names:
        assert any(name in m or PurePosixPath(name).name in m for m in messages), (
            f"no progress message names the document {name!r} (messages: {messages[:3]}...); say which "
            "document each report is about")


LIVE_PATIENCE = 5.0
"""Seconds a load may wait, when graded, for a progress report already on its way to the client."""


@check("progress is reported while the work happens, not all at the end", points=2,
       hint="Report right after each document is done. Collecting every document first and then sending all "
            "the reports in a burst leaves a watching client with a frozen bar for the whole job.")
async def test_progress_is_live(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    n = len(workspace.names)
    original = target.attr("documents", "load_document")
    recorder = Recorder()
    received_at_load: list[int] = []  # per load_document call, in order: reports the client had by then
    # In memory the client gets each report before report_progress returns. Graded, the client is
    # across a socket, and each load holds the server's loop while the check looks: the report sent
    # just before it may still wait in the server's write queue, but the one before that is on the
    # wire (the SDK's writer takes a report only once the previous one is written). So a load may be
    # one report ahead of the client, and waits for whatever is already on its way.
    lag, patience = (1, LIVE_PATIENCE) if target.isolated else (0, 0.0)

    def load_document(root: Any, path: Any) -> Any:
        nonlocal patience
        owed = len(received_at_load) - lag
        deadline = time.monotonic() + patience
        while len(recorder.updates) < owed and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(recorder.updates) < owed:
            patience = 0.0  # it is not coming: no need to wait at every later load too
        received_at_load.append(len(recorder.updates))
        return original(root, path)

    with disk_through(target, load_document=load_document):
        async with target.client(progress.create_server(workspace.root)) as client:
            result = await client.call_tool("index_documents", {}, progress_callback=recorder)
    summary_of(result, "with a progress callback", target)
    loads = len(received_at_load)
    assert loads == n, (f"index_documents loaded {loads} documents with load_document() for a workspace of {n}; "
                        "load each document once with the given helper")
    assert recorder.updates, "no progress arrived although the client asked for it"
    for done, received in enumerate(received_at_load):
        if received < done - lag:
            pytest.fail(f"index_documents started loading document {done + 1} of {n} when the client had received "
                        f"{received} progress report(s) for the {done} documents already done: report after each "
                        "document, as you go, not in a burst at the end")


PACE = 0.1
"""Seconds of `pace` the check asks for: each gap between two documents' loads must be at least this."""


@check("pace seconds pass between one document and the next", points=1,
       hint="index_folder(..., pace=...) is the demo knob that lets a person watch the bar move: after each "
            "document, wait pace seconds (anyio.sleep) when pace is above 0. A parameter you accept must change "
            "what the code does.")
async def test_pace_spaces_the_documents(target: Target, workspace: Workspace) -> None:
    workspace = workspace.keep(3)  # two gaps say "after each document"; more would only add waiting
    progress = target.module("progress")
    original = target.attr("documents", "load_document")
    loaded_at: list[float] = []

    def load_document(root: Any, path: Any) -> Any:
        loaded_at.append(time.monotonic())
        return original(root, path)

    with disk_through(target, load_document=load_document):
        async with target.client(progress.create_server(workspace.root, pace=PACE)) as client:
            result = await client.call_tool("index_documents", {})
    check_summary(summary_of(result, "with pace", target), workspace, f"with pace={PACE}")
    gaps = [after - before for before, after in zip(loaded_at, loaded_at[1:], strict=False)]
    assert len(loaded_at) == len(workspace.names), (
        f"index_documents loaded {len(loaded_at)} documents with load_document() for a workspace of "
        f"{len(workspace.names)}; load each document once with the given helper")
    assert min(gaps) >= PACE, (
        f"with pace={PACE}, the documents were loaded {', '.join(f'{g:.2f}' for g in gaps)} s apart; wait pace "
        "seconds after each document")


@check("indexing touches the disk on a worker thread, never on the event loop", points=2,
       hint="scan_documents and load_document block while the disk works; called straight from an async "
            "function they stall the event loop, and with it every other request. Run each with "
            "await anyio.to_thread.run_sync(fn, *args).")
async def test_index_off_the_event_loop(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    helpers = {name: target.attr("documents", name) for name in ("scan_documents", "load_document")}
    probe = LoopProbe()
    blocked: dict[str, bool] = {}

    def watched(name: str) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            if name not in blocked and not any(blocked.values()):  # the first call of each, until one blocks
                blocked[name] = not probe.answered()
            return helpers[name](*args)
        return spy

    with disk_through(target, **{name: watched(name) for name in helpers}):
        async with (
            target.client(progress.create_server(workspace.root)) as client,
            anyio.create_task_group() as tasks,
        ):
            tasks.start_soon(probe.serve, client)
            result = await client.call_tool("index_documents", {})
            tasks.cancel_scope.cancel()
    check_summary(summary_of(result, "while watched", target), workspace, "while the check watched the disk helpers")
    stalled = [name for name, was in blocked.items() if was]
    assert not stalled, (
        f"while {stalled[0]}() ran, the server could not answer another request for {LOOP_PATIENCE:g} s: it was "
        "called on the event loop. Run it on a worker thread: await anyio.to_thread.run_sync(...)")
    assert set(blocked) == set(helpers), (
        f"index_documents never called {sorted(set(helpers) - set(blocked))} from research_desk.documents: find the "
        "documents with scan_documents() and read each with load_document()")


@check("no progress token, no progress notifications; the result is the same", points=3,
       hint="A client that passes no progress callback sends no progress token, and the server must then send "
            "no progress. Never invent a token of your own: report through ctx.report_progress, which knows "
            "whether the caller asked.")
async def test_no_progress_without_token(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    from mcp.types import ProgressNotification

    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ProgressNotification):
            seen.append(message.params)

    # The legacy era hands every notification to message_handler, so a made-up token is visible.
    server = progress.create_server(workspace.root)
    async with target.client(server, mode="legacy", message_handler=on_message) as client:
        legacy = await client.call_tool("index_documents", {})
    async with target.client(progress.create_server(workspace.root)) as client:
        modern = await client.call_tool("index_documents", {})
    check_summary(summary_of(legacy, "a legacy client without a progress callback", target), workspace,
                  "a legacy client without a progress callback")
    check_summary(summary_of(modern, "a client without a progress callback", target), workspace,
                  "a client without a progress callback")
    assert not seen, (
        f"the client sent no progress token, yet {len(seen)} progress notifications arrived "
        f"(token {seen[0].progress_token!r}); a server must only echo the caller's token, never invent one")


@check("over a real stdio subprocess, progress reaches the client intact", points=3,
       hint="Run `python -m research_desk.progress FOLDER` yourself: main() configures logging and serves the "
            "indexer over stdio. The same progress must arrive as in memory, and the client must not meet a "
            "single line it cannot parse.")
async def test_progress_over_stdio(target: Target, workspace: Workspace) -> None:
    from mcp import Client
    from mcp.client.stdio import stdio_client

    recorder = Recorder()
    problems: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            problems.append(message)

    with tempfile.TemporaryFile("w+") as errlog:
        try:
            with anyio.fail_after(15):
                async with Client(stdio_client(stdio_params(target, workspace), errlog=errlog),
                                  message_handler=on_message) as client:
                    result = await client.call_tool("index_documents", {}, progress_callback=recorder)
                    await anyio.sleep(0.05)  # callbacks run as their own tasks on a real transport
        except Exception:  # noqa: BLE001 - any failure to talk to the subprocess is the finding
            pytest.fail(f"could not call index_documents over stdio; the server's stderr ends with: {tail(errlog)}")
    assert not problems, (f"the client met a line on the server's stdout it could not parse: {bad_line(problems[0])}; "
                          "stdout is the protocol stream on stdio: nothing else may be written there")
    check_summary(summary_of(result, "over stdio"), workspace, "over stdio")
    assert_climbs_to_total(recorder.updates, "over stdio")
    assert_counts_the_work(recorder.updates, len(workspace.names), "over stdio")


@check("over HTTP progress streams as SSE; json_response=True drops it, the call still succeeds", points=2,
       hint="Progress rides on the response stream of the same POST. With json_response=True the reply is one "
            "JSON body, so there is nowhere to put notifications: the tool must still finish and return the "
            "same summary.")
async def test_http_sse_and_json_response(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    found: dict[bool, tuple[Recorder, Any]] = {}

    async def index_over_http(json_response: bool) -> None:
        app = progress.create_server(workspace.root).streamable_http_app(json_response=json_response)
        recorder = Recorder()
        async with (
            target.http(app) as url,
            target.client(url) as client,
        ):
            result = await client.call_tool("index_documents", {}, progress_callback=recorder)
            await anyio.sleep(0.05)
        found[json_response] = (recorder, result)

    async with anyio.create_task_group() as both:  # two servers of their own, side by side
        for json_response in (False, True):
            both.start_soon(index_over_http, json_response)
    sse, plain = found[False], found[True]
    check_summary(summary_of(sse[1], "over HTTP (SSE)", target), workspace, "over HTTP (SSE)")
    assert_climbs_to_total(sse[0].updates, "over HTTP (SSE)")
    assert_counts_the_work(sse[0].updates, len(workspace.names), "over HTTP (SSE)")
    check_summary(summary_of(plain[1], "over HTTP with json_response=True", target), workspace,
                  "over HTTP with json_response=True")
    assert not plain[0].updates, (f"{len(plain[0].updates)} progress notifications arrived over a json_response=True "
                                  "app, which answers with a single JSON body; they should have been dropped")


@check("ProgressBar draws the fraction done, the count and the message", points=2,
       hint="The done part is width x progress / total cells, rounded down and never more than width; the rest "
            "are empty cells. The line reads label, bar, progress/total, message, numbers formatted with :g "
            "(3, not 3.0; 2.5 stays 2.5). Without a total, or with a total of 0, there is no bar: only the label, "
            "the count and the message.")
async def test_progress_bar_draws_the_fraction(target: Target) -> None:
    progress_bar = target.attr("progress", "ProgressBar")
    rng = random.Random()
    for width, done, total in bar_cases(rng):
        label, message = word(rng), f"indexed {word(rng)}.md"
        taken, text = draw_bar(target, progress_bar, label, width, done, total, message)
        assert taken is True, (
            f"the first notification ({done:g} of {total:g}) should be taken (update returns True), even at 0: "
            "nothing was shown before it")
        full = math.floor(Fraction(done).limit_denominator(2) * width / Fraction(total))
        assert text.count("█") == full and text.count("░") == width - full, (
            f"{done:g} of {total:g} on a bar {width} cells wide should show {full} full and {width - full} empty "
            f"cells, but the text is {text!r}")
        assert_in_order(text, [label, "█" if full else "░", f"{done:g}/{total:g}", message])
    width, total = rng.randint(10, 40), rng.randint(3, 40)
    over = 2 * total + rng.randint(1, 20)  # far enough past the total that an unclamped bar overflows at any width
    _, text = draw_bar(target, progress_bar, "past", width, float(over), float(total), "overshoot")
    assert text.count("█") == width and "░" not in text and f"{over}/{total}" in text, (
        f"{over} of {total} (past the total) on a bar {width} cells wide should show all {width} cells full and "
        f"the count {over}/{total}, but the text is {text!r}: the done part is never more than the whole bar")
    for missing in (None, 0.0):
        count = rng.randint(2, 99)
        _, text = draw_bar(target, progress_bar, "scan", 20, float(count), missing, "still going")
        assert "█" not in text and "░" not in text, (
            f"with total={missing!r} the bar cannot be drawn (nothing to divide by), but the text is {text!r}")
        assert_in_order(text, ["scan", f"{count:g}", "still going"])

    steps = rng.randint(3, 12)
    seen = await bar_follows_steps(target, progress_bar, steps)
    progress, total, updates = seen["state"]
    assert (progress, total, updates) == (steps, steps, steps), (
        f"used as a progress_callback for a tool reporting 1..{steps} of {steps}, the bar ended at "
        f"progress={progress!r}, total={total!r} after {updates} updates; expected {steps}, {steps}, {steps}")
    assert seen["text"] in seen["drawn"], "the bar's final text was never drawn to its stream"


@check("ProgressBar never moves backwards on late or partial notifications", points=2,
       hint="On a real transport each callback runs as its own task, so an older notification can arrive "
            "after a newer one. Ignore anything that does not move forward, and keep the last known total "
            "and message when a notification leaves them out.")
async def test_progress_bar_ignores_stale_updates(target: Target) -> None:
    progress_bar = target.attr("progress", "ProgressBar")
    rng = random.Random()
    total = rng.randint(10, 60)
    ahead = rng.randint(3, total - 3)
    late = rng.randint(1, ahead - 1)
    seen = await stale_updates(target, progress_bar, rng.randint(10, 30), total, ahead, late)
    assert seen["late"] is False, (
        f"after showing {ahead}/{total}, a late notification for {late} should be ignored (update returns False)")
    assert seen["repeated"] is False, f"a repeated {ahead}/{total} does not move the bar: ignore it"
    progress, message = seen["after_late"]
    assert (progress, message) == (ahead, "newest"), (
        f"the bar moved back to {progress!r} ({message!r}) after a late notification; it should stay at "
        f"{ahead} ('newest')")
    assert seen["redrawn"] == seen["drawn"], "a late notification redrew the bar; only a change should draw"
    assert seen["updates"] == 1, f"only one notification moved the bar, but updates={seen['updates']}"
    assert seen["forward"] is True, "a notification that moves forward should be taken"
    total_now, message_now, progress_now, updates_now = seen["end"]
    assert total_now == total and message_now == "newest", (
        f"a notification without total or message erased them (total={total_now!r}, message={message_now!r}); "
        "keep the last known ones")
    assert progress_now == ahead + 1 and updates_now == 2, "the forward notification was not recorded"
