"""The conformance fixture server: the suite's tasks fixtures, served through the target's tasks code.

The conformance suite's tasks scenarios (SEP-2663) call tools of its own reference server by name:
`greet`, `slow_compute`, `failing_job`, `protocol_error_job`, `confirm_delete`, `multi_input` and
`test_tool_with_task`. A research desk has no business serving those, so `course verify` runs the
tasks scenarios against this server instead, the way every SDK runs the suite against an
"everything server". What makes it a fair judge of the lesson: every task here is created, polled,
parked for input, updated, cancelled and settled by the *target's* `research_desk.tasks`
(`TasksExtension` and `TaskStore`, imported from the edition on PYTHONPATH). Only the fixture
tools' bodies and the one synchronous question `test_tool_with_task` asks before its task exists
are this module's; a target whose tasks code is the starter's stub fails the scenarios.

Run by verify as `python -m uvicorn --factory checker.verify_fixture:build_app`, with
`COURSE_FIXTURE_PACKAGE` naming the package under test (default `research_desk`).
"""

from __future__ import annotations

import importlib
import os
from typing import Annotated, Any

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, Elicit, Extension, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolRequestParams, ElicitRequest, ElicitRequestFormParams, InputRequiredResult
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

PACKAGE_ENV = "COURSE_FIXTURE_PACKAGE"
TASK_TOOLS = ("slow_compute", "protocol_error_job", "confirm_delete", "multi_input")
REQUIRED_TASK_TOOLS = ("failing_job", "test_tool_with_task")
"""The suite declares these as needing a task: without the extension they are refused (-32021)."""
NAME_KEY = "user_name"
"""The key under which `test_tool_with_task` asks for a name before its task is made."""


class Confirmation(BaseModel):
    confirm: bool


class Name(BaseModel):
    name: str


async def ask_to_confirm(filename: str) -> Elicit[Confirmation]:
    return Elicit(f"Delete {filename}?", Confirmation)


async def ask_first_name() -> Elicit[Name]:
    return Elicit("First name?", Name)


async def ask_second_name() -> Elicit[Name]:
    return Elicit("Second name?", Name)


async def greet(name: str) -> str:
    """Say hello at once (never a task)."""
    return f"Hello, {name}!"


async def slow_compute(seconds: float, label: str = "") -> str:
    """Sleep `seconds`, then say so."""
    await anyio.sleep(seconds)
    return f"computed {label or 'job'} after {seconds:g} s"


async def failing_job() -> str:
    """Work a second, then report a tool error (a task that completes with isError)."""
    await anyio.sleep(1)
    raise ToolError("the job failed")


async def protocol_error_job() -> str:
    """Fail with a protocol error (a task that ends failed)."""
    raise MCPError(code=-32603, message="the job hit a protocol error")


async def confirm_delete(filename: str, answer: Annotated[Confirmation, Resolve(ask_to_confirm)]) -> str:
    """Ask once, then answer; inside a task the question parks it in input_required."""
    return f"deleted {filename}" if answer.confirm else f"kept {filename}"


async def multi_input(first: Annotated[Name, Resolve(ask_first_name)],
                      second: Annotated[Name, Resolve(ask_second_name)]) -> str:
    """Ask two questions in the same round, then answer with both."""
    return f"got {first.name} and {second.name}"


async def test_tool_with_task(ctx: Context) -> str:
    """Greet the name asked for before the task was made (see AskBeforeTheTask)."""
    answer = (ctx.input_responses or {}).get(NAME_KEY)
    content = getattr(answer, "content", None) or {}
    return f"Hello, {content.get('name', 'stranger')}!"


class AskBeforeTheTask(Extension):
    """Fixture-only: `test_tool_with_task` gathers a name synchronously (a 2026-07-28 input-required
    round on tools/call) and becomes a task only on the round that carries the answer. The round
    with the answer goes on to the target's TasksExtension, which makes and runs the task."""

    identifier = "io.github.research-desk/conformance-fixture"

    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        if params.name == "test_tool_with_task" and NAME_KEY not in (params.input_responses or {}):
            question = ElicitRequest(params=ElicitRequestFormParams(
                message="What is your name?",
                requested_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}))
            return InputRequiredResult(input_requests={NAME_KEY: question})
        return await call_next(ctx)


def create_server(package: str = "research_desk") -> MCPServer:
    """The fixture tools, with `package`'s own TasksExtension making every task."""
    tasks = importlib.import_module(f"{package}.tasks")
    extension = tasks.TasksExtension(TASK_TOOLS, tasks.TaskStore(), required=REQUIRED_TASK_TOOLS)
    server = MCPServer("conformance-fixture", version="1", log_level="WARNING",
                       extensions=[AskBeforeTheTask(), extension])
    for tool in (greet, slow_compute, failing_job, protocol_error_job, confirm_delete, multi_input,
                 test_tool_with_task):
        server.tool()(tool)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    server.custom_route("/health", methods=["GET"])(health)
    return server


def build_app() -> Any:
    """The uvicorn factory verify starts."""
    return create_server(os.environ.get(PACKAGE_ENV, "research_desk")).streamable_http_app()
