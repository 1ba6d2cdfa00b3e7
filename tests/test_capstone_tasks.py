"""The deployable desk runs index_documents and export_bundle as tasks (lesson 3, going further).

Driven through the SDK client (with the tasks extension declared by checker.checks.kit.tasks_client)
in memory and over real HTTP (the `build_app` factory under uvicorn, the JSON-response app included):
a client that asks gets a task it can poll to the result or cancel, and a cancelled export leaves
no bundle; a client that does not ask, or speaks the 2025 wire, waits for the result as before."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from checker.checks.kit.tasks_client import CreatedTask, ask_tasks, create_task, tasks_request, wait_settled
from checker.host.serving import serve_asgi
from tests.conftest import COURSE

DOCUMENTS = {f"doc{n}.md": f"# Document {n}\n\nword{n} " * 3 for n in range(8)}


@pytest.fixture
def desk(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(COURSE.solutions))
    for name in [n for n in sys.modules if n.startswith(COURSE.package)]:
        monkeypatch.delitem(sys.modules, name)
    import research_desk.server as server

    return server


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    root.mkdir()
    for name, text in DOCUMENTS.items():
        (root / name).write_text(text)
    return root


@asynccontextmanager
async def connected(desk: Any, root: Path, way: str, **client: Any) -> AsyncIterator[Client]:
    """A client of the whole desk: in memory, or over HTTP to the app `build_app` serves."""
    settings = desk.Settings(roots=(root,), transport="http" if way == "http" else "stdio", task_ttl=30)
    if way == "memory":
        async with Client(desk.create_server(settings, http=False), **client) as session:
            yield session
        return
    async with serve_asgi(desk.create_http_app(settings)) as url, Client(streamable_http_client(url), **client) as session:
        yield session


def _slow_exports(desk: Any, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr(sys.modules["research_desk.errors"].ErrorDesk, "step_seconds", seconds)


@pytest.mark.parametrize("way", ["memory", "http"])
def test_long_tools_run_as_tasks_for_a_client_that_asks(desk: Any, workspace: Path, way: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_exports(desk, monkeypatch, 0.05)

    async def main() -> None:
        async with connected(desk, workspace, way, extensions=[ask_tasks()]) as client:
            assert "io.modelcontextprotocol/tasks" in (client.server_capabilities.extensions or {})
            for tool, args in (("export_bundle", {"names": sorted(DOCUMENTS)[:3]}), ("index_documents", {})):
                created = await create_task(client, tool, args)
                assert isinstance(created, CreatedTask), f"{tool} ({way}) answered without a task: {created}"
                task = await wait_settled(client.session, created.task_id)
                assert task["status"] == "completed", task
                result = CallToolResult.model_validate(task["result"])
                assert not result.is_error and result.structured_content, task
            bundles = list((workspace / ".exports").glob("*.md"))
            assert len(bundles) == 1, bundles
            answered = await client.call_tool("export_bundle", {"names": ["doc1.md"]})   # resolved by polling
            assert answered.structured_content and answered.structured_content["documents"] == 1
            unchanged = await create_task(client, "read_document", {"name": "doc2.md"})
            assert isinstance(unchanged, CallToolResult), "only the long tools become tasks"

    anyio.run(main)


@pytest.mark.parametrize("way", ["memory", "http"])
def test_cancelling_an_export_task_leaves_no_bundle(desk: Any, workspace: Path, way: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _slow_exports(desk, monkeypatch, 0.2)

    async def main() -> None:
        async with connected(desk, workspace, way, extensions=[ask_tasks()]) as client:
            created = await create_task(client, "export_bundle", {"names": sorted(DOCUMENTS)})
            assert isinstance(created, CreatedTask)
            await anyio.sleep(0.3)
            ack = await tasks_request(client.session, "tasks/cancel", taskId=created.task_id)
            assert not {"taskId", "status", "result", "error"} & set(ack), f"the cancel ack is empty: {ack}"
            await anyio.sleep(8 * 0.2 + 0.5)   # longer than the whole export would have taken
            task = await tasks_request(client.session, "tasks/get", taskId=created.task_id)
            assert task["status"] == "cancelled" and "result" not in task, task
            exports = workspace / ".exports"
            assert not (exports.exists() and any(exports.iterdir())), f"a cancelled export left {list(exports.iterdir())}"
            with pytest.raises(MCPError) as unknown:
                await tasks_request(client.session, "tasks/get", taskId=created.task_id + "x")
            assert unknown.value.error.code == -32602

    anyio.run(main)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_client_that_does_not_ask_waits_for_the_result(desk: Any, workspace: Path, mode: str) -> None:
    async def main() -> None:
        async with connected(desk, workspace, "memory", mode=mode) as client:
            answer = await create_task(client, "export_bundle", {"names": ["doc0.md"]})
            assert isinstance(answer, CallToolResult) and not answer.is_error, answer
        async with connected(desk, workspace, "memory", mode=mode, extensions=[ask_tasks()]) as client:
            answer = await create_task(client, "index_documents", {})
            assert isinstance(answer, CreatedTask) == (mode == "auto"), "tasks are a 2026-07-28 extension only"

    anyio.run(main)


def test_the_task_ttl_is_bounded(desk: Any, workspace: Path) -> None:
    for bad in ("0", "-5", "86401"):
        with pytest.raises(desk.SettingsError, match="RESEARCH_DESK_TASK_TTL"):
            desk.Settings.from_env({"RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_TASK_TTL": bad})
    assert desk.Settings.from_env({"RESEARCH_DESK_ROOTS": str(workspace), "RESEARCH_DESK_TASK_TTL": "86400"}).task_ttl == 86400


def test_a_full_store_refuses_new_tasks_until_old_ones_expire(desk: Any) -> None:
    tasks = sys.modules["research_desk.tasks"]
    now = [0.0]
    store = tasks.TaskStore(ttl_ms=1000, max_tasks=2, clock=lambda: now[0])
    store.create(), store.create()
    with pytest.raises(MCPError) as full:
        store.create()
    assert full.value.error.code == tasks.TASKS_FULL
    now[0] = 1.0
    assert store.create().status == "working" and len(store) == 1, "expired tasks make room"
