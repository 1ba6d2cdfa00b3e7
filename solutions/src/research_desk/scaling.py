"""Lesson 6: one desk, many processes.

A replica is one OS process serving the desk over streamable HTTP. Several replicas behind a
proxy act as one server only if nothing a client relies on lives in a single replica's memory:

* **Modern (2026-07-28) traffic has no session.** Every request stands alone, so any replica
  can answer it, with one exception: a multi-round-trip tool call returns a sealed
  `request_state`, and the retry may land on a sibling. Every replica must therefore share the
  sealing keys (from configuration, never from code) **and** the server name, which the SDK
  seals in as the audience.
* **Legacy (2025) sessions live in one replica's memory.** Either turn sessions off for them
  (`RESEARCH_DESK_STATELESS=1`, which also turns off the server-to-client back-channel) or send
  every request of a session back to the replica that owns it. `SessionOwnerTag` writes the
  owner into the session id and `deploy/nginx-sticky.conf` routes on it.
* **Cached results must mean the same on every replica.** A 2026-07-28 list or read result
  carries `ttlMs` (how long it stays fresh) and `cacheScope` (`public`: the same for every
  caller, so a cache shared between users may keep it; `private`: only the caller who fetched
  it may reuse it). The hints travel with the result, so any replica's answer must carry the
  same ones: `desk_cache_hints()` is the one place they are decided.
* **Change notifications** (`ctx.notify_resource_updated`) go through a `SubscriptionBus`. The
  SDK's bus is in-process only; `RedisSubscriptionBus` carries events through Redis pub/sub so
  a client listening on one replica hears what happened on another.

Everything is configured from environment variables (the table below), so the same code runs
as every replica. `create_server(environ)` and `build_app(environ)` read only the mapping they
are given (the process environment only when given none): the notebook and the tests build
several replicas in one process from plain dicts.

What each piece must do, precisely:

* **Keys**: `RESEARCH_DESK_STATE_KEYS` is a ring; the first key seals, every key unseals (that is
  how keys rotate). Each key needs at least 32 bytes (bytes, not characters: the SDK judges, and
  exactly 32 is enough); a refused key is a ValueError that names the variable. No variable: no
  policy (`None`), so each process seals with a key of its own. Never a key written in code.
* **The server**: one name on every replica (the audience the SDK seals for), the key policy, the
  bus it is given as `subscriptions`, and the lifespan it is given (it connects a Redis bus).
* **Cache hints**: `desk_cache_hints(list_ttl_ms=..., read_ttl_ms=...)` gives every list method
  (tools, prompts, resources, resource templates) a `public` hint with the list TTL, and
  `resources/read` a `private` hint with the read TTL, both exactly as given; the server carries
  them (`MCPServer(cache_hints=...)`).
* **Stateless**: only the value `1` turns legacy sessions off; `0`, `false` or anything else keeps
  them. With sessions off there is no session id, and the owner tag invents none.
* **The owner tag**: adds `<replica>.` to a session id the SDK sent, removes only its own prefix
  from an incoming one, and passes everything else through.
* **Events on the channel**: the JSON of the SDK's own notification for the event; decoding reads
  any JSON of that form (keys in any order, extra fields) and answers None, never an exception,
  for anything else, near misses included (an update without a string uri, params that are not an
  object). A listener that raises is logged (the `logging` module, WARNING or above) and the other
  listeners still get the event. For the capstone: `create_server(environ)` builds one replica's server,
`register(server, replica=..., root=...)` adds this lesson's tools to any server,
`build_app(environ)` is the uvicorn factory, `SessionOwnerTag` and `RedisSubscriptionBus`
plug into any `MCPServer`, and `render_nginx_config` writes the proxy configuration.

| variable | meaning |
|---|---|
| RESEARCH_DESK_REPLICA | this replica's name (lowercase letters and digits), e.g. `a` |
| RESEARCH_DESK_STATE_KEYS | comma-separated secrets (>= 32 bytes each) that seal request state; the first one seals |
| RESEARCH_DESK_STATELESS | `1`: serve legacy clients without sessions |
| RESEARCH_DESK_REDIS_URL | `redis://host:port/0`: share change notifications through Redis |
| RESEARCH_DESK_BUS_CHANNEL | the Redis channel (default `research-desk:events`) |
| RESEARCH_DESK_ROOT | the shared workspace folder where notes are filed |

Starting real replicas, nginx and Redis on loopback ports, and driving load through them, is
given tooling in `scaling_lab.py` (the notebook and `bench/scaling_load.py` use it).
"""

