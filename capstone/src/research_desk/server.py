"""Lesson 9, the capstone: the research desk as one production server.

Every earlier lesson built one feature in its own module. This module wires them into the one
server a team would deploy:

| lesson | module     | what the capstone takes from it                                        |
|--------|------------|------------------------------------------------------------------------|
| 1      | context    | the lifespan that opens the document index once; desk_info, list_documents |
| 2      | sampling   | summarise / summarise_document, falling back when the client cannot sample |
| 3      | progress   | index_documents, reporting progress at a bounded rate; logging to stderr |
| 4      | roots      | list_files / read_file / search_files, confined to the configured roots |
| 5      | transport  | the production ASGI app: Host/Origin allowlist, bearer auth, /health    |
| 6      | scaling    | one server name, shared request-state keys, the Redis bus, sticky legacy sessions |
| 7      | errors     | search_documents (degrades), read_document, idempotent save_note, ...   |
| 8      | __main__   | the command a host starts: `main()` below serves stdio or HTTP          |

Configuration lives in one place, `Settings`: one field per setting, each read from an
environment variable `RESEARCH_DESK_<FIELD>` by `Settings.from_env()` (the field docstrings
are the reference; `deploy/capstone.env.example` is the same list as a file). Flags given to
`main()` override the environment.

Entry points:

* `build_app()` is the uvicorn factory. Run one process per port and put nginx in front
  (`deploy/CAPSTONE.md`): ``RESEARCH_DESK_REPLICA=a python -m uvicorn --factory
  research_desk.server:build_app --host 127.0.0.1 --port 8001 --no-access-log``.
  Avoid ``uvicorn --workers N`` on Linux: its pre-bound socket loses TCP_NODELAY, so every
  keep-alive request after the first waits ~40 ms for a delayed ACK (uvicorn issue 3149).
* `main(argv)` serves stdio (what a desktop host spawns) or, with `--transport http`, one
  uvicorn process: ``python -m research_desk.server --root ~/notes``.
* `create_server(settings)` is the `MCPServer` itself, for in-memory clients and tests.

Nothing here prints: on stdio, stdout is the protocol stream. Logs go to stderr.

What `course check 9` holds you to (the notebook's specification table names the check for each):

* `Settings.from_env`: each field from `RESEARCH_DESK_<FIELD>`, stripped; a blank variable is
  unset (the default stays). Numbers convert; booleans are 1/true/yes/on or 0/false/no/off in any
  case (anything else is refused); comma-separated tuples and `os.pathsep`-separated roots skip
  empty items; `RESEARCH_DESK_ROOT` is the one-folder fallback when `RESEARCH_DESK_ROOTS` is blank. A
  value that does not convert is a `SettingsError` naming its variable. It ends with `validate()`.
* `Settings.validate()` returns the settings, or raises a `SettingsError` naming the variable: an
  unknown transport or log level; a port outside 1-65535 (both ends valid); no roots, or a root
  that is not an existing folder (every root is checked); a state key lesson 6 would not accept
  (every key); a replica name that is not 1-32 lowercase letters and digits; a task ttl outside
  1-86400 seconds; HTTP without a token
  that other machines can reach: a listening host other than 127.0.0.1, localhost or ::1 (a
  private-network address too), or a public URL off loopback, unless `allow_anonymous`
  (`RESEARCH_DESK_TOKEN` is then named). stdio needs no token.
* `create_server` passes every setting on: the documents, summaries, index and lesson 7's tools
  work in the first root; the file tools get every root; `large_document_words`, `index_pace`,
  `progress_interval`, `search_timeout` and the replica's effective name (`replica_name`, `p<pid>`
  by default) reach their tools. Lesson 7's `read_document` is the one served.
* Over HTTP (`build_app`): both eras list every lesson's tools, each with a description and an
  object schema, and `desk://notes`. A configured token is required on `/mcp` (401 without it);
  `/health` needs none. Only `settings.hosts` may appear in Host (421), only `settings.origins` in
  Origin (403), and a body over `max_body_bytes` gets 413 (one of exactly that size is served), on
  every app the router serves. No tool reads outside the roots; summaries use the client's model
  when it can sample and the desk's own otherwise; `index_documents` reports progress in both eras;
  a retried `save_note` saves once whichever era or connection retries it; legacy session ids start
  with `<replica>.`, modern clients get none, `stateless` drops legacy sessions and `stream_all`
  sends every request to the streaming app; replicas sharing state keys finish each other's
  multi-round calls and others refuse them (-32602); with Redis, a note filed on one replica
  reaches a listener on another; an abandoned call (hang-up or client timeout) stops; writes stay
  inside the workspace; without a token (and unless `allow_anonymous`) only this machine is
  served, judged by the connection;
  `server/discover` advertises no `listChanged` the desk never sends, and no authorization server
  unless `issuer_url` names one. Every request passes lesson 7's `RequestGuard` (audited, and
  limited per client when `rate_limit` is set), lists and reads carry lesson 6's cache hints
  (`desk_cache_hints()`, on 2026-07-28), and `observability.DeskTelemetry` runs inside the SDK's
  span (its spans are the SDK's children); `/metrics` is served, behind the token when there is one.
  A 2026-07-28 client that declares the tasks extension gets `index_documents` and `export_bundle`
  back as tasks (lesson 3, going further), kept `task_ttl` seconds; cancelling one stops its work
  (a cancelled export leaves no bundle).
* The installed `research-desk-server` serves the whole desk over stdio to both eras with only
  JSON-RPC on stdout. `python -m research_desk.server` refuses an exposed configuration with exit
  code 2 (naming `RESEARCH_DESK_TOKEN`, nothing on stdout), and with `--transport http` serves on
  the `--port` it was given (a flag wins over its variable); the uvicorn factory reads the process
  environment. Concurrent mixed calls all get correct answers.
"""

