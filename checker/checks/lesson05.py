"""Lesson 5 checks: the desk served over Streamable HTTP, with production settings.

Every check deploys the student's app with a real uvicorn on a free loopback port and talks to
it the way a proxy would: with a public host name in `Host`, a bearer token and, where it
matters, a browser `Origin`. Names, tokens, limits and paths are random per run, so only an app
that really applies its configuration passes. Status codes are read from raw httpx2 requests,
because the MCP client reports every HTTP failure as the same "Server returned an error".
"""

from __future__ import annotations

import json
import random
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from checker.marks import check
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"

WHY = {
    401: "401 Unauthorized: the bearer check refused the request (is the token verifier accepting the right token?)",
    403: "403 Forbidden: the Origin allowlist refused the request",
    404: "404 Not Found: nothing is served at that path",
    413: "413: the body-size limit refused the request",
    421: "421 Misdirected Request: the Host allowlist refused the request (are the allowed host names applied?)",
    500: "500: the app crashed (in a mounted app this is usually the MCP session manager not running)",
}


def _why(status: int) -> str:
    return WHY.get(status, f"HTTP {status}")


# --- the small server every check deploys (built from here, with the lesson's given tools) ---------
#
# Its tools are transport.py's given `connection_info` (protocol era, session id and Host, as the
# transport showed them to the tool) and `count_to` (progress at every step). Its lifespans note
# their start and their end in the check's own list: see `_Lifespans`.


class Deployment:
    """One random production configuration and what happened to the server under it."""

    def __init__(self) -> None:
        self.host = f"desk-{secrets.token_hex(3)}.example"
        self.origin = f"https://app-{secrets.token_hex(3)}.example"
        self.other_host = f"mirror-{secrets.token_hex(3)}.example"      # a second public name, where one is asked for
        self.other_origin = f"https://admin-{secrets.token_hex(3)}.example"
        self.token = secrets.token_urlsafe(24)
        self.issuer = f"https://auth-{secrets.token_hex(3)}.example"
        self.name = f"desk-{secrets.token_hex(3)}"
        self.events: list[str] = []  # noted here as they happen: lifespan start / stop, host-start / host-stop

    @property
    def resource(self) -> str:
        return f"https://{self.host}/mcp"

    def headers(self, *, token: str | None = None, host: str | None = None, **extra: str) -> dict[str, str]:
        out = {"Host": host or self.host, "Accept": ACCEPT, "Content-Type": "application/json"}
        if token is None:
            token = self.token
        if token:
            out["Authorization"] = f"Bearer {token}"
        out.update(extra)
        return out


class _Lifespans:
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


async def _server(target: Target, dep: Deployment, *, auth: bool = False, health: bool | str = False) -> Any:
    """A small server with a noting lifespan, the two given tools and, if asked, bearer auth and the health
    route (`health` may name its path)."""
    transport = target.module("transport")
    options: Any = {}
    if auth:
        options = transport.auth_options(dep.token, resource_url=dep.resource, issuer_url=dep.issuer)
        assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
    lifespan = _Lifespans(target, dep.events).noting("start", "stop", entered={})  # the server's state: none
    server = target.library("mcp.server.mcpserver").MCPServer(dep.name, log_level="WARNING", lifespan=lifespan,
                                                             **options)
    server.tool()(target.attr("transport", "connection_info"))
    server.tool()(target.attr("transport", "count_to"))
    if health is True:
        transport.add_health_route(server)
    elif health:
        transport.add_health_route(server, path=health)
    return server


async def _app(target: Target, dep: Deployment, *, auth: bool = False, health: bool | str = False,
               **kwargs: Any) -> Any:
    create_app = target.attr("transport", "create_app")
    options = {"allowed_hosts": [dep.host], "allowed_origins": [dep.origin], **kwargs}
    return create_app(await _server(target, dep, auth=auth, health=health), **options)


# --- raw HTTP ------------------------------------------------------------------------------


def _modern(method: str, params: dict[str, Any] | None = None, *, id: int = 1, **meta: Any) -> dict[str, Any]:
    body_meta = {"io.modelcontextprotocol/protocolVersion": MODERN,
                 "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
                 "io.modelcontextprotocol/clientCapabilities": {}, **meta}
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": {**(params or {}), "_meta": body_meta}}


