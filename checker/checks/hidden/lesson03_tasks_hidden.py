"""Lesson 3, going further, instructor-only: the tasks requirements with inputs students never saw.

Left out of the student release and run by `course grade`. Each re-tests what a visible check of
`lesson03_tasks.py` enforces, with other data: index_documents as the task (its inlined result is
the one a synchronous call returns), several tasks at once, cancel after the work's time, and an
expired task refused by tasks/cancel too. A submission that meets the visible requirements passes.
"""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest
from mcp_types import CallToolResult

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.tasks_client import create_task, tasks_request, wait_settled
from checker.checks.support.lesson03_tasks import (
    INVALID_PARAMS,
    refused,
    report_name,
    report_written,
    started,
    task_server,
    tasks_client,
    workspace,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

__all__ = ["workspace"]  # the fixture, shared with the visible checks


@check("hidden: several tasks at once, each settling with its own tool's result", points=2,
       hint="Each task keeps its own work and result; a completed task inlines what a synchronous call returns.")
async def test_tasks_settle_with_their_own_results(target: Target, workspace: Path) -> None:
    server = task_server(target, workspace)
    async with tasks_client(target, server, asks=False) as plain:
        expected = await create_task(plain, "index_documents", {})
    assert isinstance(expected, CallToolResult)
    names = [report_name() for _ in range(random.randint(2, 4))]
    async with tasks_client(target, server) as client:
        ids = {name: await started(client, "write_report", {"name": name, "seconds": random.uniform(0.1, 0.3)},
                                   "write_report") for name in names}
        index_id = await started(client, "index_documents", {}, "index_documents")
        assert len({*ids.values(), index_id}) == len(names) + 1, "every task needs its own id"
        indexed = await wait_settled(client.session, index_id)
        assert indexed.get("status") == "completed", indexed
        assert (indexed.get("result") or {}).get("structuredContent") == expected.structured_content, (
            f"index_documents as a task must inline the result a synchronous call returns; got {indexed}")
        for name, task_id in ids.items():
            done = await wait_settled(client.session, task_id)
            assert done.get("status") == "completed" and name in str(done.get("result")), (name, done)


@check("hidden: a cancelled task stays cancelled; an expired one is refused by tasks/cancel too", points=2,
       hint="Cancelling stops the work for good; expiry forgets a task for every tasks method.")
async def test_cancelled_stays_and_expired_is_gone(target: Target, workspace: Path) -> None:
    ttl_ms, clock = random.randint(600, 1000), CheckClock()
    server = task_server(target, workspace, ttl_ms=ttl_ms, clock=clock)
    async with tasks_client(target, server) as client:
        name = report_name()
        task_id = await started(client, "write_report", {"name": name, "seconds": 0.3}, "write_report")
        await tasks_request(client.session, "tasks/cancel", taskId=task_id)
        await tasks_request(client.session, "tasks/cancel", taskId=task_id)
        await anyio.sleep(0.45)  # past the moment an uncancelled job would have written
        after = await tasks_request(client.session, "tasks/get", taskId=task_id)
        assert after.get("status") == "cancelled", f"a cancelled task must stay cancelled, got {after}"
        assert not report_written(target, workspace, name), "the cancelled job still wrote its report"
        clock.advance(ttl_ms / 1000 + 0.25)
        await refused(client.session, "tasks/cancel", INVALID_PARAMS, "an expired task", taskId=task_id)