import argparse
import asyncio
import collections
import functools
import gc
import ipaddress
import itertools
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, SubscriptionBus
from mcp.types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.responses import JSONResponse

from research_desk import (
    __version__,
    authorization,
    context,
    errors,
    middleware,
    observability,
    progress,
    roots,
    sampling,
    scaling,
    tasks,
    transport,
)
from research_desk.context import DeskState
from research_desk.documents import scan_documents

log = logging.getLogger("research_desk.server")

ENV_PREFIX = "RESEARCH_DESK_"
TRANSPORTS = ("stdio", "http")
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [request %(request_id)s trace %(trace_id)s] %(message)s"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_ORIGINS = ("http://127.0.0.1", "http://127.0.0.1:*", "http://localhost", "http://localhost:*")
DEFAULT_MAX_BODY_BYTES = transport.DEFAULT_MAX_BODY_BYTES   # (a Settings field is called `transport`)
LARGE_DOCUMENT_WORDS = sampling.LARGE_DOCUMENT_WORDS
DEFAULT_CHANNEL = scaling.DEFAULT_CHANNEL
SERVER_NAME = scaling.SERVER_NAME
"""Every replica's name. The SDK seals request state for this name (the audience), so replicas
that must finish each other's multi-round calls have to share it: never add the replica to it."""

STREAMING_TOOLS = frozenset({"index_documents"})
"""Tools that send notifications while they run (progress). Only calls to them, legacy sessions and
listen streams need the streaming app; every other modern request is answered as one JSON body,
which skips the per-request stream machinery (about a third of the CPU a small call costs).
A tool that reports progress but is missing here loses its progress over HTTP: keep this in step."""

TASK_TOOLS = ("index_documents", "export_bundle")
"""Long-running tools a 2026-07-28 client that declared the tasks extension gets back as a task
(lesson 3, going further): it polls tasks/get and may cancel; every other client waits as before."""
MAX_TASK_TTL = 24 * 3600
"""Longest RESEARCH_DESK_TASK_TTL accepted (seconds): a task and its result live in this process's
memory until then, so the bound keeps a forgotten poller from pinning them for ever."""

INSTRUCTIONS = (
    "A research desk over a folder of Markdown and text documents. Find documents with "
    "search_documents or list_documents, read them with read_document (or read_file for any file "
    "inside the allowed roots), summarise with summarise / summarise_document, rebuild the index "
    "with index_documents, and keep research notes with save_note (reuse its idempotency_key to retry)."
)


class SettingsError(ValueError):
    """A setting cannot be used; the message names the variable (or flag) and what to change."""