def _modern_headers(dep: Deployment, method: str, name: str | None = None, **kw: Any) -> dict[str, str]:
    extra = {"MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name:
        extra["Mcp-Name"] = name
    return dep.headers(**kw, **extra)


async def _discover(http: httpx2.AsyncClient, url: str, dep: Deployment, **kw: Any) -> httpx2.Response:
    """One modern `server/discover` POST (headers overridable: token=, host=, Origin=...)."""
    return await http.post(url, json=_modern("server/discover"), headers=_modern_headers(dep, "server/discover", **kw))


def _sse(text: str) -> list[dict[str, Any]]:
    """The JSON-RPC messages in an SSE body (events without data, such as pings, are skipped)."""
    messages = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
        if data.strip():
            messages.append(json.loads(data))
    return messages


def _messages(response: httpx2.Response) -> list[dict[str, Any]]:
    kind = response.headers.get("content-type", "")
    return _sse(response.text) if kind.startswith("text/event-stream") else [response.json()]


async def _require_reachable(http: httpx2.AsyncClient, url: str, dep: Deployment, what: str) -> None:
    """Fail with the real status code before an MCP client hides it."""
    response = await _discover(http, url, dep)
    assert response.status_code == 200, (
        f"{what}: a modern POST with an allowed Host ({dep.host}) and the right token got {_why(response.status_code)}")


@asynccontextmanager
async def _raw() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as http:
        yield http


@asynccontextmanager
async def _client(url: str, dep: Deployment, mode: str) -> AsyncIterator[Any]:
    from mcp import Client

    headers = {"Host": dep.host, "Authorization": f"Bearer {dep.token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=10) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client


async def _whoami(client: Any) -> dict[str, Any]:
    """What the given connection_info tool was told of this request: protocol era, session id, Host."""
    result = await client.call_tool("connection_info", {})
    assert not result.is_error, (
        f"the connection_info tool failed over HTTP: {result.content[0].text if result.content else ''}")
    info = dict(result.structured_content or {})
    return {"protocol": info.get("protocol_version"), "session": info.get("session_id"), "host": info.get("host")}


# --- checks ---------------------------------------------------------------------------------


@check("modern and legacy clients both work through create_app", points=2,
       hint="create_app returns server.streamable_http_app(...) configured for production. Both eras share "
            "one endpoint; a modern client never gets an Mcp-Session-Id, a legacy one does.")
async def test_both_eras_served(target: Target) -> None:
    dep = Deployment()
    async with _raw() as http, target.http(await _app(target, dep)) as url:
        await _require_reachable(http, url, dep, "create_app")
        seen = {}
        for mode in ("auto", "legacy"):
            async with _client(url, dep, mode) as client:
                seen[mode] = (client.protocol_version, await _whoami(client))
    (modern_version, modern), (legacy_version, legacy) = seen["auto"], seen["legacy"]
    assert modern_version == MODERN and modern["protocol"] == MODERN, (
        f"a default client should speak {MODERN}, got {modern_version}")
    assert legacy_version == LEGACY and legacy["protocol"] == LEGACY, (
        f"a mode='legacy' client should speak {LEGACY}, got {legacy_version}")
    assert modern["session"] is None, "a modern request carried an Mcp-Session-Id: 2026-07-28 has no sessions"
    assert legacy["session"], ("the legacy client got no Mcp-Session-Id: legacy clients need sessions "
                               "(did you make the app stateless?)")
    assert modern["host"] == dep.host == legacy["host"], "the tool did not see the Host header the proxy sent"


@check("progress streams as SSE; a plain answer is one JSON body", points=2,
       hint="Leave response streaming on: a tools/call that reports progress must answer text/event-stream "
            "with one notifications/progress event per step before the result. json_response=True drops them.")
async def test_progress_streams_over_sse(target: Target) -> None:
    dep = Deployment()
    n = random.randint(3, 6)
    call = {"name": "count_to", "arguments": {"n": n}}
    token = random.randint(1000, 9999)
    async with _raw() as http, target.http(await _app(target, dep)) as url:
        await _require_reachable(http, url, dep, "create_app")
        discover = await _discover(http, url, dep)
        streamed = await http.post(url, json=_modern("tools/call", call, id=2, progressToken=token),
                                   headers=_modern_headers(dep, "tools/call", "count_to"))
        plain = await http.post(url, json=_modern("tools/call", call, id=3),
                                headers=_modern_headers(dep, "tools/call", "count_to"))
        got: dict[str, list[float]] = {}
        for mode in ("auto", "legacy"):
            steps: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None,
                                  steps: list[float] = steps) -> None:
                steps.append(progress)

            async with _client(url, dep, mode) as client:
                result = await client.call_tool("count_to", {"n": n}, progress_callback=on_progress)
                assert not result.is_error, f"count_to failed over HTTP ({mode})"
            got[mode] = steps
    assert discover.headers.get("content-type", "").startswith("application/json"), (
        "a modern server/discover should be answered with one JSON body")
    assert "mcp-session-id" not in discover.headers, "a modern response carried Mcp-Session-Id: 2026-07-28 has no sessions"
    assert streamed.status_code == 200, f"tools/call with a progressToken got {_why(streamed.status_code)}"
    kind = streamed.headers.get("content-type", "")
    assert kind.startswith("text/event-stream"), (
        f"a tools/call that reports progress was answered {kind!r}, not text/event-stream: the progress "
        "notifications had nowhere to go (is json_response on?)")
    messages = _messages(streamed)
    progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
    assert progress == list(range(1, n + 1)), f"expected progress 1..{n} on the stream, got {progress}"
    assert all(m["params"]["progressToken"] == token for m in messages if m.get("method") == "notifications/progress"), (
        "progress events must echo the client's progressToken")
    assert messages[-1].get("id") == 2 and "result" in messages[-1], "the stream must end with the tools/call result"
    assert plain.headers.get("content-type", "").startswith("application/json"), (
        "without a progressToken nothing streams, so the answer should be plain JSON")
    for mode, steps in got.items():
        assert [int(s) for s in steps] == list(range(1, n + 1)), (
            f"a {mode} client's progress_callback saw {steps}, expected 1..{n}")


@check("a legacy session: initialize, GET stream, DELETE", points=2,
       hint="Legacy (2025) clients open a session: initialize returns Mcp-Session-Id, GET opens the "
            "server's stream, DELETE ends the session. Keep the app stateful (stateless is lesson 6's choice).")
async def test_legacy_session_lifecycle(target: Target) -> None:
    dep = Deployment()
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {},
                       "clientInfo": {"name": "course-check", "version": "1.0"}}}
    async with _raw() as http, target.http(await _app(target, dep)) as url:
        await _require_reachable(http, url, dep, "create_app")
        opened = await http.post(url, json=init, headers=dep.headers())
        assert opened.status_code == 200, f"a legacy initialize got {_why(opened.status_code)}"
        session = opened.headers.get("mcp-session-id")
        assert session, "initialize was answered without an Mcp-Session-Id header: the app runs stateless"
        reply = _messages(opened)[-1]
        assert reply.get("result", {}).get("protocolVersion") == LEGACY, f"initialize did not negotiate {LEGACY}"
        in_session = dep.headers(**{"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY})
        ready = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                                headers=in_session)
        assert ready.status_code == 202, f"notifications/initialized should be accepted with 202, got {ready.status_code}"
        async with http.stream("GET", url, headers=in_session) as stream:
            assert stream.status_code == 200, f"GET with the session id got {_why(stream.status_code)}"
            assert stream.headers.get("content-type", "").startswith("text/event-stream"), (
                "the GET stream of a legacy session should be text/event-stream")
        listed = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=in_session)
        assert listed.status_code == 200, f"tools/list inside the session got {_why(listed.status_code)}"
        names = {t["name"] for t in _messages(listed)[-1]["result"]["tools"]}
        assert {"connection_info", "count_to"} <= names, f"tools/list inside the session returned {sorted(names)}"
        closed = await http.delete(url, headers=in_session)
        assert closed.status_code == 200, f"DELETE of the session got {closed.status_code}"
        after = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=in_session)
    assert after.status_code == 404, f"after DELETE the session should be gone (404), got {after.status_code}"


