"""Lesson 5's deployments: the small server its checks serve over Streamable HTTP, and raw HTTP to it.

Every check deploys the student's app with a real uvicorn (`target.http`) and talks to it the way
a proxy would: a public host name in `Host`, a bearer token and, where it matters, a browser
`Origin`. A `Deployment` holds one random production configuration; the server is built here
from the SDK and transport.py's given tools, the app by the student's `create_app` or
`mount_app`. Status codes are read from raw httpx2 requests, because the MCP client reports every
HTTP failure as the same "Server returned an error".
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp.client.streamable_http import streamable_http_client

from checker.checks.kit.eras import MODERN
from checker.target import Target

ACCEPT = "application/json, text/event-stream"

WHY = {
    401: "401 Unauthorized: the bearer check refused the request (is the token verifier accepting the right token?)",
    403: "403 Forbidden: the Origin allowlist refused the request",
    404: "404 Not Found: nothing is served at that path",
    413: "413: the body-size limit refused the request",
    421: "421 Misdirected Request: the Host allowlist refused the request (are the allowed host names applied?)",
    500: "500: the app crashed (in a mounted app this is usually the MCP session manager not running)",
}


def why(status: int) -> str:
    """A status code with what it usually means in this lesson."""
    return WHY.get(status, f"HTTP {status}")


# --- raw HTTP ------------------------------------------------------------------------------------


def modern_request(method: str, params: dict[str, Any] | None = None, *, id: int = 1, **meta: Any) -> dict[str, Any]:
    """A 2026-07-28 JSON-RPC request: the client's protocol, name and capabilities travel in `_meta`."""
    body_meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {},
        **meta,
    }
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": {**(params or {}), "_meta": body_meta}}


def wire_headers(host: str, authorization: str | bytes | None = None, **extra: str) -> dict[str, Any]:
    """The headers every POST to the endpoint carries (`authorization` is the whole header value)."""
    out: dict[str, Any] = {"Host": host, "Accept": ACCEPT, "Content-Type": "application/json"}
    if authorization:
        out["Authorization"] = authorization
    out.update(extra)
    return out


def modern_headers(
    host: str, method: str, name: str | None = None, authorization: str | bytes | None = None, **extra: str
) -> dict[str, Any]:
    """A modern request's headers: its protocol, method and (for tools/call) the tool's name, beside the body's."""
    named = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method, **({"Mcp-Name": name} if name else {})}
    return wire_headers(host, authorization, **named, **extra)


