"""Lesson 5: serving the desk over Streamable HTTP, safely.

Over stdio the desk talks to one client that started it. Over HTTP anyone who can reach the
port can talk to it, so the ASGI app this module builds adds what a public endpoint needs:

* a Host/Origin allowlist (DNS-rebinding protection) on every route, /health included: a wrong
  Host gets 421, a wrong browser Origin gets 403, both before any MCP code runs;
* CORS for the allowed origins, so a web app on one of them can call the endpoint from a browser
  (the browser's preflight is answered without a token; the request itself still needs one);
* a bearer token on the MCP endpoint, checked by the SDK's own `TokenVerifier` hook
  (`MCPServer(token_verifier=..., auth=AuthSettings(...))`): no token or a wrong one gets 401,
  whatever its characters (a header may carry non-ASCII bytes: a wrong token is never a 500).
  Tools learn who the caller is (the verifier's `client_id`), never the token itself: a tool's
  output reaches the model and its logs. With an authorization server (`issuer_url`), a token
  minted for another resource is refused too;
* a `/health` route that answers without a token, for load balancers and orchestrators;
* a request-body limit in bytes: a body of exactly `max_body_bytes` passes, one byte more gets 413;
* and, for apps that already exist, a way to mount the MCP app inside them with the MCP
  session manager running in the host app's lifespan.

Configuration comes in as arguments; the capstone (lesson 9) reads it from the environment and
calls these same functions:

    server = MCPServer("research-desk", log_level="WARNING",
                       **auth_options(token, resource_url="https://desk.example.com/mcp"))
    register(server)                 # this lesson's demo tools (optional)
    add_health_route(server)         # before the app is built: routes are copied then
    app = create_app(server, allowed_hosts=["desk.example.com"],
                     allowed_origins=["https://app.example.com"])

Order matters: authentication is fixed when the `MCPServer` is constructed (the SDK takes the
verifier in the constructor), and custom routes are read when `create_app` builds the app.

Every argument counts: each name in `allowed_hosts` and each origin in `allowed_origins`, the
health route's `path`, and `create_app`'s `path`, `stateless` and `json_response` (off unless
asked: legacy sessions and SSE streaming are the defaults). `mount_app` applies all of
`create_app`'s protection under its prefix, and works with or without a host lifespan or routes.

One requirement no behaviour test can see: the token comparison must take the same time however
much of the token is right (`hmac.compare_digest`), or an attacker can guess it a character at a
time by timing refusals. No check can measure that reliably; the chapter quiz asks about it.
"""

import asyncio
import hmac
import re
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: plenty for JSON-RPC messages, far below the SDK's 4 MiB default."""

HostLifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]
"""The lifespan of a host application: `@asynccontextmanager async def lifespan(app): ...; yield`."""


# --- Authentication: the SDK's TokenVerifier hook -------------------------------------------


class StaticTokenVerifier:
    """A `TokenVerifier` (mcp.server.auth.provider) for one shared secret, e.g. an API key.

    The SDK's bearer middleware calls `verify_token` with whatever follows `Bearer ` in the
    `Authorization` header. `None` means "not authenticated" and becomes a 401; an
    `AccessToken` means "this caller is `client_id`", and the request goes on to the MCP app.
    An OAuth deployment verifies JWT access tokens here instead (`authorization.JwtVerifier`, this
    lesson's going-further part) or asks its authorization server about each token (introspection).
    """

    def __init__(self, token: str, *, resource: str, client_id: str = "desk-operator") -> None:
        if not token:
            raise ValueError("the bearer token must not be empty")
        self._token = token
        self.resource = resource      # the URL of the MCP endpoint this token is valid for
        self.client_id = client_id    # who holds the token, as tools will see it

    async def verify_token(self, token: str) -> AccessToken | None:
        """An `AccessToken` for the configured token; `None` for anything else."""
        # BEGIN SOLUTION lesson-5: accept exactly the configured token (compare in constant time, as
        #   bytes: any text may arrive) and describe it as an AccessToken for this verifier's
        #   client_id and resource, with no scopes (never the token as an id); answer None for
        #   anything else, and never raise.
        if not hmac.compare_digest(token.encode("utf-8"), self._token.encode("utf-8")):
            return None
        return AccessToken(token=token, client_id=self.client_id, scopes=[], resource=self.resource)
        # END SOLUTION