@check("a bad Host gets 421 and a bad Origin 403; allowed ones pass", points=3,
       hint="Pass TransportSecuritySettings with protection on. A Host header carries the port unless it is "
            "the default, so allow each name both bare and with a port pattern; list the allowed origins exactly.")
async def test_host_and_origin_allowlist(target: Target) -> None:
    dep = Deployment()
    evil = f"evil-{secrets.token_hex(3)}.example"
    port = random.choice([8443, 9000, random.randint(10_000, 60_000)])
    app = await _app(target, dep, allowed_hosts=[dep.host, dep.other_host], allowed_origins=[dep.origin, dep.other_origin])
    async with _raw() as http, target.http(app) as url:
        bare = await _discover(http, url, dep)
        with_port = await _discover(http, url, dep, host=f"{dep.host}:{port}")
        second = {h: await _discover(http, url, dep, host=h) for h in (dep.other_host, f"{dep.other_host}:{port}")}
        second_origin = await _discover(http, url, dep, Origin=dep.other_origin)
        bad_hosts = {h: await _discover(http, url, dep, host=h)
                     for h in (evil, f"{evil}:{port}", f"{dep.host}.{evil}", f"x{dep.host}")}
        good_origin = await _discover(http, url, dep, Origin=dep.origin)
        bad_origin = await _discover(http, url, dep, Origin=f"https://{evil}")
    assert bare.status_code == 200, f"Host: {dep.host} is allowed, but got {_why(bare.status_code)}"
    assert with_port.status_code == 200, (
        f"Host: {dep.host}:{port} (the allowed name on a non-default port) got {_why(with_port.status_code)}")
    for host, response in second.items():
        assert response.status_code == 200, (
            f"Host: {host} names the second allowed host, but got {_why(response.status_code)}: apply every name in "
            "allowed_hosts, not only the first")
    assert second_origin.status_code == 200, (
        f"the second allowed Origin {dep.other_origin} got {_why(second_origin.status_code)}: allow every given origin")
    for host, response in bad_hosts.items():
        assert response.status_code == 421, (
            f"Host: {host} is not an allowed name but got {response.status_code}, expected 421: "
            "DNS-rebinding protection is off or too loose")
    assert good_origin.status_code == 200, f"the allowed Origin {dep.origin} got {_why(good_origin.status_code)}"
    assert bad_origin.status_code == 403, (
        f"a request from Origin https://{evil} got {bad_origin.status_code}, expected 403: origins are not restricted")