import asyncio
import contextlib
import functools
import json
import logging
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import anyio
from mcp.server import CacheHint
from mcp.server.caching import CacheableMethod
from mcp.server.mcpserver import Context, Elicit, MCPServer, RequestStateSecurity, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ServerEvent, SubscriptionBus
from mcp.shared.subscriptions import event_from_wire, event_to_notification
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse

from research_desk import __version__
from research_desk.writing import WriteRefused, write_new_file

logger = logging.getLogger(__name__)

SERVER_NAME = "research-desk"
NOTES_URI = "desk://notes"
REPLICA_ENV = "RESEARCH_DESK_REPLICA"
STATE_KEYS_ENV = "RESEARCH_DESK_STATE_KEYS"
STATELESS_ENV = "RESEARCH_DESK_STATELESS"
REDIS_URL_ENV = "RESEARCH_DESK_REDIS_URL"
BUS_CHANNEL_ENV = "RESEARCH_DESK_BUS_CHANNEL"
ROOT_ENV = "RESEARCH_DESK_ROOT"
DEFAULT_CHANNEL = "research-desk:events"
LIST_TTL_MS = 60_000       # the catalogue changes only when a new version is deployed
READ_TTL_MS = 5_000        # notes change whenever any replica files one
LIST_METHODS: tuple[CacheableMethod, ...] = (
    "tools/list", "prompts/list", "resources/list", "resources/templates/list")
SESSION_HEADER = b"mcp-session-id"
NGINX_TEMPLATE = Path(__file__).parent / "deploy" / "nginx-sticky.conf"

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
                   Awaitable[None]]


# --- configuration -------------------------------------------------------------------------


def replica_name(environ: Mapping[str, str]) -> str:
    """This replica's name from RESEARCH_DESK_REPLICA (default: `p<pid>`); safe in ids and nginx names."""
    name = environ.get(REPLICA_ENV) or f"p{os.getpid()}"
    if not re.fullmatch(r"[a-z0-9]{1,32}", name):
        raise ValueError(f"{REPLICA_ENV}={name!r}: use 1-32 lowercase letters and digits (it becomes part of "
                         f"session ids and nginx upstream names)")
    return name


def state_security_from_env(environ: Mapping[str, str]) -> RequestStateSecurity | None:
    """The request-state policy from RESEARCH_DESK_STATE_KEYS, or None when no key is configured.

    None lets the SDK seal with a key it generates for this process alone: right for one
    process, wrong for replicas, which must all be given the same secrets.
    """
    # BEGIN SOLUTION lesson-6: read the comma-separated secrets from RESEARCH_DESK_STATE_KEYS in
    #   `environ` (the first one seals, every one unseals); with none configured return None; if the
    #   SDK refuses a secret (under 32 bytes), raise ValueError naming the variable. Never write a
    #   key, or make one up, in code.
    keys = [key.strip() for key in environ.get(STATE_KEYS_ENV, "").split(",") if key.strip()]
    if not keys:
        return None
    try:
        return RequestStateSecurity(keys=keys)
    except ValueError as exc:
        raise ValueError(f"{STATE_KEYS_ENV} is not usable: {exc}") from None
    # END SOLUTION


# --- the desk's tools (given) --------------------------------------------------------------


class ReplicaInfo(BaseModel):
    """Which replica answered, so you can see the routing."""

    replica: str
    pid: int
    protocol_version: str | None
    served: int  # requests this replica has answered through replica_info


class FilingDecision(BaseModel):
    """What the user answers when the desk asks before filing a note."""

    file_it: bool = Field(description="File this note in the shared workspace?")


class NoteReceipt(BaseModel):
    """The outcome of file_note, and which replica finished it."""

    filed: bool
    name: str
    replica: str
    notice: str | None = None   # what the caller should know, e.g. that the note got another name


def confirm_filing(title: str) -> Elicit[FilingDecision]:
    """Resolver: ask the user before anything is written (it runs again on every round)."""
    return Elicit(f"File the note {title!r} in the shared workspace?", FilingDecision)


