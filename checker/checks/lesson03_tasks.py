"""Lesson 3, going further: long jobs handed back as tasks (the io.modelcontextprotocol/tasks extension).

Each check installs the student's `TasksExtension` and `TaskStore` on lesson 3's task server and
drives it through real MCP clients (see `support/lesson03_tasks.py`). What the checks compare
with is computed here: the report a job writes (its name and how long it works are drawn from the
seeded generator), what the same call answers without a task, and the store's drawn ttl.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp_types import CallToolResult

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.tasks_client import create_task, tasks_request, wait_settled
from checker.checks.kit.text import text_of
from checker.checks.support.lesson03_tasks import (
    INVALID_PARAMS,
    TASK_TOOLS,
    refused,
    report_name,
    report_written,
    started,
    task_server,
    tasks_client,
)
from checker.checks.support.lesson03_tasks import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


async def answer_time(client: Any, times: int) -> float:
    """`times` the seconds one request takes on this machine just now (a tools/list)."""
    began = time.monotonic()
    await client.list_tools()
    return times * (time.monotonic() - began)


@check("a client that asks for tasks gets one for a long tool; any other call is answered as before", points=2,
       hint="In intercept_tool_call, make a task only when the tool is one of task_tools AND "
            "client_asked_for_tasks(ctx, params) says the client declared the extension (a 2025 client never "
            "can); everything else goes straight to `await call_next(ctx)`.")
async def test_task_only_when_asked(target: Target, workspace: Path) -> None:
    server = task_server(target, workspace)
    name = report_name()
    for asks, mode in ((False, "auto"), (True, "legacy"), (False, "legacy")):
        async with tasks_client(target, server, asks=asks, mode=mode) as client:
            answer = await create_task(client, "write_report", {"name": name, "seconds": 0})
            assert isinstance(answer, CallToolResult), (
                f"a {'2025' if mode == 'legacy' else '2026-07-28'} client that "
                f"{'declared' if asks else 'did not declare'} the tasks extension got a task: it must get the "
                "finished result, as if there were no tasks")
            assert not answer.is_error and name in text_of(answer), f"the synchronous answer is wrong: {answer}"
    async with tasks_client(target, server) as client:
        answer = await create_task(client, "list_tools_is_not_a_tool", {})
        assert isinstance(answer, CallToolResult) and answer.is_error, (
            "a call of a tool that is not in task_tools (here one that does not exist) must be answered as usual")
        tool = random.choice(TASK_TOOLS)
        await started(client, tool, {"name": report_name(), "seconds": 0} if tool == "write_report" else {}, tool)


@check("tasks/get follows the work: working until it ends, then completed with the tool's result", points=3,
       hint="Start the work with asyncio.create_task and answer the task at once; when call_next returns, settle "
            "the task as completed with the result dumped by alias (a tool error is completed too, with isError "
            "in its result). Until then tasks/get must say working and carry no result.")
async def test_get_follows_the_work(target: Target, workspace: Path) -> None:
    server = task_server(target, workspace)
    name, seconds = report_name(), random.uniform(0.15, 0.25)
    async with tasks_client(target, server) as client:
        seconds += await answer_time(client, 6)  # the job outlasts the next two requests, however slow they are
        task_id = await started(client, "write_report", {"name": name, "seconds": seconds}, "write_report")
        early = await tasks_request(client.session, "tasks/get", taskId=task_id)
        assert early.get("taskId") == task_id and early.get("status") == "working", (
            f"right after it started, a job of {seconds:.2f} s must be working; tasks/get said {early}")
        assert "result" not in early, f"tasks/get showed a result before the work ended: {early}"
        assert not report_written(target, workspace, name), "the report exists before the work could end"
        done = await wait_settled(client.session, task_id, timeout=seconds + 5)
        assert done.get("status") == "completed", f"the job ran to its end, so the task is completed; got {done}"
        result = CallToolResult.model_validate(done.get("result") or {})
        assert not result.is_error and f"reports/{name}.md" in text_of(result), (
            f"a completed task inlines the tool's own result (what a synchronous call returns); got {done}")
        assert report_written(target, workspace, name), "the task completed, but the report was not written"
        failing = await started(client, "write_report", {"name": f"{name}/..", "seconds": 0}, "write_report")
        settled = await wait_settled(client.session, failing)
        assert settled.get("status") == "completed" and (settled.get("result") or {}).get("isError") is True, (
            "a tool that reports an error (ToolError) still ran: its task is completed with isError in the result; "
            f"'failed' is for protocol errors. Got {settled}")


@check("tasks/cancel stops the work; a finished task stays as it finished", points=3,
       hint="cancel: refuse an unknown id as get does; for a task that is not terminal, settle it as cancelled and "
            "cancel its asyncio work (so the job stops). settle must leave a terminal task untouched.")
async def test_cancel_stops_the_work(target: Target, workspace: Path) -> None:
    server = task_server(target, workspace)
    name, seconds = report_name(), random.uniform(0.15, 0.25)
    async with tasks_client(target, server) as client:
        seconds += await answer_time(client, 6)  # the job outlasts the next two requests, however slow they are
        began = time.monotonic()
        task_id = await started(client, "write_report", {"name": name, "seconds": seconds}, "write_report")
        ack = await tasks_request(client.session, "tasks/cancel", taskId=task_id)  # while the job sleeps
        assert not {"taskId", "status", "result"} & set(ack), f"tasks/cancel answers an empty result, got {ack}"
        # Past the moment an uncancelled job would have written, with a margin that grows with how
        # slow this machine answers just now (two requests took `answered` seconds).
        answered = time.monotonic() - began
        await anyio.sleep(began + seconds + 0.1 + 2 * answered - time.monotonic())
        after = await tasks_request(client.session, "tasks/get", taskId=task_id)
        assert after.get("status") == "cancelled" and "result" not in after, (
            f"a task cancelled while working is cancelled, with no result; got {after}")
        assert not report_written(target, workspace, name), (
            "the task was cancelled, yet its job went on and wrote the report: cancel the work, not just the status")
        finished = await started(client, "write_report", {"name": report_name(), "seconds": 0}, "write_report")
        done = await wait_settled(client.session, finished)
        await tasks_request(client.session, "tasks/cancel", taskId=finished)
        again = await tasks_request(client.session, "tasks/get", taskId=finished)
        assert again.get("status") == done.get("status") == "completed" and again.get("result") == done.get("result"), (
            f"cancelling a task that already completed must change nothing; it was {done}, then {again}")


@check("a job that ends in a protocol error is a failed task carrying that error", points=2,
       hint="In _run, catch the MCPError that `await call_next(ctx)` raises and settle the task as failed with "
            "error {'code': error.code, 'message': error.message} (a crash: INTERNAL_ERROR, its text kept out). "
            "'completed' is for results, tool errors included.")
async def test_protocol_error_fails_the_task(target: Target, workspace: Path) -> None:
    server = task_server(target, workspace)
    arguments = {"name": report_name(), "seconds": -round(random.uniform(0.5, 9), 2)}  # write_report: MCPError
    async with tasks_client(target, server, asks=False) as plain:
        with pytest.raises(MCPError) as raised:   # what the same call is answered without a task
            await plain.call_tool("write_report", arguments)
    async with tasks_client(target, server) as client:
        task_id = await started(client, "write_report", arguments, "write_report")
        try:
            settled = await wait_settled(client.session, task_id, timeout=3)
        except TimeoutError:
            pytest.fail("the tool raised MCPError (seconds < 0), yet 3 s later its task was still not settled: "
                        "catch the error in _run and settle the task as failed")
    assert settled.get("status") == "failed" and "result" not in settled, (
        f"a tool that raised MCPError (a protocol error) ended its task as {settled.get('status')!r}: it must be "
        f"failed, with the error and no result; got {settled}")
    expected = {"code": raised.value.code, "message": raised.value.message}
    got = settled.get("error") or {}
    assert {key: got.get(key) for key in expected} == expected, (
        f"a failed task carries the protocol error the tool raised, {expected}, got error={got!r}")


@check("unknown and expired task ids are refused with -32602", points=2,
       hint="get (and so cancel) raises MCPError(INVALID_PARAMS) for an id the store does not hold. _expire forgets "
            "a task once ttl_ms has passed since it was created (on the store's clock): call it before looking up.")
async def test_unknown_and_expired_ids(target: Target, workspace: Path) -> None:
    ttl_ms, clock = random.randint(700, 1000), CheckClock()
    server = task_server(target, workspace, ttl_ms=ttl_ms, clock=clock)
    async with tasks_client(target, server) as client:
        task_id = await started(client, "write_report", {"name": report_name(), "seconds": 0}, "write_report")
        stranger = task_id[::-1] + report_name()
        for method in ("tasks/get", "tasks/cancel"):
            await refused(client.session, method, INVALID_PARAMS, "an id no task has", taskId=stranger)
        kept = await tasks_request(client.session, "tasks/get", taskId=task_id)
        assert kept.get("taskId") == task_id, f"a task must stay pollable for its ttl ({ttl_ms} ms); got {kept}"
        assert kept.get("ttlMs") == ttl_ms, f"the task says ttlMs={kept.get('ttlMs')}, the store's ttl is {ttl_ms}"
        clock.advance(ttl_ms / 1000 - 0.1)
        late = await tasks_request(client.session, "tasks/get", taskId=task_id)
        assert late.get("taskId") == task_id, (
            f"100 ms before its ttl of {ttl_ms} ms ran out (on the store's clock) the task was already gone: {late}")
        clock.advance(0.35)
        await refused(client.session, "tasks/get", INVALID_PARAMS, "a task 250 ms after its ttl ran out",
                      advice=" (the check moved the store's clock past the ttl: judge expiry by self._clock, the "
                             "clock the store was given, not by another one)", taskId=task_id)