@check("the MCP endpoint needs the right bearer token (401 otherwise)", points=3,
       hint="Give MCPServer a token_verifier (verify_token returns an AccessToken or None, never raises) and "
            "auth=AuthSettings(...) naming the issuer and this resource. Compare tokens whole and in constant time, "
            "as bytes: hmac.compare_digest refuses str with characters outside ASCII, and a header can carry them.")
async def test_bearer_token_required(target: Target) -> None:
    dep = Deployment()
    wrong = {"no token": "", "a random token": secrets.token_urlsafe(24), "the token minus its last character":
             dep.token[:-1], "the token plus one character": dep.token + "x", "the token in upper case": dep.token.upper()}
    accented = {"the token plus é": dep.token + "é", "the token with its last character replaced by ü":
                dep.token[:-1] + "ü", "a token of accented letters": "éüßçñøπ✓"}
    verifier = target.module("transport").StaticTokenVerifier(dep.token, resource=dep.resource)
    for what, tok in accented.items():
        try:
            verdict = await verifier.verify_token(tok)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exception is the finding
            pytest.fail(f"verify_token({tok!r}) ({what}) raised {type(exc).__name__}: {exc}. A token that is not the "
                        "configured one is answered with None, whatever its characters; compare bytes")
        assert verdict is None, f"verify_token({tok!r}) ({what}) accepted a token that is not the configured one"
    async with _raw() as http, target.http(await _app(target, dep, auth=True)) as url:
        refused: dict[str, httpx2.Response] = {}
        for what, tok in wrong.items():
            if tok != dep.token:
                async with _raw() as fresh:  # its own connection: after a crash (500) the server closes the one it used
                    refused[what] = await _discover(fresh, url, dep, token=tok)
        for what, tok in accented.items():
            headers: dict[str, Any] = _modern_headers(dep, "server/discover", token="")
            headers["Authorization"] = b"Bearer " + tok.encode("utf-8")      # as a client would send it: UTF-8 bytes
            async with _raw() as fresh:
                refused[what] = await fresh.post(url, json=_modern("server/discover"), headers=headers)
        right = await _discover(http, url, dep)
        metadata_url = ""
        if (challenge := refused["no token"].headers.get("www-authenticate", "")) and "resource_metadata=" in challenge:
            metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        path = metadata_url.split(dep.host, 1)[-1] if metadata_url else ""
        metadata = await http.get(url.rsplit("/mcp", 1)[0] + path, headers={"Host": dep.host}) if path else None
        if right.status_code == 200:
            for mode in ("auto", "legacy"):
                async with _client(url, dep, mode) as client:
                    await _whoami(client)
    for what, response in refused.items():
        assert response.status_code != 500, (
            f"{what} crashed the server (500): verify_token must return None for a bad token, not raise")
        assert response.status_code == 401, f"a request with {what} got {_why(response.status_code)}, expected 401"
    challenge = refused["no token"].headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), "a 401 should carry a WWW-Authenticate: Bearer ... header"
    assert right.status_code == 200, f"the right token got {_why(right.status_code)}"
    assert metadata is not None, (
        "the 401 does not point to resource metadata (resource_metadata=...): give AuthSettings the resource URL")
    assert metadata.status_code == 200 and metadata.json().get("resource") == dep.resource, (
        f"the protected-resource metadata should name this endpoint {dep.resource}")
    assert dep.issuer in " ".join(metadata.json().get("authorization_servers", [])), (
        f"the protected-resource metadata should name the issuer {dep.issuer}")


@check("/health answers 200 without a token while /mcp stays protected", points=2,
       hint="Register the probe with @server.custom_route at the path you are given (default /health): the SDK "
            "leaves custom routes outside the bearer check. Answer JSON with status ok and the server's name. A "
            "probe sends no token (give it an allowed Host).")
async def test_health_is_public(target: Target) -> None:
    dep = Deployment()
    elsewhere = f"/ready-{secrets.token_hex(2)}"
    async with _raw() as http, target.http(await _app(target, dep, auth=True, health=True)) as url:
        base = url.rsplit("/mcp", 1)[0]
        probe = await http.get(f"{base}/health", headers={"Host": dep.host})   # no token
        with_token = await http.get(f"{base}/health", headers=dep.headers())
        mcp_without = await _discover(http, url, dep, token="")
    async with _raw() as http, target.http(await _app(target, dep, health=elsewhere)) as url:
        base = url.rsplit("/mcp", 1)[0]
        moved = await http.get(f"{base}{elsewhere}", headers={"Host": dep.host})
    assert probe.status_code == 200, f"GET /health without a token got {_why(probe.status_code)}"
    try:
        body = probe.json()
    except ValueError:
        pytest.fail(f"/health should answer JSON, got {probe.text[:80]!r}")
    want = {"status": "ok", "server": dep.name}
    assert body == want, f"/health should answer {want} (the server's own name), got {body}"
    assert moved.status_code == 200 and moved.headers.get("content-type", "").startswith("application/json") \
        and moved.json() == want, (
        f"add_health_route(server, path={elsewhere!r}) should answer GET {elsewhere} with {want}, got "
        f"{_why(moved.status_code)} {moved.text[:80]!r}: register the route at the path you are given")
    assert with_token.status_code == 200, "/health should also answer a caller that sends a token"
    assert mcp_without.status_code == 401, (
        f"/mcp without a token got {mcp_without.status_code}: the health route is public, the MCP endpoint must not be")