def auth_options(token: str, *, resource_url: str, issuer_url: str | None = None) -> dict[str, Any]:
    """Keyword arguments for `MCPServer(...)` that require `Authorization: Bearer <token>` on MCP.

    `resource_url` is the public URL of the MCP endpoint (the token's audience). `issuer_url` is
    the OAuth authorization server that issues tokens for it, if there is one: then the desk
    publishes protected-resource metadata (RFC 9728, at /.well-known/oauth-protected-resource/...)
    naming it, the 401 points there, and the SDK checks that each token was issued for this
    resource. A static key has no authorization server, so without `issuer_url` nothing is
    published: metadata naming a server that does not exist would send clients into an OAuth
    flow that can only fail. Custom routes such as /health stay public.
    """
    # BEGIN SOLUTION lesson-5: return the two MCPServer arguments that switch bearer auth on: a
    #   StaticTokenVerifier for this token and resource, and AuthSettings. With an issuer: name it
    #   and this resource server, with the token's resource checked against it. Without one: no
    #   resource server URL (so no metadata is published); the SDK still wants an issuer value,
    #   which nothing then shows.
    if issuer_url:
        auth = AuthSettings(issuer_url=issuer_url, resource_server_url=resource_url,  # type: ignore[arg-type]
                            validate_token_resource=True)
    else:
        auth = AuthSettings(issuer_url=resource_url, resource_server_url=None,  # type: ignore[arg-type]
                            validate_token_resource=False)
    return {"token_verifier": StaticTokenVerifier(token, resource=resource_url), "auth": auth}
    # END SOLUTION


# --- Host/Origin allowlist, health, the app -------------------------------------------------


def security_settings(allowed_hosts: Sequence[str], allowed_origins: Sequence[str] = ()) -> TransportSecuritySettings:
    """DNS-rebinding protection for a server reachable under `allowed_hosts` (names, no port).

    A browser on an evil page can make a name it controls resolve to 127.0.0.1 or to your
    internal IP; its requests then reach your server with `Host: evil.example`. Allowing only
    your own names (and only your own web app's `Origin`) closes that door.
    """
    # BEGIN SOLUTION lesson-5: turn protection on; allow each name both bare and followed by any
    #   port (a Host header carries the port unless it is the scheme's default), and exactly the
    #   given origins.
    hosts: list[str] = []
    for host in allowed_hosts:
        hosts += [host, f"{host}:*"]
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts,
                                     allowed_origins=list(allowed_origins))
    # END SOLUTION


class GuardEveryRoute:
    """ASGI middleware: the Host/Origin allowlist for the routes beside the MCP endpoint (given).

    The SDK checks Host and Origin on the MCP endpoint only; custom routes such as /health would
    answer any Host, so a rebinding page could still probe them. This applies the same check,
    the SDK's own, to every other path of the app. (The MCP path is left to the SDK, which checks
    it anyway: checking twice would only cost time.)
    """

    def __init__(self, app: ASGIApp, security: TransportSecuritySettings, mcp_path: str) -> None:
        self.app = app
        self.check = TransportSecurityMiddleware(security)
        self.mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._route_path(scope) != self.mcp_path:
            refusal = await self.check.validate_request(Request(scope, receive), is_post=False)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    def _route_path(scope: Scope) -> str:
        """The path below the mount point, if the app is mounted (`mount_app`)."""
        path, root = scope["path"], scope.get("root_path", "")
        return path[len(root):] if root and path.startswith(root) else path


CORS_RESPONSE_HEADERS = ("mcp-session-id", "www-authenticate")


