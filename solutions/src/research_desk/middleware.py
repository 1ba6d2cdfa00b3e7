"""Lesson 7, going further: what every request needs, written once (server middleware).

Some jobs belong to no tool: timing each request, keeping an audit trail, refusing a client that
floods the server. Written into every tool they are repeated, forgotten in the next tool, and blind
to everything that is not a tool call (listing tools, the handshake, a request for a tool that
does not exist). An `MCPServer` runs each middleware in `MCPServer(middleware=[...])` (the same
list as `server.middleware`, outermost first) around every inbound message: a coroutine
`mw(ctx, call_next)` that may look at `ctx.method`, `ctx.params` and `ctx.request_id`, call
`await call_next(ctx)` to let the SDK do the rest, and return its result, or raise `MCPError` to
refuse the message before any handler runs. The SDK marks the interface provisional: its shape may
change in a later 2.x release, so keep the code that depends on it in one place, like this module.

What `course check 7` holds you to (the "going further" checks):

* Every message gets one `RequestRecord` in `guard.records` once it has been answered: requests
  of every method (the handshake, listings, tool calls, calls of tools that do not exist) and
  notifications (`request_id` None), in both protocol eras. `tool` is the called tool's name
  (tools/call only), `seconds` spans the whole answer (a tool that takes 0.3 s is recorded as at
  least 0.3 s), and `outcome` says how it ended: "ok", "tool_error" (a result with is_error set:
  the model's to read) or "error" (a JSON-RPC error; `code` holds its code when it was an
  MCPError). A refused request is recorded too.
* A client that sends more than `limit` requests within `window` seconds gets, for each one past
  the limit, `MCPError(RATE_LIMITED)` whose `data` says `retryAfter` (seconds, > 0 and at most
  `window`); the refused request never reaches a tool. Once the window has passed, it is served
  again. Each client has its own allowance (`client_key`): one client's burst never refuses
  another. What starts a connection (`initialize`, `server/discover`), `ping` and notifications
  are never counted nor refused: a client that cannot connect cannot even learn it is limited.
"""

import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mcp import MCPError
from mcp.server.mcpserver import MCPServer

from research_desk import errors

log = logging.getLogger(__name__)

RATE_LIMITED = -32010
"""JSON-RPC code of a refused burst. MCP defines none: of its server-error range, -32020 to -32099
is reserved for codes the spec allocates (in order, so a number picked there may be taken
tomorrow), and -32000 to -32019 is left to implementations; the SDK uses -32000 and -32001, so the
desk picks one of the rest and documents it."""

NEVER_LIMITED = frozenset({"initialize", "server/discover", "ping"})
"""Requests a client needs to connect or to learn the server is alive: never counted, never refused."""

Outcome = Literal["ok", "tool_error", "error"]
CallNext = Callable[[Any], Awaitable[Any]]


@dataclass(frozen=True)
class RequestRecord:
    """One answered message, as the audit trail keeps it (and as one JSON log line)."""

    method: str
    tool: str | None                # the tool's name for tools/call, else None
    request_id: str | int | None    # None for a notification
    client: str                     # who sent it (see client_key)
    outcome: Outcome
    code: int | None                # the JSON-RPC error code, when outcome is "error" and known
    seconds: float                  # from the message's arrival to its answer


def client_key(ctx: Any) -> str:
    """Who sent `ctx`, as far as the server can tell (given code).

    The address the HTTP request came from (None in process and over stdio, where the connection
    has one client) and the name the client declares (`clientInfo`, sent by both eras: in
    `initialize` on 2025-11-25 and in every request's `_meta` on 2026-07-28). A client may choose
    its name, so this keeps one runaway agent from starving the others; it does not stop a
    hostile one, which is what authentication (lesson 5) and a proxy's own limits are for.
    """
    request = getattr(ctx, "request", None)
    peer = getattr(getattr(request, "client", None), "host", None)
    params = ctx.session.client_params
    name = params.client_info.name if params is not None and params.client_info is not None else "?"
    return f"{peer or 'local'}/{name}"


def tool_failed(result: Any) -> bool:
    """Whether a handler's result is a tool error (is_error set), in either form the SDK hands over."""
    if isinstance(result, dict):
        return result.get("isError") is True
    return getattr(result, "is_error", None) is True