@check("every route obeys the Host allowlist, and allowed origins get CORS (preflight without a token)", points=3,
       hint="The SDK checks Host and Origin on the MCP endpoint only: guard the other routes too (GuardEveryRoute), so "
            "/health answers a foreign Host with 421. A browser asks first with an OPTIONS preflight that carries no "
            "token: add Starlette's CORSMiddleware for the allowed origins (cors_options) outside the bearer check.")
async def test_every_route_guarded_and_cors(target: Target) -> None:
    dep = Deployment()
    evil_host, evil_origin = f"evil-{secrets.token_hex(3)}.example", f"https://evil-{secrets.token_hex(3)}.example"
    transport = target.module("transport")
    server = transport.create_server(token=dep.token, resource_url=dep.resource)
    app = target.attr("transport", "create_app")(server, allowed_hosts=[dep.host], allowed_origins=[dep.origin])
    wanted = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name"
    async with _raw() as http, target.http(app) as url:
        base = url.rsplit("/mcp", 1)[0]
        health = {host: await http.get(f"{base}/health", headers={"Host": host}) for host in (dep.host, evil_host)}
        preflight = await http.options(url, headers={"Host": dep.host, "Origin": dep.origin, "Access-Control-Request-"
                                                     "Method": "POST", "Access-Control-Request-Headers": wanted})
        foreign = await http.options(url, headers={"Host": dep.host, "Origin": evil_origin,
                                                   "Access-Control-Request-Method": "POST"})
        call = await _discover(http, url, dep, Origin=dep.origin)
    assert health[dep.host].status_code == 200, f"/health with an allowed Host got {_why(health[dep.host].status_code)}"
    assert health[evil_host].status_code == 421, (
        f"/health answered Host: {evil_host} with {health[evil_host].status_code}, expected 421: the allowlist must "
        "guard every route, or a DNS-rebinding page can still probe the server")
    assert preflight.status_code in (200, 204), (
        f"the browser's preflight from the allowed origin {dep.origin} got {_why(preflight.status_code)}: a preflight "
        "never carries the token, so CORS must answer it before the bearer check")
    assert preflight.headers.get("access-control-allow-origin") == dep.origin, (
        f"the preflight answer does not allow {dep.origin} (Access-Control-Allow-Origin: "
        f"{preflight.headers.get('access-control-allow-origin')!r})")
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    missing = [h.strip() for h in wanted.split(",") if h.strip() not in allowed and allowed != "*"]
    assert not missing, f"the preflight does not allow the request headers {missing} that MCP clients send"
    assert "access-control-allow-origin" not in foreign.headers, (
        f"CORS allowed {evil_origin}, which is not an allowed origin: allow exactly the configured ones")
    assert call.status_code == 200 and call.headers.get("access-control-allow-origin") == dep.origin, (
        f"a call from the allowed origin got {_why(call.status_code)} without Access-Control-Allow-Origin: the "
        "browser would hide the answer from the page")
    exposed = call.headers.get("access-control-expose-headers", "").lower()
    assert "mcp-session-id" in exposed, "browsers must be able to read Mcp-Session-Id (expose it)"


@check("a static token publishes no authorization server; a real issuer is named", points=2,
       hint="Protected-resource metadata tells clients which OAuth server issues tokens. A static key has none: "
            "without an issuer_url publish no metadata (no resource_server_url in AuthSettings), so no client is "
            "sent to a server that answers 404. With one, name it and check each token's resource.")
async def test_static_token_names_no_issuer(target: Target) -> None:
    dep = Deployment()
    transport = target.module("transport")
    server = transport.create_server(token=dep.token, resource_url=dep.resource)
    app = target.attr("transport", "create_app")(server, allowed_hosts=[dep.host])
    async with _raw() as http, target.http(app) as url:
        base = url.rsplit("/mcp", 1)[0]
        refused = await _discover(http, url, dep, token="")
        accepted = await _discover(http, url, dep)
        metadata = await http.get(f"{base}/.well-known/oauth-protected-resource/mcp", headers={"Host": dep.host})
    assert refused.status_code == 401 and accepted.status_code == 200, (
        f"auth_options without an issuer must still require the token: no token got {_why(refused.status_code)}, "
        f"the token got {_why(accepted.status_code)}")
    challenge = refused.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer") and "resource_metadata" not in challenge, (
        f"the 401 answer points clients to metadata ({challenge[:160]!r}) although no authorization server exists")
    assert metadata.status_code == 404, (
        f"with a static token and no issuer the server published {metadata.text[:160]!r}: it names an "
        "authorization server that does not exist, so a client's OAuth flow can only fail")


