"""The conformance fixture server (checker/verify_fixture.py) over an edition's own tasks module.

`course verify` counts the suite's tasks scenarios only because this server makes every task with
the judged edition's TasksExtension. Driven here in memory with the SDK client (no Node needed):
the solutions' tasks module parks a task that elicits in `input_required` until tasks/update has
answered every question (a few at a time), refuses a required task tool to a client without the
extension (-32021), and settles tool and protocol errors as the suite expects; the starter's stub
makes no task at all, so nothing the fixture serves can pass for it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError

from checker.checks.kit.tasks_client import TASKS, CreatedTask, ask_tasks, create_task, tasks_request, wait_settled
from tests.conftest import COURSE, pristine_starter


def _fixture_over(edition: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(edition))
    for name in [n for n in sys.modules if n.startswith(COURSE.package)]:
        monkeypatch.delitem(sys.modules, name)
    from checker import verify_fixture

    return verify_fixture.create_server(COURSE.package)


async def _never_asked(context: Any, params: Any) -> Any:
    """Declares elicitation; the questions go to tasks/get, never to this callback."""
    raise AssertionError(f"a task's question reached the elicitation callback: {params}")


async def _until(session: Any, task_id: str, status: str) -> dict[str, Any]:
    with anyio.fail_after(10):
        while True:
            task = await tasks_request(session, "tasks/get", taskId=task_id)
            if task["status"] == status:
                return task
            await anyio.sleep(0.02)


def test_a_task_that_asks_waits_for_every_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _fixture_over(COURSE.solutions, monkeypatch)

    async def main() -> None:
        async with Client(server, extensions=[ask_tasks()], elicitation_callback=_never_asked) as client:
            created = await create_task(client, "multi_input", {})
            assert isinstance(created, CreatedTask), created
            parked = await _until(client.session, created.task_id, "input_required")
            first, second = sorted(parked["inputRequests"])
            assert {r["method"] for r in parked["inputRequests"].values()} == {"elicitation/create"}, parked
            ack = await tasks_request(client.session, "tasks/update", taskId=created.task_id,
                                      inputResponses={"no-such-question": {"action": "accept", "content": {}}})
            assert "status" not in ack
            ack = await tasks_request(client.session, "tasks/update", taskId=created.task_id,
                                      inputResponses={first: {"action": "accept", "content": {"name": "Ada"}}})
            assert "status" not in ack and "taskId" not in ack, ack
            still = await tasks_request(client.session, "tasks/get", taskId=created.task_id)
            assert still["status"] == "input_required" and list(still["inputRequests"]) == [second], still
            await tasks_request(client.session, "tasks/update", taskId=created.task_id,
                                inputResponses={second: {"action": "accept", "content": {"name": "Bo"}}})
            done = await wait_settled(client.session, created.task_id)
            assert done["status"] == "completed" and "inputRequests" not in done, done
            assert done["result"]["content"][0]["text"] == "got Ada and Bo", done   # first < second, by resolver

    anyio.run(main)


def test_cancelling_a_task_that_waits_for_input(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _fixture_over(COURSE.solutions, monkeypatch)

    async def main() -> None:
        async with Client(server, extensions=[ask_tasks()], elicitation_callback=_never_asked) as client:
            created = await create_task(client, "confirm_delete", {"filename": "a.txt"})
            assert isinstance(created, CreatedTask), created
            await _until(client.session, created.task_id, "input_required")
            await tasks_request(client.session, "tasks/cancel", taskId=created.task_id)
            assert (await wait_settled(client.session, created.task_id))["status"] == "cancelled"
            await tasks_request(client.session, "tasks/update", taskId=created.task_id,
                                inputResponses={"any": {"action": "accept", "content": {"confirm": True}}})
            after = await tasks_request(client.session, "tasks/get", taskId=created.task_id)
            assert after["status"] == "cancelled" and "result" not in after, "an answer revived a cancelled task"

    anyio.run(main)


def test_a_required_task_tool_refuses_a_client_without_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _fixture_over(COURSE.solutions, monkeypatch)

    async def main() -> None:
        async with Client(server) as client:
            with pytest.raises(MCPError) as refused:
                await client.call_tool("failing_job", {})
            assert refused.value.code == -32021, refused.value
            assert TASKS in refused.value.error.data["requiredCapabilities"]["extensions"], refused.value.error
            assert (await client.call_tool("slow_compute", {"seconds": 0})).is_error is False
        async with Client(server, extensions=[ask_tasks()]) as client:
            created = await create_task(client, "failing_job", {})
            assert isinstance(created, CreatedTask), created
            done = await wait_settled(client.session, created.task_id)
            assert done["status"] == "completed" and done["result"]["isError"] is True, done

    anyio.run(main)


def test_the_starters_stub_makes_no_task(monkeypatch: pytest.MonkeyPatch) -> None:
    server = _fixture_over(pristine_starter(), monkeypatch)

    async def main() -> None:
        async with Client(server, extensions=[ask_tasks()]) as client:
            answer = await create_task(client, "slow_compute", {"seconds": 0, "label": "stub"})
            assert not isinstance(answer, CreatedTask), "the fixture made a task although the target's code cannot"

    anyio.run(main)