def note_name(title: str) -> str:
    """`notes/<slug>.md` for a title."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-") or "note"
    return f"notes/{slug[:60]}.md"


def register(server: MCPServer, *, replica: str, root: Path) -> None:
    """Add this lesson's tools (replica_info, file_note) and the desk://notes resource to `server`."""
    served = Counter[str]()

    async def replica_info(ctx: Context) -> ReplicaInfo:
        """Report which replica (process) served this request."""
        served["replica_info"] += 1
        return ReplicaInfo(replica=replica, pid=os.getpid(), protocol_version=ctx.protocol_version,
                           served=served["replica_info"])

    async def file_note(title: str, text: str,
                        decision: Annotated[FilingDecision, Resolve(confirm_filing)], ctx: Context) -> NoteReceipt:
        """File a note in the shared workspace after the user confirms; listeners of desk://notes hear of it."""
        name = note_name(title)
        if not decision.file_it:
            return NoteReceipt(filed=False, name=name, replica=replica)
        # Never through a link, never over an existing document: another note (or a planted link)
        # may already carry this name, so the note takes the next free one and the receipt says so.
        write = functools.partial(write_new_file, root, name, f"# {title}\n\n{text}\n", rename_if_taken=True)
        try:
            written = await anyio.to_thread.run_sync(write)
        except WriteRefused as exc:
            raise ToolError(f"the note was not filed: {exc}") from None
        filed = written.relative_to(root).as_posix()
        await ctx.notify_resource_updated(NOTES_URI)
        notice = (f"{name} already exists, so the note was filed as {filed}; nothing was replaced"
                  if filed != name else None)
        return NoteReceipt(filed=True, name=filed, replica=replica, notice=notice)

    def notes() -> str:
        """The names of the notes filed so far, one per line."""
        folder = root / "notes"
        if folder.is_symlink() or not folder.is_dir():   # a linked notes/ is not ours to list (file_note refuses it)
            return ""
        return "\n".join(sorted(f"notes/{p.name}" for p in folder.glob("*.md")))

    server.tool(title="Which replica?")(replica_info)
    server.tool(title="File a note")(file_note)
    server.resource(NOTES_URI, name="notes", title="Filed notes", mime_type="text/plain")(notes)


def add_health_route(server: MCPServer, replica: str) -> None:
    """GET /health for load balancers and for the tooling below that waits for a replica to start."""

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "replica": replica, "pid": os.getpid()})

    server.custom_route("/health", methods=["GET"])(health)


# --- caching hints -------------------------------------------------------------------------


def desk_cache_hints(*, list_ttl_ms: int = LIST_TTL_MS,
                     read_ttl_ms: int = READ_TTL_MS) -> dict[CacheableMethod, CacheHint]:
    """How long a client (or a cache shared by many clients) may keep each cacheable result.

    The lists describe the desk itself (which tools, which resources): the same for every
    caller on every replica, and no secret, so a cache shared between users may hand one
    user's copy to another. A read returns workspace content, which only a caller the server
    let in may see: a shared cache that served it to someone else would skip that decision.
    A hint covers its whole method, so `private` also protects every resource added later.
    """
    # BEGIN SOLUTION lesson-6: give every list method in LIST_METHODS a hint that lets any cache,
    #   shared between users, keep the result for `list_ttl_ms`; give resources/read one that keeps
    #   it only for the caller who fetched it, for `read_ttl_ms`.
    shared = CacheHint(ttl_ms=list_ttl_ms, scope="public")
    hints = {method: shared for method in LIST_METHODS}
    hints["resources/read"] = CacheHint(ttl_ms=read_ttl_ms, scope="private")
    return hints
    # END SOLUTION


# --- one replica ---------------------------------------------------------------------------


def bus_from_env(environ: Mapping[str, str]) -> SubscriptionBus:
    """A RedisSubscriptionBus when RESEARCH_DESK_REDIS_URL is set, else the SDK's in-process bus."""
    url = environ.get(REDIS_URL_ENV)
    if url:
        return RedisSubscriptionBus(url, channel=environ.get(BUS_CHANNEL_ENV) or DEFAULT_CHANNEL)
    return InMemorySubscriptionBus()


def replica_lifespan(events: SubscriptionBus, replica: str) -> Callable[[MCPServer], Any]:
    """A server lifespan that keeps `events` running (connected) while the server runs."""

    @asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[dict[str, str]]:
        async with AsyncExitStack() as stack:
            if hasattr(events, "__aenter__"):  # a bus with a connection (Redis) lives as long as the server
                await stack.enter_async_context(events)  # type: ignore[arg-type]
            yield {"replica": replica}

    return lifespan