@check("tools see who holds the token, never the token; a token for another resource is refused", points=2,
       hint="verify_token describes the caller: the AccessToken carries the verifier's client_id (who the token "
            "belongs to, which tools read), the verifier's resource (the endpoint the token is for) and no scopes; "
            "never the secret itself as an id. With an issuer, auth_options has the SDK check that resource "
            "against this server's URL (validate_token_resource).")
async def test_token_names_its_holder(target: Target) -> None:
    dep = Deployment()
    holder = f"operator-{secrets.token_hex(3)}"
    elsewhere = f"https://other-{secrets.token_hex(3)}.example/mcp"
    transport = target.module("transport")
    access = await transport.StaticTokenVerifier(dep.token, resource=dep.resource, client_id=holder).verify_token(dep.token)
    assert access is not None, "verify_token(<the configured token>) answered None: the right token must be accepted"
    assert (access.client_id, access.resource, list(access.scopes)) == (holder, dep.resource, []), (
        f"StaticTokenVerifier(token, resource={dep.resource!r}, client_id={holder!r}).verify_token(token) described "
        f"the caller as client_id={access.client_id!r}, resource={access.resource!r}, scopes={list(access.scopes)}; "
        f"expected {holder!r}, {dep.resource!r}, []: the token belongs to the verifier's client, for its resource")

    async def app(resource: str) -> Any:
        options = transport.auth_options(dep.token, resource_url=dep.resource, issuer_url=dep.issuer)
        assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
        options["token_verifier"] = transport.StaticTokenVerifier(dep.token, resource=resource, client_id=holder)
        server = target.library("mcp.server.mcpserver").MCPServer(dep.name, log_level="WARNING", **options)
        server.tool()(target.attr("transport", "connection_info"))
        return target.attr("transport", "create_app")(server, allowed_hosts=[dep.host])

    seen: dict[str, Any] = {}
    async with _raw() as http, target.http(await app(dep.resource), graceful=False) as url:
        await _require_reachable(http, url, dep, "create_app with auth_options")
        for mode in ("auto", "legacy"):
            async with _client(url, dep, mode) as client:
                result = await client.call_tool("connection_info", {})
                seen[mode] = (result.is_error, dict(result.structured_content or {}), _text_of(result))
    async with _raw() as http, target.http(await app(elsewhere), graceful=False) as url:
        foreign = await _discover(http, url, dep)
    for mode, (failed, info, text) in seen.items():
        assert not failed, f"[{mode}] connection_info failed over HTTP: {text[:150]}"
        assert dep.token not in text and dep.token not in json.dumps(info), (
            f"[{mode}] the bearer token itself reached a tool result ({info}): a tool's output goes to the model and "
            "its logs; name the caller by the verifier's client_id, never by the secret")
        assert info.get("client_id") == holder, (
            f"[{mode}] the tool saw the caller as {info.get('client_id')!r}, expected {holder!r} (the verifier's client_id)")
    assert foreign.status_code == 401, (
        f"the server at {dep.resource} accepted a token its verifier issued for {elsewhere} (got {_why(foreign.status_code)}, "
        "expected 401): with an issuer, auth_options must have the SDK check each token's resource")


def _text_of(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content or [])