@dataclass(frozen=True)
class Settings:
    """Every setting of the production desk. Field `x` is read from `RESEARCH_DESK_X`."""

    roots: tuple[Path, ...] = (Path("."),)
    """RESEARCH_DESK_ROOTS: the folders the file tools may read, separated by os.pathsep (':').
    The first is the workspace whose documents are indexed, summarised and searched.
    RESEARCH_DESK_ROOT (one folder) is accepted when RESEARCH_DESK_ROOTS is not set."""

    transport: str = "stdio"
    """RESEARCH_DESK_TRANSPORT: `stdio` (a desktop host spawns the server) or `http`."""

    host: str = "127.0.0.1"
    """RESEARCH_DESK_HOST: the address `main()` listens on with the http transport."""

    port: int = 8000
    """RESEARCH_DESK_PORT: the port `main()` listens on with the http transport."""

    public_url: str = ""
    """RESEARCH_DESK_PUBLIC_URL: the URL clients use for the MCP endpoint, e.g.
    https://desk.example.com/mcp (default: http://<host>:<port>/mcp). Its host name is allowed
    in the Host header, and bearer tokens are issued for it (their audience)."""

    allowed_hosts: tuple[str, ...] = ()
    """RESEARCH_DESK_ALLOWED_HOSTS: comma-separated host names accepted in the Host header (any
    port). Default: the public URL's host plus 127.0.0.1 and localhost. Anything else gets 421."""

    allowed_origins: tuple[str, ...] = ()
    """RESEARCH_DESK_ALLOWED_ORIGINS: comma-separated browser origins allowed to call the endpoint
    (e.g. https://app.example.com; `:*` allows any port), with CORS, so a web app there can call the
    desk from the browser. Default: pages served from this machine (http://127.0.0.1 and
    http://localhost, any port). Requests with any other Origin get 403; clients that are not
    browsers send no Origin and are unaffected."""

    token: str = ""
    """RESEARCH_DESK_TOKEN: the bearer token HTTP clients must send (Authorization: Bearer ...).
    Without one, HTTP serves only this machine: a request from any other address gets 403, however
    uvicorn binds (RESEARCH_DESK_ALLOW_ANONYMOUS lifts that). /health needs no token."""

    issuer_url: str = ""
    """RESEARCH_DESK_ISSUER_URL: the OAuth authorization server that issues tokens for this desk,
    if one does. It is then named in the protected-resource metadata the 401 answer points to, and
    tokens must be issued for this desk. Default: none, as for a static token, which no server
    issues: then no metadata is published (naming a server that is not there would send clients
    into an OAuth flow that can only fail), and operators hand the token out themselves."""

    jwks_url: str = ""
    """RESEARCH_DESK_JWKS_URL: where the issuer (RESEARCH_DESK_ISSUER_URL, then required) publishes
    its signing keys. Set, the desk accepts that issuer's JWT access tokens instead of a static
    token (RESEARCH_DESK_TOKEN must then be blank): signed by one of those keys (RS256), issued by
    the issuer, for the public URL (their audience), not expired (lesson 5, going further)."""

    tool_scopes: tuple[str, ...] = ()
    """RESEARCH_DESK_TOOL_SCOPES: with JWT access tokens, the scopes each tool needs, comma-separated
    `tool=scope scope`, and `*=scope ...` for every tool not named, e.g.
    `*=desk:read,save_note=desk:read desk:write`. A call without them gets 403 insufficient_scope,
    naming the scopes to ask the issuer for. Default: any valid token may call every tool."""

    state_keys: tuple[str, ...] = ()
    """RESEARCH_DESK_STATE_KEYS: comma-separated secrets (>= 32 bytes each) that seal request
    state; the first seals, all unseal (rotate by prepending). Every replica needs the same list."""

    replica: str = ""
    """RESEARCH_DESK_REPLICA: this process's name in a fleet (lowercase letters and digits). It
    prefixes legacy session ids so nginx can route a session home. Default: p<pid>."""

    stateless: bool = False
    """RESEARCH_DESK_STATELESS: 1 to serve 2025-era clients without sessions (no sticky routing
    needed, but no server-to-client requests for them). Modern clients are sessionless anyway."""

    redis_url: str = ""
    """RESEARCH_DESK_REDIS_URL: redis://host:port/0 to share change notifications between
    replicas. Default: an in-process bus (fine for one process)."""

    bus_channel: str = DEFAULT_CHANNEL
    """RESEARCH_DESK_BUS_CHANNEL: the Redis pub/sub channel of the bus."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """RESEARCH_DESK_MAX_BODY_BYTES: the largest request body accepted (413 above it)."""

    large_document_words: int = LARGE_DOCUMENT_WORDS
    """RESEARCH_DESK_LARGE_DOCUMENT_WORDS: above this many words, summarise_document asks the
    user before sending a document to their model."""

    search_timeout: float = 2.0
    """RESEARCH_DESK_SEARCH_TIMEOUT: seconds search_documents waits for the search service before
    answering from titles (labelled as degraded)."""

    index_pace: float = 0.0
    """RESEARCH_DESK_INDEX_PACE: seconds index_documents waits after each document (demos only)."""

    progress_interval: float = 0.1
    """RESEARCH_DESK_PROGRESS_INTERVAL: the fewest seconds between two progress reports of
    index_documents; the last document is always reported, so the count still reaches the total.
    0 reports every document. Each report is an event the server writes and the client handles:
    ten a second is as smooth as a progress bar gets, and a workspace of small documents indexed
    in a few milliseconds then costs one report, not one per document."""

    log_level: str = "WARNING"
    """RESEARCH_DESK_LOG_LEVEL: DEBUG, INFO, WARNING, ERROR or CRITICAL. Logs go to stderr."""

    stream_all: bool = False
    """RESEARCH_DESK_STREAM_ALL: 1 to answer every request through the streaming (SSE-capable) app.
    Default: only requests that may stream (see STREAMING_TOOLS) pay for it; the rest get one JSON body."""

    allow_anonymous: bool = False
    """RESEARCH_DESK_ALLOW_ANONYMOUS: 1 to serve HTTP beyond loopback without a token (say, a
    private network that authenticates at the proxy). Off: such a configuration refuses to start,
    and requests from other machines get 403 whatever address uvicorn was told to bind."""

    rate_limit: int = 0
    """RESEARCH_DESK_RATE_LIMIT: requests one client may send per minute (lesson 7's RequestGuard:
    its address and declared name make a client); past it, -32010 with `retryAfter`. 0: no limit.
    Every request is audited either way (one INFO log line each)."""

    task_ttl: int = 600
    """RESEARCH_DESK_TASK_TTL: seconds a task (index_documents or export_bundle run for a client that
    asked for tasks) stays pollable after it was created, at most 86400; then it is forgotten and,
    if still running, stopped. Tasks live in the process that created them: behind several
    replicas, route a client's polls to the same one (sticky routing) or they get -32602."""

    @staticmethod
    def env_name(field_name: str) -> str:
        """The environment variable for a field: `RESEARCH_DESK_<FIELD>`."""
        return ENV_PREFIX + field_name.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from RESEARCH_DESK_* variables in `environ` (default: the process environment).

        Unset or blank variables keep the defaults above. Raises SettingsError naming the
        variable for a value that cannot be used (see `validate`).
        """
        env = os.environ if environ is None else environ
        # TODO(lesson-9): for every field, read its variable (env_name), stripped, and convert the
        #   text to the field's type: tuples are comma-separated (roots: os.pathsep-
        #   separated, with RESEARCH_DESK_ROOT as a one-folder fallback), skipping
        #   empty items; booleans accept 1/0, true/false, yes/no, on/off in any case;
        #   unset or blank keeps the default. A value that does not convert is a
        #   SettingsError naming the variable. Finish with validate().
        raise NotImplementedError("TODO(lesson-9): write from_env")

    @property
    def level(self) -> LogLevel:
        """The log level as the SDK and `logging` name it (any case is accepted; validate() checks it)."""
        for level in LOG_LEVELS:
            if level == self.log_level.upper():
                return level
        raise SettingsError(f"RESEARCH_DESK_LOG_LEVEL={self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    def validate(self) -> "Settings":
        """Return self if the settings can be served; raise SettingsError saying what to fix."""
        # TODO(lesson-9): refuse (SettingsError naming the variable) an unknown transport or log
        #   level, a port outside 1-65535, no roots or any root that is not a folder,
        #   state keys the SDK would not accept, a replica name scaling would not
        #   accept, a task ttl outside 1-MAX_TASK_TTL seconds, and HTTP reachable from
        #   outside this machine (a non-loopback host or public URL: see `exposed`)
        #   with no token (nor the issuer's JWTs) unless allow_anonymous is set;
        #   return self.
        raise NotImplementedError("TODO(lesson-9): write validate")

    # --- derived values (given) -------------------------------------------------------------

    def authorization_problem(self) -> str | None:
        """What is wrong with the JWT settings (naming the variable), or None."""
        if self.jwks_url and not self.issuer_url:
            return "RESEARCH_DESK_JWKS_URL needs RESEARCH_DESK_ISSUER_URL: the issuer whose tokens those keys sign"
        if self.jwks_url and self.token:
            return "set RESEARCH_DESK_TOKEN or RESEARCH_DESK_JWKS_URL, not both: a static token or the issuer's tokens"
        if self.tool_scopes and not self.jwks_url:
            return "RESEARCH_DESK_TOOL_SCOPES needs RESEARCH_DESK_JWKS_URL: only the issuer's tokens carry scopes"
        for entry in self.tool_scopes:
            tool, sign, scopes = entry.partition("=")
            if not sign or not tool.strip() or not scopes.split():
                return f"RESEARCH_DESK_TOOL_SCOPES: {entry!r} is not `tool=scope [scope ...]`"
        return None

    @property
    def authenticated(self) -> bool:
        """Whether HTTP callers must prove who they are: a static token or the issuer's JWTs."""
        return bool(self.token or self.jwks_url)

    @property
    def scope_rule(self) -> tuple[dict[str, list[str]], list[str]]:
        """RESEARCH_DESK_TOOL_SCOPES as (scopes per tool, scopes of every other tool)."""
        entries = (entry.partition("=") for entry in self.tool_scopes)
        rule = {tool.strip(): scopes.split() for tool, _, scopes in entries}
        return rule, rule.pop("*", [])

    @property
    def workspace(self) -> Path:
        """The first root, resolved: the folder whose documents are indexed and summarised."""
        return self.roots[0].resolve()

    @property
    def resource_url(self) -> str:
        """The public URL of the MCP endpoint (the bearer token's audience)."""
        if self.public_url:
            return self.public_url
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/mcp"

    @property
    def issuer(self) -> str | None:
        """The authorization server that issues this desk's tokens, or None (a static token)."""
        return self.issuer_url or None

    @property
    def loopback_only(self) -> bool:
        """True when HTTP must answer this machine only: no token, and anonymous serving not allowed."""
        return not self.authenticated and not self.allow_anonymous

    @property
    def hosts(self) -> list[str]:
        """The Host names the app accepts (each with any port)."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        public = urlsplit(self.resource_url).hostname or self.host
        return list(dict.fromkeys([public, "127.0.0.1", "localhost"]))

    @property
    def origins(self) -> list[str]:
        """The browser Origins the app accepts."""
        return list(self.allowed_origins) or list(LOOPBACK_ORIGINS)

    @property
    def exposed(self) -> bool:
        """Whether HTTP clients from other machines can reach this server (directly or via a proxy)."""
        public = urlsplit(self.resource_url).hostname or ""
        return self.host not in LOOPBACK_HOSTS or public not in LOOPBACK_HOSTS

    @property
    def replica_name(self) -> str:
        return scaling.replica_name({scaling.REPLICA_ENV: self.replica} if self.replica else {})

    def with_flags(self, argv: Sequence[str]) -> "Settings":
        """These settings overridden by command-line flags (see `build_parser`)."""
        args = build_parser().parse_args(list(argv))
        changes = {key: value for key, value in vars(args).items() if value is not None}
        if "roots" in changes:
            changes["roots"] = tuple(changes["roots"])
        return replace(self, **changes).validate() if changes else self


def _parse_bool(raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


def build_parser() -> argparse.ArgumentParser:
    """The flags `main()` takes; each overrides its RESEARCH_DESK_* variable."""
    parser = argparse.ArgumentParser(
        prog="research-desk", description="Serve the research desk over MCP (stdio by default, or Streamable HTTP).",
        epilog="Every setting is also read from a RESEARCH_DESK_* environment variable (see "
               "research_desk.server.Settings); flags win. Logs go to stderr.")
    parser.add_argument("--transport", choices=TRANSPORTS, type=str.lower,
                        help="stdio or http [RESEARCH_DESK_TRANSPORT]")
    parser.add_argument("--host", help="address to listen on with http [RESEARCH_DESK_HOST]")
    parser.add_argument("--port", type=int, help="port to listen on with http [RESEARCH_DESK_PORT]")
    parser.add_argument("--root", dest="roots", action="append", type=Path, metavar="DIR",
                        help="a folder the desk may read; repeat for several [RESEARCH_DESK_ROOTS]")
    parser.add_argument("--log-level", choices=LOG_LEVELS, type=str.upper, help="[RESEARCH_DESK_LOG_LEVEL]")
    parser.add_argument("--version", action="version", version=f"research-desk {__version__}")
    return parser


# --- given: the desk's search service -----------------------------------------------------------


class WorkspaceSearch:
    """The search service lesson 7's `search_documents` depends on: full-text match over the workspace.

    In a larger deployment this is a remote index (and `search_timeout` matters); here it scans
    the documents on a worker thread, so the event loop keeps serving while it reads files, and
    keeps each document's text until the file changes (size or modification time), so a query
    reads only what changed. The scan already skips links that lead out of the workspace.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._texts: dict[Path, tuple[int, int, str]] = {}   # path -> (mtime_ns, size, casefolded text)
        self._lock = threading.Lock()   # searches run on several worker threads at once

    async def search(self, query: str, limit: int) -> list[str]:
        return await anyio.to_thread.run_sync(self._search, query, limit)

    def _text(self, path: Path) -> str:
        info = path.stat()
        with self._lock:
            cached = self._texts.get(path)
        if cached is not None and cached[:2] == (info.st_mtime_ns, info.st_size):
            return cached[2]
        text = path.read_text(encoding="utf-8", errors="replace").casefold()
        with self._lock:
            self._texts[path] = (info.st_mtime_ns, info.st_size, text)
        return text

    def _search(self, query: str, limit: int) -> list[str]:
        words = [word for word in re.findall(r"\w+", query.casefold()) if word]
        paths = scan_documents(self.root)
        with self._lock:
            for gone in self._texts.keys() - set(paths):   # forget deleted documents
                del self._texts[gone]
        scored: list[tuple[int, str]] = []
        for path in paths:
            try:
                text = self._text(path)
            except OSError:   # deleted between the scan and the read
                continue
            score = sum(text.count(word) for word in words)
            if score:
                scored.append((-score, path.relative_to(self.root).as_posix()))
        return [name for _, name in sorted(scored)[:limit]]


