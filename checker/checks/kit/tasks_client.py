"""The client side of the tasks extension (io.modelcontextprotocol/tasks), for checks and tests.

mcp 2.3's `Client` has no tasks support of its own, but its extension interface lets a client
declare the extension and claim the `resultType: "task"` answer of a `tools/call`: `ask_tasks()`
returns that extension, whose resolver polls `tasks/get` until the task settles, so
`client.call_tool(...)` still returns the ordinary `CallToolResult`. `create_task` keeps the task
answer instead (`session.call_tool(..., allow_claimed=True)`), and `tasks_request` sends any
tasks/* request through the session's generic `send_request`, as raw JSON-RPC on the wire."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from mcp import MCPError
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict, Field

TASKS = "io.modelcontextprotocol/tasks"
TERMINAL = ("completed", "failed", "cancelled")


class CreatedTask(Result):
    """A `tools/call` answered with a task: `{"resultType": "task", "taskId": ..., "status": ...}`."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = Field(alias="resultType")
    task_id: str = Field(alias="taskId")
    status: str


class _AnyParams(RequestParams):
    model_config = ConfigDict(extra="allow")


class _TasksRequest(Request[_AnyParams, str]):
    method: str
    params: _AnyParams


class _AnyResult(Result):
    model_config = ConfigDict(extra="allow")


async def tasks_request(session: Any, method: str, **params: Any) -> dict[str, Any]:
    """Send `method` (tasks/get, tasks/cancel, ...) with `params`; the result as the wire shows it,
    without its `_meta` (the SDK stamps serverInfo there on every 2026-07-28 result)."""
    answer = await session.send_request(_TasksRequest(method=method, params=_AnyParams(**params)), _AnyResult)
    shown = answer.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {key: value for key, value in shown.items() if key != "_meta"}


async def create_task(client: Any, tool: str, arguments: dict[str, Any]) -> CreatedTask | CallToolResult:
    """Call `tool` and return what the server answered: a task, or (no task made) the result itself."""
    answer = await client.session.call_tool(tool, arguments, allow_claimed=True)
    if not isinstance(answer, CreatedTask | CallToolResult):
        raise AssertionError(f"tools/call answered {type(answer).__name__}, neither a task nor a result")
    return answer


async def wait_settled(session: Any, task_id: str, *, timeout: float = 10.0, every: float = 0.02) -> dict[str, Any]:
    """Poll tasks/get until the task's status is terminal; that last answer."""
    with anyio.fail_after(timeout):
        while True:
            task = await tasks_request(session, "tasks/get", taskId=task_id)
            if task.get("status") in TERMINAL:
                return task
            await anyio.sleep(every)


async def _resolve(created: CreatedTask, ctx: ClaimContext) -> CallToolResult:
    task = await wait_settled(ctx.session, created.task_id, timeout=ctx.read_timeout_seconds or 30.0)
    if task["status"] == "completed":
        return CallToolResult.model_validate(task.get("result") or {})
    error = task.get("error") or {}
    raise MCPError(code=int(error.get("code", -32603)), message=f"task {task['status']}: {error.get('message', '')}")


class _TasksExtension(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=_resolve)]


def ask_tasks() -> ClientExtension:
    """The extension a client passes (`Client(..., extensions=[ask_tasks()])`) to ask for tasks."""
    return _TasksExtension()