def _padded(size: int) -> bytes:
    """A modern server/discover body of exactly `size` bytes, padded with two-byte characters (é) in UTF-8, so a
    limit counted in characters would let it through."""
    body = _modern("server/discover", **{"x-padding": ""})
    room = size - len(json.dumps(body, ensure_ascii=False).encode())
    body["params"]["_meta"]["x-padding"] = "é" * (room // 2) + "p" * (room % 2)
    data = json.dumps(body, ensure_ascii=False).encode()
    assert len(data) == size, (len(data), size)
    return data


@check("request bodies above max_body_bytes get 413, a body of exactly that size passes", points=2,
       hint="The SDK can refuse oversized bodies before parsing them: pass the limit through when you build "
            "the Streamable HTTP app. The limit is in bytes, and a body of exactly max_body_bytes is allowed.")
async def test_body_size_limit(target: Target) -> None:
    dep = Deployment()
    limit = random.randint(3_000, 12_000)
    async with _raw() as http, target.http(await _app(target, dep, max_body_bytes=limit)) as url:
        headers = _modern_headers(dep, "server/discover")
        exact = await http.post(url, content=_padded(limit), headers=headers)
        over = await http.post(url, content=_padded(limit + 1), headers=headers)
        big = await http.post(url, content=_padded(limit + 200), headers=headers)
    assert exact.status_code == 200, (
        f"a body of exactly {limit} bytes (max_body_bytes={limit}) got {_why(exact.status_code)}: only a body larger "
        "than the limit is refused")
    for response, size in ((over, limit + 1), (big, limit + 200)):
        assert response.status_code == 413, (
            f"a body of {size} bytes (over the limit {limit}; fewer characters, since é is two bytes) got "
            f"{response.status_code}, expected 413: max_body_bytes is not applied, or not in bytes")


@check("create_app serves the path it is given, and turns sessions or streaming off only when asked", points=2,
       hint="Every argument of create_app reaches streamable_http_app: `path` is where the endpoint lives, "
            "`stateless=True` gives legacy clients no session (no Mcp-Session-Id), `json_response=True` answers "
            "every call with one JSON body, even one that reports progress.")
async def test_create_app_options(target: Target) -> None:
    dep = Deployment()
    path = f"/api-{secrets.token_hex(2)}/rpc"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "course-check", "version": "1"}}}
    call = {"name": "count_to", "arguments": {"n": 3}}
    app = await _app(target, dep, path=path, stateless=True, json_response=True)
    async with _raw() as http, target.http(app, path=path, graceful=False) as url:
        base = url.rsplit(path, 1)[0]
        moved = await _discover(http, url, dep)
        default = await _discover(http, f"{base}/mcp", dep)
        opened = await http.post(url, json=init, headers=dep.headers())
        progress = await http.post(url, json=_modern("tools/call", call, id=2, progressToken=7),
                                   headers=_modern_headers(dep, "tools/call", "count_to"))
    assert moved.status_code == 200, (
        f"create_app(..., path={path!r}): a POST to {path} got {_why(moved.status_code)}: serve the endpoint at `path`")
    assert default.status_code == 404, f"with path={path!r}, /mcp should not be an MCP endpoint, got {default.status_code}"
    assert opened.status_code == 200, f"a legacy initialize got {_why(opened.status_code)}"
    assert "mcp-session-id" not in opened.headers, (
        f"create_app(..., stateless=True): a legacy initialize still got Mcp-Session-Id "
        f"{opened.headers.get('mcp-session-id')!r}; stateless serving opens no session")
    kind = progress.headers.get("content-type", "")
    assert progress.status_code == 200 and kind.startswith("application/json"), (
        f"create_app(..., json_response=True): a tools/call with a progressToken was answered {kind!r} "
        f"({_why(progress.status_code)}), expected one application/json body")


async def _host_app(target: Target, dep: Deployment, prefix: str, page: str, secret: str) -> Any:
    """mount_app with a host app's own route (answering `secret`) and its own noting lifespan."""
    mount_app = target.attr("transport", "mount_app")
    server = await _server(target, dep)
    # A Starlette response is itself an ASGI app: as a route's endpoint it answers every request with `secret`.
    page_route = target.library("starlette.routing").Route(page, target.library("starlette.responses")
                                                           .PlainTextResponse(secret))
    host_lifespan = _Lifespans(target, dep.events).noting("host-start", "host-stop")  # yields no state
    return mount_app(server, prefix=prefix, allowed_hosts=[dep.host], allowed_origins=[dep.origin],
                     routes=[page_route], lifespan=host_lifespan)


@check("mounted in a host app, the MCP endpoint works (session manager in the host lifespan)", points=3,
       hint="A mounted app's own lifespan never runs. The host app's lifespan must run its own setup and "
            "`async with server.session_manager.run():` around its yield, or every MCP request fails.")
async def test_mounted_app_works(target: Target) -> None:
    dep = Deployment()
    prefix, page, secret = f"/api-{secrets.token_hex(2)}", f"/page-{secrets.token_hex(2)}", secrets.token_hex(8)
    app = await _host_app(target, dep, prefix, page, secret)
    async with _raw() as http, target.http(app, path=f"{prefix}/mcp") as url:
        base = url.rsplit(prefix, 1)[0]
        started = list(dep.events)
        own = await http.get(base + page)
        probe = await _discover(http, url, dep)
        assert probe.status_code == 200, f"POST {prefix}/mcp got {_why(probe.status_code)}"
        for mode in ("auto", "legacy"):
            async with _client(url, dep, mode) as client:
                info = await _whoami(client)
                assert info["protocol"] == (MODERN if mode == "auto" else LEGACY), (
                    f"a {mode} client through the mounted app negotiated {info['protocol']}")
    assert own.status_code == 200 and own.text == secret, f"the host app's own route {page} is not served any more"
    assert "host-start" in started, "the host app's own lifespan did not run: enter it in the combined lifespan"
    assert started.count("start") == 1, (
        f"the MCP server's lifespan should start once when the host starts; it started {started.count('start')} times")


@check("mount_app without a host lifespan or routes still serves MCP, and applies its allowlist and body limit",
       points=2,
       hint="`lifespan` and `routes` are optional: with none, the host app must still run the MCP session manager. "
            "Everything create_app offers applies under the prefix too: the health route, the allowed hosts and "
            "origins (CORS included), and the max_body_bytes you were given.")
