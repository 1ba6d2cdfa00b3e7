"""Lesson 3, going further: the plumbing of the tasks checks (visible and hidden).

Each check installs the student's `TasksExtension` (over their `TaskStore`, with a ttl the check
draws) on lesson 3's task server (`tasks.create_server`: index_documents and write_report) and
drives it through real MCP clients: a 2026-07-28 client that declares the tasks extension
(`kit.tasks_client.ask_tasks`), one that does not, and a 2025 one."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import MCPError

from checker.checks.kit.clock import CheckClock
from checker.checks.kit.tasks_client import CreatedTask, ask_tasks, create_task, tasks_request
from checker.checks.kit.text import word
from checker.target import Target

INVALID_PARAMS = -32602
MISSING_CAPABILITY = -32021
TASK_TOOLS = ("index_documents", "write_report")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace of a few random documents."""
    root = tmp_path / "workspace"
    root.mkdir()
    for _ in range(random.randint(2, 5)):
        (root / f"{word()}-{random.randint(10, 99)}.md").write_text(f"# {word().title()}\n\n{word()} {word()}\n")
    return root


def task_server(target: Target, root: Path, ttl_ms: int = 60_000, clock: CheckClock | None = None) -> Any:
    """Lesson 3's task server over `root`, the student's extension making TASK_TOOLS tasks (their
    store on `clock` when one is given)."""
    tasks = target.module("tasks")
    store = (tasks.TaskStore(ttl_ms=ttl_ms) if clock is None
             else tasks.TaskStore(ttl_ms=ttl_ms, clock=target.expose(clock, name="clock")))
    return tasks.create_server(str(root), tasks.TasksExtension(list(TASK_TOOLS), store))


@asynccontextmanager
async def tasks_client(target: Target, server: Any, *, asks: bool = True, mode: str = "auto") -> AsyncIterator[Any]:
    """A client of `server`; `asks`: it declares the tasks extension (and claims task answers)."""
    async with target.client(server, mode=mode, extensions=[ask_tasks()] if asks else None) as client:
        yield client


async def started(client: Any, tool: str, arguments: dict[str, Any], what: str) -> str:
    """Call `tool`, which must answer with a task in `working` at once; its id."""
    answer = await create_task(client, tool, arguments)
    if not isinstance(answer, CreatedTask):
        pytest.fail(f"{what}: a client that declared the tasks extension called {tool}, one of the task tools, and "
                    f"got the finished result instead of a task ({{'resultType': 'task', 'taskId': ...}})")
    shown = answer.model_dump(by_alias=True, exclude_none=True)
    assert answer.status == "working", f"{what}: a new task's status is 'working', got {answer.status!r}"
    for key in ("createdAt", "lastUpdatedAt", "ttlMs"):
        assert key in shown, f"{what}: the task answer lacks {key}: {shown}"
    assert "result" not in shown, f"{what}: a task is answered before its work ends: it carries no result yet"
    return answer.task_id


async def refused(session: Any, method: str, code: int, what: str, advice: str = "", **params: Any) -> None:
    """`method` must be answered with the JSON-RPC error `code` (`advice` follows the complaint if not)."""
    try:
        answer = await tasks_request(session, method, **params)
    except MCPError as exc:
        assert exc.error.code == code, (
            f"{what}: {method} should fail with {code}, got {exc.error.code}: {exc.error.message}")
    else:
        pytest.fail(f"{what}: {method} {params} should fail with {code}, but answered {answer}{advice}")


def report_name() -> str:
    return f"{word()}{random.randint(100, 999)}"


def report_written(target: Target, root: Path, name: str) -> bool:
    """Whether write_report's file for `name` exists, looked for where student code runs."""
    try:
        return bool(target.read_bytes(root / "reports" / f"{name}.md"))
    except OSError:
        return False