def padded(size: int, *, wide: bool = True) -> bytes:
    """A modern server/discover body of exactly `size` bytes. Padded with two-byte characters (é in
    UTF-8) when `wide`, so a limit counted in characters would let it through; else with ASCII."""
    meta: dict[str, Any] = {"x-padding": ""}
    body = modern_request("server/discover", **meta)
    room = size - len(json.dumps(body, ensure_ascii=False).encode())
    body["params"]["_meta"]["x-padding"] = "é" * (room // 2) + "p" * (room % 2) if wide else "p" * room
    data = json.dumps(body, ensure_ascii=False).encode()
    assert len(data) == size, (len(data), size)
    return data


def sse(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an SSE body (events without data, such as pings, are skipped)."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


def rpc_messages(response: httpx2.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an answer, whether one JSON body or an SSE stream."""
    kind = response.headers.get("content-type", "")
    return sse(response.text) if kind.startswith("text/event-stream") else [response.json()]


@asynccontextmanager
async def raw() -> AsyncIterator[httpx2.AsyncClient]:
    """A plain HTTP client, to read the status codes an MCP client would hide."""
    async with httpx2.AsyncClient(timeout=10) as http:
        yield http


@asynccontextmanager
async def mcp_client(url: str, host: str, token: str | None, mode: str) -> AsyncIterator[Any]:
    """The SDK's client over Streamable HTTP, sending `Host` (and the bearer `token`, if any) as a proxy would."""
    from mcp import Client

    headers = {"Host": host}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        httpx2.AsyncClient(headers=headers, timeout=10) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
    ):
        yield client


async def whoami(client: Any, mode: str | None = None) -> dict[str, Any]:
    """What the given connection_info tool was told of this request: protocol era, session id, Host and
    (through the bearer token) who the caller is. `mode` labels a failure."""
    result = await client.call_tool("connection_info", {})
    text = result.content[0].text if result.content else ""
    assert not result.is_error, f"{f'[{mode}] ' if mode else ''}the connection_info tool failed over HTTP: {text[:200]}"
    info = dict(result.structured_content or {})
    return {
        "protocol": info.get("protocol_version"),
        "session": info.get("session_id"),
        "host": info.get("host"),
        "client_id": info.get("client_id"),
    }


# --- one deployment --------------------------------------------------------------------------------


class Deployment:
    """One random production configuration and what happened to the server under it."""

    def __init__(self) -> None:
        self.host = f"desk-{secrets.token_hex(3)}.example"
        self.origin = f"https://app-{secrets.token_hex(3)}.example"
        self.other_host = f"mirror-{secrets.token_hex(3)}.example"  # a second public name, where one is asked for
        self.other_origin = f"https://admin-{secrets.token_hex(3)}.example"
        self.token = secrets.token_urlsafe(24)
        self.issuer = f"https://auth-{secrets.token_hex(3)}.example"
        self.name = f"desk-{secrets.token_hex(3)}"
        self.events: list[str] = []  # noted here as they happen: lifespan start / stop, host-start / host-stop

    @property
    def resource(self) -> str:
        return f"https://{self.host}/mcp"

    def _authorization(self, token: str | None) -> str | None:
        token = self.token if token is None else token
        return f"Bearer {token}" if token else None

    def headers(self, *, token: str | None = None, host: str | None = None, **extra: str) -> dict[str, Any]:
        """Headers of a POST from a proxy (the deployment's token unless `token` is given; "" sends none)."""
        return wire_headers(host or self.host, self._authorization(token), **extra)

    def modern_headers(
        self, method: str, name: str | None = None, *, token: str | None = None, host: str | None = None, **extra: str
    ) -> dict[str, Any]:
        """`headers` for a modern request."""
        return modern_headers(host or self.host, method, name, self._authorization(token), **extra)

    async def discover(self, http: httpx2.AsyncClient, url: str, **kw: Any) -> httpx2.Response:
        """One modern `server/discover` POST (headers overridable: token=, host=, Origin=...)."""
        return await http.post(
            url, json=modern_request("server/discover"), headers=self.modern_headers("server/discover", **kw)
        )

    async def require_reachable(self, http: httpx2.AsyncClient, url: str, what: str) -> None:
        """Fail with the real status code before an MCP client hides it."""
        response = await self.discover(http, url)
        assert response.status_code == 200, (
            f"{what}: a modern POST with an allowed Host ({self.host}) and the right token got "
            f"{why(response.status_code)}"
        )

    def client(self, url: str, mode: str) -> Any:
        """An MCP client of this deployment's proxy (its Host, its token)."""
        return mcp_client(url, self.host, self.token, mode)


# --- the small server every check deploys (built here, with the lesson's given tools) ----------------
#
# Its tools are transport.py's given `connection_info` (protocol era, session id and Host, as the
# transport showed them to the tool) and `count_to` (progress at every step). Its lifespans note
# their start and their end in the check's own list: see `Lifespans`.


class Lifespans:
    """Lifespans for student code to run that note, in the check's process, when each starts and ends.

    A lifespan is called as `lifespan(app)` and what it returns is entered with `async with`. The
    call is the start. It returns a stand-in context manager made where student code runs (the
    standard library's MagicMock, which can be one): entering it gives `entered`, exactly what a
    real lifespan would yield, and leaving it calls the check, which notes the end while the app
    waits. So the check's list holds what happened, in the order it happened, whatever process ran it.
    """

    def __init__(self, target: Target, events: list[str]) -> None:
        self.target, self.events = target, events
        self.stand_in = target.library("unittest.mock").MagicMock

    def noting(self, start: str, stop: str, entered: Any = None) -> Any:
        def ended(*exc_info: Any) -> None:  # returns None: an exception leaving the block goes on
            self.events.append(stop)

        on_exit = self.target.expose(ended)

        def lifespan(app: Any) -> Any:
            self.events.append(start)
            return self.stand_in(**{"__aenter__.return_value": entered, "__aexit__.side_effect": on_exit})

        return self.target.expose(lifespan)


def bare_server(target: Target, name: str, **options: Any) -> Any:
    """An MCPServer with `options` (keyword arguments such as auth_options' answer) and only the given
    `connection_info` tool."""
    server = target.library("mcp.server.mcpserver").MCPServer(name, log_level="WARNING", **options)
    server.tool()(target.attr("transport", "connection_info"))
    return server


async def make_server(target: Target, dep: Deployment, *, auth: bool = False, health: bool | str = False) -> Any:
    """A small server with a noting lifespan, the two given tools and, if asked, bearer auth and the health
    route (`health` may name its path)."""
    transport = target.module("transport")
    options: Any = {}
    if auth:
        options = transport.auth_options(dep.token, resource_url=dep.resource, issuer_url=dep.issuer)
        assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
    lifespan = Lifespans(target, dep.events).noting("start", "stop", entered={})  # the server's state: none
    made = target.library("mcp.server.mcpserver").MCPServer(dep.name, log_level="WARNING", lifespan=lifespan, **options)
    made.tool()(target.attr("transport", "connection_info"))
    made.tool()(target.attr("transport", "count_to"))
    if health is True:
        transport.add_health_route(made)
    elif health:
        transport.add_health_route(made, path=health)
    return made


async def make_app(
    target: Target, dep: Deployment, *, auth: bool = False, health: bool | str = False, **kwargs: Any
) -> Any:
    """The student's `create_app` around `make_server(...)`, allowing the deployment's host and origin."""
    create_app = target.attr("transport", "create_app")
    options = {"allowed_hosts": [dep.host], "allowed_origins": [dep.origin], **kwargs}
    return create_app(await make_server(target, dep, auth=auth, health=health), **options)


async def host_app(target: Target, dep: Deployment, prefix: str, page: str, secret: str) -> Any:
    """mount_app with a host app's own route (answering `secret`) and its own noting lifespan."""
    mount_app = target.attr("transport", "mount_app")
    mounted = await make_server(target, dep)
    # A Starlette response is itself an ASGI app: as a route's endpoint it answers every request with `secret`.
    page_route = target.library("starlette.routing").Route(
        page, target.library("starlette.responses").PlainTextResponse(secret)
    )
    host_lifespan = Lifespans(target, dep.events).noting("host-start", "host-stop")  # yields no state
    return mount_app(
        mounted,
        prefix=prefix,
        allowed_hosts=[dep.host],
        allowed_origins=[dep.origin],
        routes=[page_route],
        lifespan=host_lifespan,
    )


APP_STOPPED = "app-stopped"  # noted when the served app reports its ASGI lifespan shut down


def noting_shutdown(target: Target, served: Any, events: list[str]) -> Any:
    """`served` as it is, except that `events` notes the moment its lifespan has shut down, so the check
    judges what had finished by then, not what some later cleanup did.

    Served as an ASGI 2 app (uvicorn takes any callable that is not a coroutine function for one: it
    calls it with the scope, then awaits what that returned with receive and send). For a request,
    the check hands back `functools.partial(app, scope)`, so requests run entirely where student
    code runs; for the lifespan, a function of the check's that runs `app` with a `send` of the
    check's. That `send` is synchronous, so the app waits while the check notes the shutdown (and
    nothing else runs there meanwhile); it returns uvicorn's own `send(message)` for the app to await.
    Graded isolated, the app gets a copy of each scope: lifespan state it stores would be lost, which
    no app of this lesson has.
    """
    partial = target.library("functools").partial

    def instance(scope: dict[str, Any]) -> Any:
        if scope.get("type") != "lifespan":
            return partial(served, scope)

        async def lifespan(receive: Any, send: Any) -> None:
            def sending(message: Any) -> Any:
                if str(message.get("type", "")).startswith("lifespan.shutdown."):
                    events.append(APP_STOPPED)
                return send(message)

            await served(scope, receive, target.expose(sending))

        return target.expose(lifespan)

    return partial(target.expose(instance))  # made where student code runs, so that is where it is served