def configure_logging(level: str) -> None:
    """Send the desk's log records to stderr at `level` (never stdout: on stdio it is the wire).

    Uses lesson 3's handler for the `research_desk` loggers; third-party loggers keep their own.
    Each line names the request it was logged for (`observability.RequestIdFilter`): `-` outside one.
    """
    for handler in progress.configure_logging(level).handlers:
        if not any(isinstance(f, observability.RequestIdFilter) for f in handler.filters):
            handler.addFilter(observability.RequestIdFilter())
            handler.setFormatter(logging.Formatter(LOG_FORMAT))


# --- given: one lifespan for two apps, and the router between them ------------------------------

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


def shared_lifespan(lifespan: Callable[[MCPServer], AbstractAsyncContextManager[Any]]) -> Callable[[MCPServer], Any]:
    """`lifespan`, entered once however many session managers enter it (the first opens, the last closes).

    Each HTTP app the SDK builds runs its own session manager, and each manager enters the
    server's lifespan. The capstone serves two apps from one server, so without this the
    document index would be opened twice and each app would see its own copy.
    """
    users = 0
    stack: AsyncExitStack | None = None
    state: Any = None
    lock = anyio.Lock()

    @asynccontextmanager
    async def entered(server: MCPServer) -> AsyncIterator[Any]:
        nonlocal users, stack, state
        async with lock:
            if users == 0:
                opened = AsyncExitStack()
                state = await opened.enter_async_context(lifespan(server))
                stack = opened
            users += 1
        try:
            yield state
        finally:
            async with lock:
                users -= 1
                if users == 0 and stack is not None:
                    closing, stack, state = stack, None, None
                    await closing.aclose()

    return entered