class RequestGuard:
    """Server middleware: an audit record for every message, and a rate limit for every client.

    `limit` requests per client within any `window` seconds are served (None: no limit, only the
    audit); `keep` bounds the records kept in memory (the log has them all). `clock` is any
    monotonic clock in seconds.
    """

    def __init__(self, limit: int | None = 120, window: float = 60.0, *, keep: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.records: deque[RequestRecord] = deque(maxlen=keep)
        self.admitted: dict[str, deque[float]] = {}   # client -> when its requests in the window arrived
        self.swept = clock()

    def record(self, entry: RequestRecord) -> None:
        """Keep `entry` and log it as one line of JSON (given code).

        The JSON is built only when the line will be written: at WARNING, the usual production
        level, `log.info` drops the line, but its arguments are computed before the call, and
        turning a record into JSON costs more than the rest of the guard's work on a request."""
        self.records.append(entry)
        if log.isEnabledFor(logging.INFO):
            log.info("request %s", json.dumps(asdict(entry)))

    def trail(self) -> list[dict[str, Any]]:
        """The kept records as plain dicts, oldest first: ready for a table or for JSON (given code)."""
        return [asdict(entry) for entry in self.records]

    def recent(self, client: str, now: float) -> deque[float]:
        """When `client`'s requests still inside the window arrived, oldest first (given code).

        Once a window, clients with nothing left in it are forgotten, so a server that meets many
        clients over its life keeps only the ones that are active.
        """
        if now - self.swept >= self.window:
            self.swept = now
            self.admitted = {key: times for key, times in self.admitted.items() if times[-1] > now - self.window}
        times = self.admitted.setdefault(client, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    async def __call__(self, ctx: Any, call_next: CallNext) -> Any:
        """Admit, time and record one message, whatever happens to it."""
        # BEGIN SOLUTION lesson-7: start the clock, then (for a request that is limited) admit it or
        #   refuse it; let the SDK answer with `await call_next(ctx)` and return that; whatever
        #   happened (a result, a tool error, an exception, a refusal), record one RequestRecord
        #   after the answer, and let every exception propagate unchanged.
        started = self.clock()
        params = ctx.params or {}
        tool = params.get("name") if ctx.method == "tools/call" else None
        outcome: Outcome = "error"
        code: int | None = None
        try:
            self.admit(ctx)
            result = await call_next(ctx)
            outcome = "tool_error" if tool_failed(result) else "ok"
            return result
        except MCPError as exc:
            code = exc.error.code
            raise
        finally:
            self.record(RequestRecord(ctx.method, tool, ctx.request_id, client_key(ctx), outcome, code,
                                      self.clock() - started))
        # STUB
        # return await call_next(ctx)  # passes every message through: nothing recorded, nothing refused
        # END SOLUTION

    def admit(self, ctx: Any) -> None:
        """Count a request against its client's allowance, or raise MCPError(RATE_LIMITED) saying
        when to retry. Notifications and `NEVER_LIMITED` requests pass uncounted."""
        # BEGIN SOLUTION lesson-7: with no limit, or for a notification or a NEVER_LIMITED method,
        #   return; when the client's `recent` requests (now = self.clock()) already fill its
        #   `limit`, refuse with RATE_LIMITED and data {"retryAfter": seconds until the oldest
        #   leaves the window}; else count this one.
        if self.limit is None or ctx.request_id is None or ctx.method in NEVER_LIMITED:
            return
        now = self.clock()
        recent = self.recent(client_key(ctx), now)
        if len(recent) >= self.limit:
            retry_after = recent[0] + self.window - now
            raise MCPError(RATE_LIMITED, f"rate limit: at most {self.limit} requests in {self.window:g} s; "
                                         f"retry in {retry_after:.2f} s",
                           data={"retryAfter": retry_after, "limit": self.limit, "window": self.window})
        recent.append(now)
        # END SOLUTION


def create_server(desk: errors.ErrorDesk, guard: RequestGuard) -> MCPServer:
    """Lesson 7's desk with `guard` around every message it receives (given code)."""
    server = errors.create_server(desk)
    server.middleware.insert(0, guard)   # outermost of ours: it sees what the other middleware do
    return server