async def test_mount_app_options(target: Target) -> None:
    dep = Deployment()
    prefix, limit = f"/svc-{secrets.token_hex(2)}", random.randint(3_000, 12_000)
    server = await _server(target, dep, health=True)
    mount_app = target.attr("transport", "mount_app")
    app = mount_app(server, prefix=prefix, allowed_hosts=[dep.host], allowed_origins=[dep.origin], max_body_bytes=limit)
    async with _raw() as http, target.http(app, path=f"{prefix}/mcp", graceful=False) as url:
        base = url.rsplit(prefix, 1)[0]
        health = await http.get(f"{base}{prefix}/health", headers={"Host": dep.host})
        exact = await http.post(url, content=_padded(limit), headers=_modern_headers(dep, "server/discover"))
        over = await http.post(url, content=_padded(limit + 1), headers=_modern_headers(dep, "server/discover"))
        browser = await _discover(http, url, dep, Origin=dep.origin)
        foreign = await _discover(http, url, dep, Origin=f"https://evil-{secrets.token_hex(2)}.example")
        stranger = await _discover(http, url, dep, host=f"evil-{secrets.token_hex(2)}.example")
        seen = {}
        if exact.status_code == 200:
            for mode in ("auto", "legacy"):
                async with _client(url, dep, mode) as client:
                    seen[mode] = (await _whoami(client))["protocol"]
    assert health.status_code == 200 and health.json() == {"status": "ok", "server": dep.name}, (
        f"GET {prefix}/health got {_why(health.status_code)} {health.text[:80]!r}")
    assert exact.status_code == 200, (
        f"a {limit}-byte POST to {prefix}/mcp (max_body_bytes={limit}) got {_why(exact.status_code)}"
        + (": is the session manager running when no host lifespan is given?" if exact.status_code == 500 else ""))
    assert over.status_code == 413, (
        f"a {limit + 1}-byte POST to {prefix}/mcp (over max_body_bytes={limit}) got {over.status_code}, expected 413: "
        "the mounted app does not apply the limit mount_app was given")
    assert browser.status_code == 200 and browser.headers.get("access-control-allow-origin") == dep.origin, (
        f"a call from the allowed origin {dep.origin} through the mounted app got {_why(browser.status_code)} "
        f"(Access-Control-Allow-Origin: {browser.headers.get('access-control-allow-origin')!r}): pass allowed_origins on")
    assert foreign.status_code == 403, f"a foreign Origin through the mounted app got {foreign.status_code}, expected 403"
    assert stranger.status_code == 421, f"a foreign Host through the mounted app got {stranger.status_code}, expected 421"
    assert seen == {"auto": MODERN, "legacy": LEGACY}, f"clients of both eras through the mounted app saw {seen}"


APP_STOPPED = "app-stopped"  # noted when the served app reports its ASGI lifespan shut down


def _noting_shutdown(target: Target, app: Any, events: list[str]) -> Any:
    """`app` as it is, except that `events` notes the moment its lifespan has shut down, so the check
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
            return partial(app, scope)

        async def lifespan(receive: Any, send: Any) -> None:
            def sending(message: Any) -> Any:
                if str(message.get("type", "")).startswith("lifespan.shutdown."):
                    events.append(APP_STOPPED)
                return send(message)

            await app(scope, receive, target.expose(sending))

        return target.expose(lifespan)

    return partial(target.expose(instance))  # made where student code runs, so that is where it is served


@check("the server stops cleanly: lifespans exit and the port is released", points=2,
       hint="Use `async with` for the session manager in the host lifespan (not a bare __aenter__), so shutdown "
            "exits it: the MCP server's cleanup must run and uvicorn must be able to finish.")
async def test_clean_shutdown(target: Target) -> None:
    dep = Deployment()
    prefix = f"/mcp-{secrets.token_hex(2)}"
    app = _noting_shutdown(target, await _host_app(target, dep, prefix, "/", "home"), dep.events)
    port, while_running = 0, []
    try:
        async with _raw() as http, target.http(app, path=f"{prefix}/mcp") as url:
            port = int(url.split(":")[2].split("/")[0])
            await _require_reachable(http, url, dep, "mount_app")
            async with _client(url, dep, "legacy") as client:
                await _whoami(client)
            while_running = list(dep.events)
    except BaseException as exc:  # noqa: BLE001 - a crash during shutdown is the finding
        leaf = leaf_exception(exc)
        if isinstance(leaf, (AssertionError, pytest.fail.Exception)):
            raise leaf from None
        if not while_running:
            raise
        pytest.fail(f"the server crashed while shutting down ({type(leaf).__name__}: {leaf}): something the "
                    "host lifespan entered was not exited by the same `async with`")
    events = list(dep.events)
    stopped = events[:events.index(APP_STOPPED)] if APP_STOPPED in events else events  # as the host app stopped
    assert while_running.count("start") == 1, "the MCP server's lifespan did not start with the host app"
    assert stopped.count("stop") == 1, (
        "after the host app stopped, the MCP server's lifespan never finished: its cleanup did not run")
    assert "host-stop" in stopped, "the host app's own lifespan never finished"
    with socket.socket() as sock:
        sock.settimeout(1)
        refused = sock.connect_ex(("127.0.0.1", port)) != 0
    assert refused, f"port {port} still accepts connections after the server stopped"