class StreamOnlyWhereNeeded:
    """ASGI router: a modern (2026-07-28) request that cannot stream goes to the JSON-only app.

    Routing reads only headers: 2026-07-28 requests carry `MCP-Protocol-Version`, `Mcp-Method`
    and `Mcp-Name` precisely so that proxies need not parse bodies (and the SDK rejects a request
    whose headers disagree with its body). Legacy (2025) sessions, `subscriptions/listen` and
    calls to `streaming_tools` go to the streaming app; so does anything unrecognised.
    The router runs both apps' lifespans (the SDK starts a session manager in each).
    """

    def __init__(self, streaming: ASGIApp, plain: ASGIApp, *, lifespans: Sequence[Any],
                 streaming_tools: frozenset[str]) -> None:
        self.streaming = streaming
        self.plain = plain
        self.lifespans = list(lifespans)   # Starlette apps whose lifespan must run
        self.streaming_tools = streaming_tools

    def wants_plain(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        version = method = name = None
        for key, value in headers:
            if key == b"mcp-protocol-version":
                version = value
            elif key == b"mcp-method":
                method = value
            elif key == b"mcp-name":
                name = value
        if version is None or method is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS:
            return False
        if method == b"subscriptions/listen":
            return False
        return not (method == b"tools/call" and (name is None or name.decode("latin-1") in self.streaming_tools))

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http" and self.wants_plain(scope["headers"]):
            await self.plain(scope, receive, send)
        else:
            await self.streaming(scope, receive, send)

    async def _lifespan(self, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                for app in self.lifespans:
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except BaseException as exc:
                await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                raise
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


class CancelOnDisconnect:
    """ASGI wrapper: when the client hangs up before its answer, the request's handler is cancelled.

    The SDK's JSON-response mode answers a modern request from the ASGI task itself and never
    listens for `http.disconnect`: a client that closed the connection (or whose SDK gave up with
    -32001, which closes it) left the handler running to the end, writing files nobody would read.
    The streaming app watches, the JSON one does not. Wrapped, a JSON-mode call stops at its next
    `await` when the client leaves, exactly as on the streaming app, and its cleanup runs.

    Watching costs a task per request, about a quarter of what a small call costs in all, and a
    call that answers within `watch_after` seconds has nothing worth cancelling. So one timer per
    app sweeps the running calls every `watch_after` seconds (while any run) and starts a watcher
    for each call that has run that long (most calls are long done, and a timer per call would
    cost each of them as much again). Built for uvicorn's event loop (asyncio, or uvloop): the
    timer and the watchers belong to the loop that serves the requests.
    """

    watch_after = 0.05   # seconds

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.running: dict[WatchedCall, float] = {}   # each call in progress -> when it started (loop time)
        self.sweeper: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        call = WatchedCall(receive, send)
        with anyio.CancelScope() as call.cancel_scope:
            self.running[call] = loop.time()
            if self.sweeper is None or self.loop is not loop:   # no sweep due, or one on a loop now gone
                self.loop, self.sweeper = loop, loop.call_later(self.watch_after, self._sweep)
            try:
                await self.app(scope, call.receive, call.send)
            finally:
                del self.running[call]
                call.stop_watching()

    def _sweep(self) -> None:
        """Watch every call running for `watch_after` seconds or more; sweep again while calls run."""
        assert self.loop is not None
        self.sweeper = None
        due = self.loop.time() - self.watch_after
        for call, started in self.running.items():
            if started <= due:
                call.watch(self.loop)
        if self.running:
            self.sweeper = self.loop.call_later(self.watch_after, self._sweep)


class WatchedCall:
    """One request under `CancelOnDisconnect`: what it has read and sent, and its watcher, if started."""

    __slots__ = ("_receive", "_send", "body_read", "answered", "hung_up", "cancel_scope", "watcher")

    def __init__(self, receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]) -> None:
        self._receive, self._send = receive, send
        self.body_read = self.answered = False
        self.hung_up: anyio.Event | None = None
        self.cancel_scope: anyio.CancelScope | None = None
        self.watcher: asyncio.Task[None] | None = None

    async def receive(self) -> Any:
        """The app's `receive`. Once the body is read, the watcher is the only reader of the real one."""
        if self.body_read:
            await self._hung_up().wait()
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.body_read = True
        return message

    async def send(self, message: Any) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered = True
        await self._send(message)

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the watcher, unless the call is answered, already watched, or its body still arriving
        (the next sweep tries again: until the body is read, the app itself is reading)."""
        if self.watcher is None and self.body_read and not self.answered:
            self.watcher = loop.create_task(self._watch())

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()

    def _hung_up(self) -> anyio.Event:
        if self.hung_up is None:
            self.hung_up = anyio.Event()
        return self.hung_up

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._hung_up().set()
        if not self.answered and self.cancel_scope is not None:
            self.cancel_scope.cancel()


class TakeTurns:
    """ASGI middleware: under load, requests start in the order they came, `places` at a time.

    One event loop serves every request of the process, and every trip a call makes back to it (a
    worker thread's result, a progress event) waits behind one step of every other call in flight.
    With 32 clients, a call that makes twenty trips (a file search, lesson 3's indexer) waited
    twenty rounds of everyone's work: the mixed load's median was ~55 ms but its p99 ~200 ms, all
    of it from the calls that touch the disk. Letting `places` calls run at once while the rest
    wait their turn in arrival order keeps those rounds short: every call then waits about as long
    as any other (p99 ~60 ms, median ~42 ms on 2 cores, see `bench/capstone_load.py`), and the
    loop switches between fewer calls, so it serves more of them (throughput up by a fifth or
    more). A call holds its place for at most `turn` seconds: one that runs
    longer (an export, a stream left open for notifications) goes on running but gives its place
    to the next, so no call keeps the others waiting for more than that. A call queues only once
    its whole body has arrived (when the app reads its last part): a client that sends slowly,
    on purpose or not, holds no place while it does, and a request without a body (a GET) none.
    """

    places = 2     # calls running their first `turn` at once: two, so one waiting on the disk idles nothing
    turn = 0.05    # seconds a call may hold its place

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None
        self.holding: dict[int, float] = {}   # each place taken: its ticket -> when (loop time)
        self.waiting: collections.deque[asyncio.Future[int]] = collections.deque()
        self.tickets = itertools.count()
        self.sweeper: asyncio.TimerHandle | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        if loop is not self.loop:   # a new loop (a test's, say): places held on a loop now gone are void
            self.loop, self.holding, self.waiting, self.sweeper = loop, {}, collections.deque(), None
        ticket: int | None = None

        async def receive_then_wait_for_a_turn() -> Any:
            nonlocal ticket
            message = await receive()
            if ticket is None and message["type"] == "http.request" and not message.get("more_body", False):
                ticket = await self._turn(loop)
            return message

        try:
            await self.app(scope, receive_then_wait_for_a_turn, send)
        finally:
            if ticket is not None:
                self._leave(ticket)

    async def _turn(self, loop: asyncio.AbstractEventLoop) -> int:
        """A place for this call: at once if one is free and nobody waits, else when its turn comes."""
        if len(self.holding) < self.places and not self.waiting:
            return self._take()
        turn = loop.create_future()
        self.waiting.append(turn)
        try:
            return await turn
        except BaseException:   # cancelled while waiting (or just after being given a place)
            if turn.done() and not turn.cancelled():
                self._leave(turn.result())
            raise

    def _take(self) -> int:
        assert self.loop is not None
        ticket = next(self.tickets)
        self.holding[ticket] = self.loop.time()
        if self.sweeper is None:
            self.sweeper = self.loop.call_later(self.turn, self._sweep)
        return ticket

    def _leave(self, ticket: int) -> None:
        if self.holding.pop(ticket, None) is not None:   # not if its turn had already ended
            self._admit()

    def _admit(self) -> None:
        while self.waiting and len(self.holding) < self.places:
            turn = self.waiting.popleft()
            if not turn.done():   # (a waiter that gave up is skipped)
                turn.set_result(self._take())

    def _sweep(self) -> None:
        """End the turn of every call that has held its place for `turn` seconds; again while any hold one."""
        assert self.loop is not None
        self.sweeper = None
        due = self.loop.time() - self.turn
        for ticket in [t for t, since in self.holding.items() if since <= due]:
            del self.holding[ticket]
        self._admit()
        if self.holding:
            self.sweeper = self.loop.call_later(self.turn, self._sweep)


class LoopbackOnly:
    """ASGI middleware for a desk with no token: only clients on this machine are served.

    `Settings.validate` refuses a configuration that says the desk is public without a token, but
    the configuration cannot see where uvicorn really listens: `uvicorn --host 0.0.0.0` on the
    command line, or a local proxy forwarding the world to 127.0.0.1. So each request is judged by
    its connection: the address it arrived on (`scope["server"]`) and the peer (`scope["client"]`,
    which uvicorn sets from X-Forwarded-For only when a trusted local proxy sent it) must both be
    loopback, or it gets 403. A Host header proves nothing: any client can send `Host: 127.0.0.1`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    @staticmethod
    def is_local(address: Any) -> bool:
        """True for a loopback IP address; None (a Unix socket) is local too; anything else is not."""
        if address is None:
            return True
        try:
            return ipaddress.ip_address(str(address[0]).split("%", 1)[0]).is_loopback
        except (ValueError, TypeError, IndexError):
            return False

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] == "http":
            server, client = scope.get("server"), scope.get("client")
            unix = server is not None and server[1] is None   # a Unix socket: its path, no port
            if not unix and not (self.is_local(server) and self.is_local(client)):
                response = JSONResponse({"error": "this desk has no token, so it serves only clients on its own "
                                                  "machine; set RESEARCH_DESK_TOKEN to serve others"}, status_code=403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


UNSENT_CHANGES = ("tools", "prompts", "resources")
"""Lists the desk never changes while it runs, so it never sends their `list_changed` notifications."""


async def honest_capabilities(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware: `server/discover` advertises only the change notifications the desk sends.

    On 2026-07-28 the SDK advertises `listChanged` for tools, prompts and resources whenever it
    serves `subscriptions/listen`, whether or not the server ever changes those lists. A client
    that believes it subscribes to them and never hears a thing cannot tell silence from a
    broken stream. The desk's lists are fixed at start; what it does send is `desk://notes`
    updates, so `resources.subscribe` stays.
    """
    result = await call_next(ctx)
    if ctx.method == "server/discover" and isinstance(result, dict):
        capabilities = result.get("capabilities") or {}
        for kind in UNSENT_CHANGES:
            if isinstance(capabilities.get(kind), dict):
                capabilities[kind]["listChanged"] = False
    return result


# --- the server -----------------------------------------------------------------------------------


def make_bus(settings: Settings) -> SubscriptionBus:
    """The change-notification bus: Redis when configured (every replica hears every event), else in-process."""
    if settings.redis_url:
        return scaling.RedisSubscriptionBus(settings.redis_url, channel=settings.bus_channel)
    return InMemorySubscriptionBus()


def desk_lifespan(workspace: Path, bus: SubscriptionBus) -> Callable[[MCPServer], Any]:
    """The server lifespan: what one process opens at start and closes at stop (once, however many
    of the process's apps enter it: see `shared_lifespan`)."""

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[DeskState]:
        # TODO(lesson-9): for as long as the server runs, keep the bus connected (only a bus that is
        #   an async context manager needs it: Redis) and lesson 1's document index
        #   open, and yield the index's DeskState (the tools of lesson 1 read it);
        #   close both however the server stops.
        raise NotImplementedError("TODO(lesson-9): write the capstone lifespan")
        yield  # keeps this an async generator

    return shared_lifespan(lifespan)


def register_tools(server: MCPServer, settings: Settings) -> None:
    """Add every lesson's tools to `server`, each confined to the configured roots."""
    workspace = settings.workspace
    # TODO(lesson-9): register lesson 1's tools (then drop its read_document: lesson 7's sanitised
    #   one replaces it), lesson 2's summarisers over the workspace (with the large-
    #   document limit), lesson 3's indexer over the workspace (with its pace and, as
    #   report_every, the progress interval), lesson 4's file tools over the
    #   configured roots, lesson 6's tools for this replica, and lesson 7's tools over
    #   an ErrorDesk of the workspace whose backend is a WorkspaceSearch of the
    #   workspace, waiting at most search_timeout.
    raise NotImplementedError("TODO(lesson-9): write register_tools")


def create_server(settings: Settings, *, http: bool = True) -> MCPServer:
    """The desk's MCPServer for `settings`. `http=False` (stdio) leaves HTTP-only parts out: bearer
    auth and /health belong to the HTTP app, since a stdio server is spawned by its only client."""
    bus = make_bus(settings)
    # TODO(lesson-9): build the MCPServer under SERVER_NAME with the version, INSTRUCTIONS, the desk
    #   lifespan, the log level, lesson 6's request-state policy from the state keys
    #   and cache hints (desk_cache_hints()), `bus` as its subscription bus,
    #   honest_capabilities as its middleware and lesson 3's tasks extension for
    #   TASK_TOOLS (a store keeping tasks task_ttl seconds), then a DeskTelemetry
    #   (lesson 9's observability) innermost, with lesson 7's RequestGuard (the rate
    #   limit per minute, if any) outermost; over HTTP with a token, add lesson 5's
    #   bearer auth for the public URL and the issuer (if any), or with a JWKS URL the
    #   issuer's JWT access tokens (authorization.jwt_auth_options). Register every
    #   tool, then (over HTTP) lesson 5's /health route and the telemetry's /metrics
    #   (behind the token; not served with JWT access tokens alone, where no static
    #   token can guard it).
    raise NotImplementedError("TODO(lesson-9): write create_server")


def create_http_app(settings: Settings) -> Any:
    """The ASGI app one process serves: lesson 5's production app, tagged for sticky routing, with
    modern requests that never stream answered by a JSON-only twin of it (see `StreamOnlyWhereNeeded`)
    that still stops a call its client abandons (`CancelOnDisconnect`). Without a token, it answers
    this machine only (`LoopbackOnly`)."""
    server = create_server(settings, http=True)
    # TODO(lesson-9): build lesson 5's app (allowed hosts and origins, body limit, stateless switch)
    #   and wrap it so every legacy session id names this replica (lesson 6): that is
    #   the streaming app. Unless stream_all is set, also build lesson 5's JSON-
    #   response twin with the same settings, wrapped in CancelOnDisconnect (the JSON
    #   mode never notices a client that hangs up), and route between the two with
    #   StreamOnlyWhereNeeded (STREAMING_TOOLS stream). With JWT access tokens, both
    #   apps check the scopes per tool (protect_tools). Without a token (and unless
    #   anonymous serving is allowed), wrap the whole thing in LoopbackOnly.
    raise NotImplementedError("TODO(lesson-9): write create_http_app")


def with_tool_scopes(make_app: Callable[..., Any], settings: Settings, **options: Any) -> Any:
    """`make_app(**options)`, whose MCP endpoint also checks the scopes each tool needs
    (RESEARCH_DESK_TOOL_SCOPES, lesson 5's `protect_tools`): for a desk taking the issuer's JWTs."""
    app = make_app(**options)
    required, default = settings.scope_rule
    return authorization.protect_tools(app, required=required, default=default, resource_url=settings.resource_url)


def build_app(settings: Settings | Mapping[str, str] | None = None) -> Any:
    """The uvicorn factory: `python -m uvicorn --factory research_desk.server:build_app`.

    `create_http_app(settings)`, whose requests take turns under load (`TakeTurns`). With no
    argument, the settings come from the process environment, validated as an HTTP deployment
    (RESEARCH_DESK_TRANSPORT does not apply: a factory always serves HTTP), and the process is the
    server's own: what it built at start is frozen (`freeze_startup_heap`).
    """
    serving_process = settings is None
    if not isinstance(settings, Settings):
        settings = replace(Settings.from_env(settings), transport="http").validate()
    configure_logging(settings.log_level)
    app = TakeTurns(create_http_app(settings))
    if serving_process:
        freeze_startup_heap()
    return app


def freeze_startup_heap() -> None:
    """Keep what the process built at start out of the garbage collector's full passes.

    The modules, the app and its settings live as long as the process: some 100 000 objects
    that every full collection walks again, about 35 ms in which no request moves. Under load
    the requests in flight survive the young collections and trigger full ones every second
    or so, so those pauses set the tail latency. `gc.freeze()` moves everything alive now to a
    generation the collector never scans (collected first, so no garbage is kept for ever).
    Only for a process that exists to serve (the uvicorn factory): a notebook's or a test's
    heap is not the desk's to freeze.
    """
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the desk: stdio by default, or one HTTP process with `--transport http`.

    Settings come from RESEARCH_DESK_* variables, then flags. A bad setting ends the program the
    argparse way (usage and one error line on stderr, exit code 2) before anything is served.
    Takes the same flags as lesson 8's command, so `research_desk.__main__` can delegate to it.
    Returns the exit code.
    """
    parser = build_parser()
    try:
        settings = Settings.from_env(os.environ).with_flags(sys.argv[1:] if argv is None else argv)
    except SettingsError as exc:
        parser.error(str(exc))  # exits 2
    # TODO(lesson-9): configure logging (stderr), log one INFO line saying what is served, then
    #   serve: stdio through the server built without HTTP parts, or HTTP through
    #   uvicorn serving build_app(settings) on the configured host and port (one
    #   process, no access log). Never write to stdout.
    raise NotImplementedError("TODO(lesson-9): write main")


if __name__ == "__main__":
    sys.exit(main())