def replica_server(environ: Mapping[str, str], *, lifespan: Callable[[MCPServer], Any],
                   events: SubscriptionBus) -> MCPServer:
    """The bare MCPServer of one replica (create_server adds the tools)."""
    # BEGIN SOLUTION lesson-6: build the MCPServer (with the given `lifespan`, log_level="WARNING")
    #   so that any replica can finish what another started: one name shared by every replica, the
    #   request-state policy from `environ` (never os.environ), `events` as its subscription bus,
    #   and the desk's cache hints (desk_cache_hints()) on every result.
    return MCPServer(SERVER_NAME, version=__version__, lifespan=lifespan, log_level="WARNING",
                     instructions="A research desk served by several replicas.",
                     request_state_security=state_security_from_env(environ), subscriptions=events,
                     cache_hints=desk_cache_hints())
    # END SOLUTION


def create_server(environ: Mapping[str, str] | None = None, *, bus: SubscriptionBus | None = None) -> MCPServer:
    """One replica of the desk, configured only from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ
    replica = replica_name(env)
    events = bus if bus is not None else bus_from_env(env)
    server = replica_server(env, lifespan=replica_lifespan(events, replica), events=events)
    register(server, replica=replica, root=Path(env.get(ROOT_ENV) or "."))
    add_health_route(server, replica)
    return server


class SessionOwnerTag:
    """ASGI middleware: a legacy session id names the replica that owns it, `<replica>.<id>`.

    The SDK mints plain random session ids, so a proxy cannot tell which replica holds a
    session. This wrapper adds the owner on the way out and removes it on the way in; the
    proxy routes on the prefix (see deploy/nginx-sticky.conf) and the SDK never sees it.
    """

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.replica = replica

    async def __call__(self, scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        # BEGIN SOLUTION lesson-6: for HTTP requests, strip this replica's "<replica>." prefix from
        #   an incoming Mcp-Session-Id header (leave any other value untouched, so a session owned
        #   by someone else stays "not found") and add the prefix to the Mcp-Session-Id header of
        #   every response that carries one (never add a header the SDK did not send); pass
        #   everything else (lifespan, other headers) through unchanged.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        prefix = f"{self.replica}.".encode()
        headers = [(key, value[len(prefix):] if key == SESSION_HEADER and value.startswith(prefix) else value)
                   for key, value in scope["headers"]]

        async def tagged(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [
                    (key, prefix + value if key.lower() == SESSION_HEADER else value)
                    for key, value in message.get("headers", [])]}
            await send(message)

        await self.app({**scope, "headers": headers}, receive, tagged)
        # END SOLUTION


def build_app(environ: Mapping[str, str] | None = None) -> ASGIApp:
    """The ASGI app one replica serves: `python -m uvicorn --factory research_desk.scaling:build_app`."""
    env = os.environ if environ is None else environ
    server = create_server(env)
    # BEGIN SOLUTION lesson-6: serve streamable HTTP, stateless for legacy clients only when
    #   RESEARCH_DESK_STATELESS is exactly "1" (any other value keeps sessions), and wrap it so
    #   every legacy session id names this replica.
    app = server.streamable_http_app(stateless_http=env.get(STATELESS_ENV) == "1")
    return SessionOwnerTag(app, replica_name(env))
    # END SOLUTION


# --- change notifications across replicas ----------------------------------------------------


def encode_event(event: ServerEvent) -> bytes:
    """A bus event as bytes another process can decode."""
    # BEGIN SOLUTION lesson-6: encode the event as JSON bytes: the JSON of the SDK's own
    #   notification for it (mcp.shared.subscriptions), never a format of your own, so any replica
    #   or program reads it.
    notification = event_to_notification(event, {})
    return json.dumps(notification.model_dump(mode="json", by_alias=True, exclude_none=True)).encode()
    # END SOLUTION


def decode_event(data: bytes | str) -> ServerEvent | None:
    """The inverse of `encode_event`; None for anything that is not an event (never raises)."""
    # BEGIN SOLUTION lesson-6: undo encode_event; for anything that is not an event (bad JSON,
    #   another shape, an unknown method) return None instead of raising: other software may share
    #   the channel.
    try:
        message = json.loads(data)
    except (ValueError, TypeError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None
    params = message.get("params")
    return event_from_wire(message["method"], params if isinstance(params, dict) else None)
    # END SOLUTION


class RedisSubscriptionBus:
    """A `SubscriptionBus` whose events travel through one Redis pub/sub channel.

    `publish` sends to Redis only. One reader task per process receives every message on the
    channel, its own included, and calls the local listeners: every listen stream on every
    replica sees every event exactly once. Use it as an async context manager (the server's
    lifespan does): entering connects and subscribes, leaving disconnects. Like the SDK's bus,
    there is no replay: events published while a replica is disconnected are lost to it, and
    clients re-listen and refetch.
    """

    def __init__(self, url: str, channel: str = DEFAULT_CHANNEL) -> None:
        self.url = url
        self.channel = channel
        self._listeners: dict[object, Callable[[ServerEvent], None]] = {}
        self._users = 0
        self._lock = anyio.Lock()
        self._redis: Any = None
        self._reader: asyncio.Task[None] | None = None

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register a local listener; return an idempotent unsubscribe."""
        token = object()
        self._listeners[token] = listener

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        """Send `event` to every replica's listeners (this one's included) through Redis."""
        # BEGIN SOLUTION lesson-6: publish the encoded event on the channel, and only there: this
        #   replica's listeners receive it back through Redis like everyone else's, so no listener
        #   sees it twice.
        await self._connection().publish(self.channel, encode_event(event))
        # END SOLUTION

    def _dispatch(self, data: bytes | str) -> None:
        """Hand one message from the channel to the local listeners (called by the reader)."""
        # BEGIN SOLUTION lesson-6: decode the message; ignore what is not an event; call every local
        #   listener with it, and never let one raising listener keep the event from the others (log
        #   it with the logging module, WARNING or above, and go on).
        event = decode_event(data)
        if event is None:
            return
        for listener in list(self._listeners.values()):
            try:
                listener(event)
            except Exception:  # a fan-out boundary: one bad listener must not starve the others
                logger.exception("a subscription listener raised; the other listeners still get the event")
        # END SOLUTION

    def _connection(self) -> Any:
        if self._redis is None:
            raise RuntimeError("RedisSubscriptionBus is not running: enter it first (`async with bus:`); "
                               "create_server's lifespan does this for you")
        return self._redis

    async def __aenter__(self) -> "RedisSubscriptionBus":
        async with self._lock:
            self._users += 1
            if self._users == 1:
                try:
                    await self._start()
                except BaseException:
                    self._users -= 1
                    await self._stop()
                    raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0:
                await self._stop()

    async def _start(self) -> None:
        import redis.asyncio as aioredis  # imported here: only replicas that use Redis need it

        self._redis = aioredis.Redis.from_url(self.url)
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(self.channel)
        with anyio.fail_after(5):  # subscribed for real before the replica reports ready
            while (message := await pubsub.get_message(timeout=1)) is None or message["type"] != "subscribe":
                pass
        self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def _read(self, pubsub: Any) -> None:
        try:
            while True:
                try:
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._dispatch(message["data"])
                except (ConnectionError, OSError) as exc:  # redis-py's ConnectionError subclasses neither
                    logger.warning("Redis bus: lost the channel (%s); resubscribing", exc)
                except Exception as exc:  # noqa: BLE001 - e.g. redis.exceptions.ConnectionError
                    logger.warning("Redis bus: reader error (%s); resubscribing", exc)
                await asyncio.sleep(0.5)
                with contextlib.suppress(Exception):
                    await pubsub.subscribe(self.channel)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def _stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None


# --- the proxy -------------------------------------------------------------------------------


def render_nginx_config(replicas: Mapping[str, int], *, port: int, prefix: Path,
                        template: Path | None = None) -> str:
    """nginx.conf text for `replicas` (name -> loopback port) behind `127.0.0.1:port`.

    Lines of the template that use {{replica}} or {{replica_port}} are written once per replica.
    """
    text = (template or NGINX_TEMPLATE).read_text(encoding="utf-8")
    out: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            out.append(line)
            continue
        line = line.replace("{{prefix}}", str(prefix)).replace("{{port}}", str(port))
        if "{{replica" in line:
            out += [line.replace("{{replica_port}}", str(p)).replace("{{replica}}", n) for n, p in replicas.items()]
        else:
            out.append(line)
    return "\n".join(out) + "\n"