def cors_options(allowed_origins: Sequence[str]) -> dict[str, Any]:
    """Keyword arguments for Starlette's CORSMiddleware that let browsers on `allowed_origins` call MCP.

    A browser asks first (an OPTIONS preflight, which never carries the token) whether a page of
    that origin may POST with an Authorization header; only the allowed origins are told yes, so
    any request header may be named (MCP adds `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`...). `:*`
    patterns (any port) become a regular expression. Browsers may read the session id and the
    401 challenge.
    """
    exact = [origin for origin in allowed_origins if not origin.endswith(":*")]
    ports = [re.escape(origin[:-2]) + r":\d+" for origin in allowed_origins if origin.endswith(":*")]
    return {"allow_origins": exact, "allow_origin_regex": "|".join(ports) or None,
            "allow_methods": ["GET", "POST", "DELETE"], "allow_headers": ["*"],
            "expose_headers": list(CORS_RESPONSE_HEADERS), "max_age": 600}


def add_health_route(server: MCPServer, *, path: str = "/health") -> None:
    """Add `GET /health`, answering 200 `{"status": "ok", "server": <name>}` with no token.

    Call it before `create_app`: the app copies the server's custom routes when it is built.
    """
    # BEGIN SOLUTION lesson-5: register a GET custom route at `path` (the argument, not always
    #   /health) that answers 200 with that JSON; the SDK keeps custom routes outside the bearer
    #   check, which is exactly what a probe needs.
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "server": server.name})

    server.custom_route(path, methods=["GET"])(health)
    # END SOLUTION


def create_app(server: MCPServer, *, allowed_hosts: Sequence[str], allowed_origins: Sequence[str] = (),
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, path: str = "/mcp",
               stateless: bool = False, json_response: bool = False) -> Starlette:
    """The production ASGI app for `server`: one MCP endpoint at `path`, plus its custom routes.

    Both protocol eras are served on the same endpoint. Responses stay free to be SSE (that is
    where progress and other per-request notifications travel), and legacy clients keep their
    `Mcp-Session-Id` sessions unless `stateless=True` (lesson 6). `json_response=True` answers
    every request as one JSON body instead: cheaper, but with no room for notifications (lesson 9
    uses such a twin for the calls that never stream). Every route obeys the Host/Origin
    allowlist, and browsers on the allowed origins get CORS. Bearer auth, if any, was set
    when `server` was constructed (see `auth_options`). Serve the result with uvicorn; its
    lifespan runs the MCP session manager, so do not mount it elsewhere (see `mount_app`).
    """
    # BEGIN SOLUTION lesson-5: build the server's Streamable HTTP app at `path` with your
    #   host/origin allowlist and this body-size limit, stateless only when asked, JSON-only only
    #   when asked. Then guard its other routes with the same allowlist (GuardEveryRoute) and, when
    #   origins are allowed, add Starlette's CORSMiddleware with cors_options outside everything
    #   else, so a preflight is answered before the bearer check.
    security = security_settings(allowed_hosts, allowed_origins)
    app = server.streamable_http_app(
        streamable_http_path=path,
        transport_security=security,
        max_request_body_size=max_body_bytes,
        stateless_http=stateless,
        json_response=json_response,
    )
    app.add_middleware(GuardEveryRoute, security=security, mcp_path=path)
    if allowed_origins:
        app.add_middleware(CORSMiddleware, **cors_options(allowed_origins))
    return app
    # END SOLUTION


