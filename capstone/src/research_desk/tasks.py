"""Lesson 3, going further: long-running work handed back as a task (the tasks extension).

A streamed call with progress keeps one request open until the work ends: if the client goes
away, so does the answer. The `io.modelcontextprotocol/tasks` extension (SEP-2663), served through
the SDK's extension interface (`mcp.server.extension.Extension`, SEP-2133), lets the server answer
a `tools/call` at once with a task instead: `{"resultType": "task", "taskId": ..., "status":
"working", ...}`. The work goes on in the background; the client polls `tasks/get` (from any
connection, later) until the status is terminal, reads the inlined `result` (or `error`), and may
`tasks/cancel` it. The SDK ships the interface, not a tasks implementation: this module is one.

The wire, as the conformance suite judges it:

* The client opts in by declaring the extension in its capabilities (per request on 2026-07-28:
  `_meta["io.modelcontextprotocol/clientCapabilities"]`). A client that did not declare it gets the
  ordinary synchronous result, and `tasks/get` / `tasks/cancel` / `tasks/update` answer it with
  -32021 (missing required client capability). The server, not the client, decides which tools
  become tasks.
* A task carries `taskId`, `status` (working, input_required, completed, failed, cancelled),
  `createdAt` / `lastUpdatedAt` (ISO 8601) and `ttlMs`. `tasks/get` inlines `result` once
  completed (a tool error is `completed` with `result.isError`) and `error` ({code, message}) once
  failed: `failed` is for a protocol error, not for a tool that reported one.
* `tasks/cancel` answers an empty result, also for a task already finished (a terminal status
  never changes); an unknown (or expired) `taskId` is -32602 for every tasks method.
* A task is kept `ttlMs` after it was created; after that it is forgotten (and its work stopped).
* A tool that asks the client something (a `Resolve` that elicits) while it runs as a task parks
  the task in `input_required`: `tasks/get` shows the questions as `inputRequests`, `tasks/update`
  brings the answers (a few at a time if the client likes), and once every question is answered
  the call runs again with them, as an ordinary 2026-07-28 retry would (given code).
* A tool that cannot run without a task (`required`) refuses a client that did not declare the
  extension with -32021, naming the extension in `data.requiredCapabilities` (given code).
* Over HTTP, tasks/get, tasks/update and tasks/cancel name their task in the `Mcp-Name` header; a
  header naming another task is refused with -32020 (header mismatch), as the SDK does for tools.

What `course check 3` holds you to (the "going further" checks), in both protocol eras:

* Only a 2026-07-28 client that declared the extension, calling one of `task_tools`, gets a task;
  it is answered at once, `working`, with its envelope and no result. Every other call is answered
  as if there were no tasks.
* `tasks/get` says `working` until the work ends, then `completed` with the tool's own result
  inlined (a tool error too, with `isError`); the work's effects exist only once it completed.
* A job whose tool raised `MCPError` (a protocol error) ends `failed`, carrying that error's code
  and message, and no result.
* `tasks/cancel` answers an empty result; a working task becomes `cancelled` and its work stops (a
  cancelled job leaves nothing behind); a task that already completed stays as it was.
* An id the store does not hold, or one whose `ttlMs` has run out, gets -32602 (`INVALID_PARAMS`).

The store is process memory: behind several replicas, a poll must reach the replica that made the
task (deploy/CAPSTONE.md says how), or the tasks must move to a shared store.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import (
    HEADER_MISMATCH,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    CallToolRequestParams,
    ClientCapabilities,
    InputRequiredResult,
    MissingRequiredClientCapabilityErrorData,
    RequestParams,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ConfigDict

from research_desk import __version__, progress

log = logging.getLogger(__name__)

TASKS = "io.modelcontextprotocol/tasks"
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
TASKS_FULL = -32011
"""A store at `max_tasks` refuses new tasks with this code (the implementation range, beside lesson
7's -32010 RATE_LIMITED)."""
CLIENT_CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


def _iso(moment: float) -> str:
    """A wall-clock second as the ISO 8601 text the wire carries."""
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Task:
    """One piece of work the client may poll: its state, and the asyncio task doing it."""

    task_id: str
    ttl_ms: int
    created: float                 # store clock (monotonic): when the task expires
    created_at: str                # wall clock, for the wire
    last_updated_at: str
    status: Status = "working"
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    work: asyncio.Task[None] | None = field(default=None, repr=False)
    input_requests: dict[str, Any] = field(default_factory=dict)   # questions still open, as the wire shows them
    answers: dict[str, Any] = field(default_factory=dict)          # answers to this round's questions so far
    answered: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def info(self) -> dict[str, Any]:
        """The task as `tasks/get` shows it: the envelope, plus `result` or `error` once settled, or
        the open questions while it waits for input."""
        shown: dict[str, Any] = {"taskId": self.task_id, "status": self.status, "createdAt": self.created_at,
                                 "lastUpdatedAt": self.last_updated_at, "ttlMs": self.ttl_ms}
        if self.status == "input_required":
            shown["inputRequests"] = dict(self.input_requests)
        if self.result is not None:
            shown["result"] = self.result
        if self.error is not None:
            shown["error"] = self.error
        return shown


class TaskStore:
    """The tasks of one server process, each forgotten `ttl_ms` after it was created.

    `max_tasks` bounds what one process holds; `clock` (seconds, monotonic) decides expiry, so a
    test can move time on; `ids` makes task ids,
    which must not be guessable (`secrets.token_urlsafe` by default): the id is all a poller shows.
    """

    def __init__(self, ttl_ms: int = 10 * 60_000, *, max_tasks: int = 1000, clock: Callable[[], float] = time.monotonic,
                 ids: Callable[[], str] | None = None) -> None:
        if ttl_ms <= 0 or max_tasks <= 0:
            raise ValueError(f"ttl_ms and max_tasks must be positive, got {ttl_ms} and {max_tasks}")
        self.max_tasks = max_tasks
        self.ttl_ms = ttl_ms
        self._clock = clock
        self._ids = ids or (lambda: secrets.token_urlsafe(16))
        self._tasks: dict[str, Task] = {}

    def create(self) -> Task:
        """A new task in `working`, kept until `ttl_ms` after now (given code). A full store refuses
        it (TASKS_FULL): each task holds its work and result in memory until it expires."""
        self._expire()
        if len(self._tasks) >= self.max_tasks:
            raise MCPError(code=TASKS_FULL, message=f"the server already holds {self.max_tasks} tasks; "
                           "poll or cancel yours, or retry once older ones have expired")
        now = _iso(time.time())
        task = Task(self._ids(), self.ttl_ms, self._clock(), now, now)
        self._tasks[task.task_id] = task
        return task

    def get(self, task_id: str) -> Task:
        """The task with this id; MCPError(INVALID_PARAMS) when there is none, or it has expired."""
        # TODO(lesson-3): forget expired tasks first, then return the task or refuse an unknown id
        #   with MCPError(INVALID_PARAMS) naming it.
        raise NotImplementedError("TODO(lesson-3): write get")

    def settle(self, task: Task, status: Status, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> None:
        """Move a task to `status` with its result or error; a terminal status is final."""
        # TODO(lesson-3): leave a task that already reached a TERMINAL status as it is; otherwise
        #   set its status, result and error, and stamp last_updated_at (_iso of now).
        raise NotImplementedError("TODO(lesson-3): write settle")

    def cancel(self, task_id: str) -> None:
        """Cancel a running task and stop its work; a finished one is left as it is."""
        # TODO(lesson-3): find the task (unknown ids are refused as by get); if it is not terminal,
        #   settle it as cancelled and cancel its work.
        raise NotImplementedError("TODO(lesson-3): write cancel")

    def _expire(self) -> None:
        """Forget every task whose ttl has run out (by the store's clock), stopping work still running."""
        # TODO(lesson-3): a task expires once `ttl_ms` has passed since `created` on self._clock;
        #   remove each such task and cancel its work if it is not done.
        raise NotImplementedError("TODO(lesson-3): write _expire")

    def doing(self, work: asyncio.Task[Any] | None) -> Task | None:
        """The task whose work `work` is, if any (given code)."""
        return next((task for task in self._tasks.values() if work is not None and task.work is work), None)

    def __len__(self) -> int:
        self._expire()
        return len(self._tasks)


class TaskIdParams(RequestParams):
    """Params of tasks/get and tasks/cancel: which task."""

    model_config = ConfigDict(extra="allow")
    taskId: str


class TaskUpdateParams(TaskIdParams):
    """Params of tasks/update: answers to a task waiting in `input_required`."""

    inputResponses: dict[str, Any] = {}


def client_asked_for_tasks(ctx: ServerRequestContext[Any, Any], params: BaseModel) -> bool:
    """Whether this request's client declared the tasks extension (connection or per-request _meta).

    Only a 2026-07-28 client can: a task is not a result the 2025 wire knows, so a legacy client
    always gets the ordinary synchronous answer."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    if capabilities is not None and TASKS in (capabilities.extensions or {}):
        return True
    meta = params.model_dump(by_alias=True).get("_meta") or {}
    declared = (meta.get(CLIENT_CAPABILITIES_META) or {}).get("extensions") or {}
    return TASKS in declared


class TasksExtension(Extension):
    """Runs the named tools as tasks for clients that declared the extension; serves tasks/*."""

    identifier = TASKS

    def __init__(self, tools: Iterable[str], store: TaskStore | None = None, *, required: Iterable[str] = ()) -> None:
        self.required_tools = frozenset(required)
        self.task_tools = frozenset(tools) | self.required_tools
        self.store = store if store is not None else TaskStore()

    def methods(self) -> list[MethodBinding]:
        modern = frozenset(MODERN_PROTOCOL_VERSIONS)
        return [MethodBinding("tasks/get", TaskIdParams, self._get, modern),
                MethodBinding("tasks/cancel", TaskIdParams, self._cancel, modern),
                MethodBinding("tasks/update", TaskUpdateParams, self._update, modern)]

    def _gate(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> None:
        """-32021 unless the client declared the extension: the tasks surface is theirs only. Over
        HTTP, an `Mcp-Name` header naming another task than the body is -32020."""
        if not client_asked_for_tasks(ctx, params):
            require_client_extension(ctx, TASKS)
        headers = getattr(ctx.request, "headers", None)
        named = decode_header_value(headers.get(MCP_NAME_HEADER)) if headers is not None else None
        if named is not None and named != params.taskId:
            raise MCPError(code=HEADER_MISMATCH, message=f"{MCP_NAME_HEADER} header does not match the taskId")

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        self._gate(ctx, params)
        return self.store.get(params.taskId).info()

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskIdParams) -> HandlerResult:
        self._gate(ctx, params)
        self.store.cancel(params.taskId)
        return {}

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: TaskUpdateParams) -> HandlerResult:
        """Take the answers to questions the task has open (others are ignored); once none is left
        open, the task is `working` again and its call runs on with them (given code)."""
        self._gate(ctx, params)
        task = self.store.get(params.taskId)
        if task.status == "input_required":
            for key, answer in params.inputResponses.items():
                if key in task.input_requests:
                    del task.input_requests[key]
                    task.answers[key] = answer
            if not task.input_requests:
                self.store.settle(task, "working")
                task.answered.set()
        return {}

    def _refuse_without_tasks(self, ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> None:
        """-32021 for a `required` tool called by a client that did not declare tasks (given code):
        it has no synchronous answer to give."""
        if params.name in self.required_tools and not client_asked_for_tasks(ctx, params):
            data = MissingRequiredClientCapabilityErrorData(
                required_capabilities=ClientCapabilities(extensions={TASKS: {}}))
            raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                           message=f"{params.name} runs only as a task: declare the {TASKS} extension",
                           data=data.model_dump(by_alias=True, mode="json", exclude_none=True))

    def _answering(self, params: CallToolRequestParams, call_next: CallNext) -> CallNext:
        """`call_next` that, in a task's work, turns a round asking for input into `input_required`
        (given code).

        The call is asked again with the answers and the round's `requestState`, exactly as a client
        retries a 2026-07-28 call; only here the retry waits inside the task for tasks/update. Outside
        a task (a synchronous call) an input-required round goes back to the client unchanged, so
        the calls of tools that never run as tasks go straight through."""
        if params.name not in self.task_tools:
            return call_next

        async def call(ctx: ServerRequestContext[Any, Any]) -> HandlerResult:
            while True:
                outcome = await call_next(ctx)
                # A task's work is an asyncio task of its own (task.work): that is how we know we are in one.
                task = self.store.doing(asyncio.current_task())
                if task is None or not isinstance(outcome, InputRequiredResult):
                    return outcome
                shown = outcome.model_dump(by_alias=True, mode="json", exclude_none=True)
                task.input_requests, task.answers = dict(shown.get("inputRequests") or {}), {}
                task.answered.clear()
                self.store.settle(task, "input_required")
                await task.answered.wait()
                retry = CallToolRequestParams.model_validate({"name": params.name, "inputResponses": task.answers})
                # The handler reads the params this interceptor was given, so the answers go there.
                params.input_responses, params.request_state = retry.input_responses, outcome.request_state

        return call

    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        """Answer a task for the listed tools when the client asked for tasks; run the rest as usual."""
        self._refuse_without_tasks(ctx, params)
        call_next = self._answering(params, call_next)
        # TODO(lesson-3): unless the tool is one of task_tools and the client asked for tasks,
        #   answer as usual with `await call_next(ctx)`. Otherwise create a task,
        #   start self._run(...) as its asyncio work, and answer {"resultType":
        #   "task", **task.info()} at once.
        return await call_next(ctx)  # no tasks yet: every call is answered synchronously

    async def _run(self, task: Task, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> None:
        """Do the work and record how it ended: a result (even an isError one) or a protocol error."""
        # TODO(lesson-3): await call_next(ctx); settle the task as completed with the result dumped
        #   as the wire shows it (by alias, JSON mode, no None fields), or as failed
        #   with an error {code, message}: the MCPError's own, or INTERNAL_ERROR for a
        #   crash (log it; its text stays out of the task). Cancellation is not a
        #   failure: let it propagate.
        raise NotImplementedError("TODO(lesson-3): write _run")


REPORTS = "reports"
"""The folder (inside the workspace) where `write_report` writes."""


def create_server(root: Path | str, extension: TasksExtension, *, pace: float = 0.0) -> MCPServer:
    """Lesson 3's indexer with `extension` installed, plus `write_report`, a job with a visible
    outcome: a report that exists only if the work ran to its end (given code)."""
    workspace = Path(root)
    server = MCPServer("research-desk-tasks", version=__version__, log_level="WARNING", extensions=[extension],
                       instructions="Index the workspace, or write a report; long jobs can run as tasks.")
    progress.register(server, root=workspace, pace=pace)

    async def write_report(name: str, seconds: float) -> str:
        """Work for `seconds`, then write reports/<name>.md and say so. A stopped job writes nothing."""
        if not name.isalnum():
            raise ToolError(f"report names are letters and digits only, got {name!r}")
        if seconds < 0:  # no model can mend a call like this: a protocol error, not a tool error
            raise MCPError(code=INVALID_PARAMS, message=f"seconds must be 0 or more, got {seconds:g}")
        await anyio.sleep(seconds)
        folder = workspace / REPORTS
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.md").write_text(f"# Report {name}\n", encoding="utf-8")
        return f"wrote {REPORTS}/{name}.md"

    server.tool(title="Write a report")(write_report)
    return server