def mount_app(server: MCPServer, *, prefix: str, allowed_hosts: Sequence[str],
              allowed_origins: Sequence[str] = (), routes: Sequence[BaseRoute] = (),
              lifespan: HostLifespan | None = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Starlette:
    """A host Starlette app serving `routes`, with the MCP app mounted under `prefix`.

    The MCP endpoint is `<prefix>/mcp` (and the health route `<prefix>/health`). A mounted
    app's own lifespan never runs, so the host app's lifespan must run the host's `lifespan`
    (if given) *and* the MCP session manager, and stop both when the host stops.
    """
    # BEGIN SOLUTION lesson-5: build the MCP app with create_app (with these hosts, origins and body
    #   limit), mount it at `prefix` after `routes`, and give the host app a lifespan that runs the
    #   given lifespan (if any) and the MCP session manager for as long as the host runs.
    mcp_app = create_app(server, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins,
                         max_body_bytes=max_body_bytes)

    @asynccontextmanager
    async def host_lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if lifespan is not None:
                await stack.enter_async_context(lifespan(app))
            await stack.enter_async_context(server.session_manager.run())
            yield

    return Starlette(routes=[*routes, Mount(prefix, app=mcp_app)], lifespan=host_lifespan)
    # END SOLUTION


# --- Given: demo tools, a server, and helpers for notebooks and tests ------------------------


class ConnectionInfo(BaseModel):
    """What one request looks like from inside a tool."""

    protocol_version: str | None
    session_id: str | None        # Mcp-Session-Id: legacy sessions only
    client_id: str | None         # who the bearer token belongs to (None without auth)
    host: str | None              # the Host header the server accepted


async def connection_info(ctx: Context) -> ConnectionInfo:
    """Describe the HTTP request that carried this call: protocol era, session, caller, Host."""
    headers = ctx.headers or {}
    token = get_access_token()
    return ConnectionInfo(protocol_version=ctx.protocol_version, session_id=headers.get("mcp-session-id"),
                          client_id=token.client_id if token else None, host=headers.get("host"))


async def count_to(n: Annotated[int, Field(ge=1, le=50)], ctx: Context) -> int:
    """Count from 1 to n, reporting each step as progress (a stand-in for slow work)."""
    for step in range(1, n + 1):
        await anyio.sleep(0.02)
        await ctx.report_progress(step, total=n, message=f"step {step} of {n}")
    return n


def register(server: MCPServer) -> None:
    """Add this lesson's demo tools: `connection_info` and `count_to`."""
    read_only = ToolAnnotations(read_only_hint=True)
    server.tool(title="Connection info", annotations=read_only)(connection_info)
    server.tool(title="Count with progress", annotations=read_only)(count_to)


def create_server(*, token: str | None = None, resource_url: str | None = None, issuer_url: str | None = None,
                  name: str = "research-desk-http") -> MCPServer:
    """A small desk for this lesson: the demo tools, /health, and bearer auth when `token` is given."""
    options: dict[str, Any] = {}
    if token is not None:
        if not resource_url:
            raise ValueError("with a token, give resource_url (this endpoint's public URL)")
        options = auth_options(token, resource_url=resource_url, issuer_url=issuer_url)
    server = MCPServer(name, log_level="WARNING", **options)
    register(server)
    add_health_route(server)
    return server


class LocalServer:
    """uvicorn serving `app` on 127.0.0.1 in a background task of the running event loop.

    For notebooks and tests: `url = await srv.start()`, use it, then always `await srv.stop()`
    (or `async with LocalServer(app) as url:`). Port 0 picks a free port. An app can be
    served once: the MCP session manager refuses a second run, so build a fresh app to restart.
    """

    def __init__(self, app: ASGIApp, *, port: int = 0) -> None:
        self.app = app
        self.port = port
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Start serving and return the base URL (`http://127.0.0.1:<port>`)."""
        import uvicorn

        if self._task is not None:
            raise RuntimeError("this LocalServer is already running; stop() it first")
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task = None
                raise RuntimeError("the server did not start (its lifespan failed or the port is taken)")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        """Ask uvicorn to shut down (runs the app's lifespan exit) and wait until it has."""
        if self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(self._task, timeout=10)
        finally:
            self._task = None

    async def __aenter__(self) -> str:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


@asynccontextmanager
async def connect(url: str, *, token: str | None = None, host: str | None = None,
                  mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP `Client` for `url` that sends `Authorization: Bearer <token>` (and a `Host` header).

    `host` pretends the request came through a proxy under that public name, which is how a
    test on 127.0.0.1 reaches a server whose allowlist names its real domain.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host:
        headers["Host"] = host
    async with (httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http,
                Client(streamable_http_client(url, http_client=http), mode=mode) as client):
        yield client
