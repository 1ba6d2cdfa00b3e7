"""Lesson 5 checks: the desk served over Streamable HTTP, with production settings.

Every check deploys the student's app with a real uvicorn on a free loopback port and talks to
it the way a proxy would: with a public host name in `Host`, a bearer token and, where it
matters, a browser `Origin`. Names, tokens, limits and paths are random per run, so only an app
that really applies its configuration passes. Status codes are read from raw httpx2 requests,
because the MCP client reports every HTTP failure as the same "Server returned an error".
The deployments and the raw HTTP live in support/lesson05.py. This file: serving both eras,
streaming, sessions, the app's options and mounting it in a host app; lesson05_security.py: who
may reach the endpoint (allowlists, the bearer token, the health probe, CORS).
"""

from __future__ import annotations

import functools
import random
import secrets
from typing import Any

import anyio
import pytest

from checker.checks.kit.eras import LEGACY, MODERN, MODES
from checker.checks.kit.processes import port_open
from checker.checks.support.lesson05 import (
    APP_STOPPED,
    Deployment,
    host_app,
    make_app,
    make_server,
    modern_request,
    noting_shutdown,
    padded,
    raw,
    rpc_messages,
    whoami,
    why,
)
from checker.marks import check
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio


@check(
    "modern and legacy clients both work through create_app",
    points=2,
    hint="create_app returns server.streamable_http_app(...) configured for production. Both eras share "
    "one endpoint; a modern client never gets an Mcp-Session-Id, a legacy one does.",
)
async def test_both_eras_served(target: Target) -> None:
    dep = Deployment()
    async with raw() as http, target.http(await make_app(target, dep)) as url:
        await dep.require_reachable(http, url, "create_app")
        seen = {}
        for mode in MODES:
            async with dep.client(url, mode) as client:
                seen[mode] = (client.protocol_version, await whoami(client))
    (modern_version, modern), (legacy_version, legacy) = seen["auto"], seen["legacy"]
    assert modern_version == MODERN and modern["protocol"] == MODERN, (
        f"a default client should speak {MODERN}, got {modern_version}"
    )
    assert legacy_version == LEGACY and legacy["protocol"] == LEGACY, (
        f"a mode='legacy' client should speak {LEGACY}, got {legacy_version}"
    )
    assert modern["session"] is None, "a modern request carried an Mcp-Session-Id: 2026-07-28 has no sessions"
    assert legacy["session"], (
        "the legacy client got no Mcp-Session-Id: legacy clients need sessions (did you make the app stateless?)"
    )
    assert modern["host"] == dep.host == legacy["host"], "the tool did not see the Host header the proxy sent"


@check(
    "progress streams as SSE; a plain answer is one JSON body",
    points=2,
    hint="Leave response streaming on: a tools/call that reports progress must answer text/event-stream "
    "with one notifications/progress event per step before the result. json_response=True drops them.",
)
async def test_progress_streams_over_sse(target: Target) -> None:
    dep = Deployment()
    n = random.randint(3, 6)
    call = {"name": "count_to", "arguments": {"n": n}}
    token = random.randint(1000, 9999)
    async with raw() as http, target.http(await make_app(target, dep)) as url:
        await dep.require_reachable(http, url, "create_app")
        discover = await dep.discover(http, url)
        answers: dict[int, Any] = {}
        got: dict[str, list[float]] = {}

        async def post(request_id: int, **progress: int) -> None:
            answers[request_id] = await http.post(
                url, json=modern_request("tools/call", call, id=request_id, **progress),
                headers=dep.modern_headers("tools/call", "count_to"),
            )

        async def count_as(mode: str) -> None:
            steps: list[float] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                steps.append(progress)

            async with dep.client(url, mode) as client:
                result = await client.call_tool("count_to", {"n": n}, progress_callback=on_progress)
                assert not result.is_error, f"count_to failed over HTTP ({mode})"
            got[mode] = steps

        async with anyio.create_task_group() as calls:  # each call counts on its own: they can overlap
            calls.start_soon(functools.partial(post, 2, progressToken=token))
            calls.start_soon(post, 3)
            for mode in MODES:
                calls.start_soon(count_as, mode)
        streamed, plain = answers[2], answers[3]
    assert discover.headers.get("content-type", "").startswith("application/json"), (
        "a modern server/discover should be answered with one JSON body"
    )
    assert "mcp-session-id" not in discover.headers, (
        "a modern response carried Mcp-Session-Id: 2026-07-28 has no sessions"
    )
    assert streamed.status_code == 200, f"tools/call with a progressToken got {why(streamed.status_code)}"
    kind = streamed.headers.get("content-type", "")
    assert kind.startswith("text/event-stream"), (
        f"a tools/call that reports progress was answered {kind!r}, not text/event-stream: the progress "
        "notifications had nowhere to go (is json_response on?)"
    )
    messages = rpc_messages(streamed)
    progress = [m["params"]["progress"] for m in messages if m.get("method") == "notifications/progress"]
    assert progress == list(range(1, n + 1)), f"expected progress 1..{n} on the stream, got {progress}"
    assert all(
        m["params"]["progressToken"] == token for m in messages if m.get("method") == "notifications/progress"
    ), "progress events must echo the client's progressToken"
    assert messages[-1].get("id") == 2 and "result" in messages[-1], "the stream must end with the tools/call result"
    assert plain.headers.get("content-type", "").startswith("application/json"), (
        "without a progressToken nothing streams, so the answer should be plain JSON"
    )
    for mode, steps in got.items():
        assert [int(s) for s in steps] == list(range(1, n + 1)), (
            f"a {mode} client's progress_callback saw {steps}, expected 1..{n}"
        )


@check(
    "a legacy session: initialize, GET stream, DELETE",
    points=2,
    hint="Legacy (2025) clients open a session: initialize returns Mcp-Session-Id, GET opens the "
    "server's stream, DELETE ends the session. Keep the app stateful (stateless is lesson 6's choice).",
)
async def test_legacy_session_lifecycle(target: Target) -> None:
    dep = Deployment()
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "course-check", "version": "1.0"},
        },
    }
    async with raw() as http, target.http(await make_app(target, dep)) as url:
        await dep.require_reachable(http, url, "create_app")
        opened = await http.post(url, json=init, headers=dep.headers())
        assert opened.status_code == 200, f"a legacy initialize got {why(opened.status_code)}"
        session = opened.headers.get("mcp-session-id")
        assert session, "initialize was answered without an Mcp-Session-Id header: the app runs stateless"
        reply = rpc_messages(opened)[-1]
        assert reply.get("result", {}).get("protocolVersion") == LEGACY, f"initialize did not negotiate {LEGACY}"
        in_session = dep.headers(**{"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY})
        ready = await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=in_session)
        assert ready.status_code == 202, (
            f"notifications/initialized should be accepted with 202, got {ready.status_code}"
        )
        async with http.stream("GET", url, headers=in_session) as stream:
            assert stream.status_code == 200, f"GET with the session id got {why(stream.status_code)}"
            assert stream.headers.get("content-type", "").startswith("text/event-stream"), (
                "the GET stream of a legacy session should be text/event-stream"
            )
        listed = await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=in_session)
        assert listed.status_code == 200, f"tools/list inside the session got {why(listed.status_code)}"
        names = {t["name"] for t in rpc_messages(listed)[-1]["result"]["tools"]}
        assert {"connection_info", "count_to"} <= names, f"tools/list inside the session returned {sorted(names)}"
        closed = await http.delete(url, headers=in_session)
        assert closed.status_code == 200, f"DELETE of the session got {closed.status_code}"
        after = await http.post(url, json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}, headers=in_session)
    assert after.status_code == 404, f"after DELETE the session should be gone (404), got {after.status_code}"


@check(
    "request bodies above max_body_bytes get 413, a body of exactly that size passes",
    points=2,
    hint="The SDK can refuse oversized bodies before parsing them: pass the limit through when you build "
    "the Streamable HTTP app. The limit is in bytes, and a body of exactly max_body_bytes is allowed.",
)
async def test_body_size_limit(target: Target) -> None:
    dep = Deployment()
    limit = random.randint(3_000, 12_000)
    async with raw() as http, target.http(await make_app(target, dep, max_body_bytes=limit)) as url:
        headers = dep.modern_headers("server/discover")
        exact = await http.post(url, content=padded(limit), headers=headers)
        over = await http.post(url, content=padded(limit + 1), headers=headers)
        big = await http.post(url, content=padded(limit + 200), headers=headers)
    assert exact.status_code == 200, (
        f"a body of exactly {limit} bytes (max_body_bytes={limit}) got {why(exact.status_code)}: only a body larger "
        "than the limit is refused"
    )
    for response, size in ((over, limit + 1), (big, limit + 200)):
        assert response.status_code == 413, (
            f"a body of {size} bytes (over the limit {limit}; fewer characters, since é is two bytes) got "
            f"{response.status_code}, expected 413: max_body_bytes is not applied, or not in bytes"
        )


@check(
    "create_app serves the path it is given, and turns sessions or streaming off only when asked",
    points=2,
    hint="Every argument of create_app reaches streamable_http_app: `path` is where the endpoint lives, "
    "`stateless=True` gives legacy clients no session (no Mcp-Session-Id), `json_response=True` answers "
    "every call with one JSON body, even one that reports progress.",
)
async def test_create_app_options(target: Target) -> None:
    dep = Deployment()
    path = f"/api-{secrets.token_hex(2)}/rpc"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "course-check", "version": "1"},
        },
    }
    call = {"name": "count_to", "arguments": {"n": 3}}
    app = await make_app(target, dep, path=path, stateless=True, json_response=True)
    async with raw() as http, target.http(app, path=path, graceful=False) as url:
        base = url.rsplit(path, 1)[0]
        moved = await dep.discover(http, url)
        default = await dep.discover(http, f"{base}/mcp")
        opened = await http.post(url, json=init, headers=dep.headers())
        progress = await http.post(
            url,
            json=modern_request("tools/call", call, id=2, progressToken=7),
            headers=dep.modern_headers("tools/call", "count_to"),
        )
    assert moved.status_code == 200, (
        f"create_app(..., path={path!r}): a POST to {path} got {why(moved.status_code)}: serve the endpoint at `path`"
    )
    assert default.status_code == 404, (
        f"with path={path!r}, /mcp should not be an MCP endpoint, got {default.status_code}"
    )
    assert opened.status_code == 200, f"a legacy initialize got {why(opened.status_code)}"
    assert "mcp-session-id" not in opened.headers, (
        f"create_app(..., stateless=True): a legacy initialize still got Mcp-Session-Id "
        f"{opened.headers.get('mcp-session-id')!r}; stateless serving opens no session"
    )
    kind = progress.headers.get("content-type", "")
    assert progress.status_code == 200 and kind.startswith("application/json"), (
        f"create_app(..., json_response=True): a tools/call with a progressToken was answered {kind!r} "
        f"({why(progress.status_code)}), expected one application/json body"
    )


@check(
    "mounted in a host app, the MCP endpoint works (session manager in the host lifespan)",
    points=3,
    hint="A mounted app's own lifespan never runs. The host app's lifespan must run its own setup and "
    "`async with server.session_manager.run():` around its yield, or every MCP request fails.",
)
async def test_mounted_app_works(target: Target) -> None:
    dep = Deployment()
    prefix, page, secret = f"/api-{secrets.token_hex(2)}", f"/page-{secrets.token_hex(2)}", secrets.token_hex(8)
    app = await host_app(target, dep, prefix, page, secret)
    async with raw() as http, target.http(app, path=f"{prefix}/mcp") as url:
        base = url.rsplit(prefix, 1)[0]
        started = list(dep.events)
        own = await http.get(base + page)
        probe = await dep.discover(http, url)
        assert probe.status_code == 200, f"POST {prefix}/mcp got {why(probe.status_code)}"
        for mode in MODES:
            async with dep.client(url, mode) as client:
                info = await whoami(client)
                assert info["protocol"] == (MODERN if mode == "auto" else LEGACY), (
                    f"a {mode} client through the mounted app negotiated {info['protocol']}"
                )
    assert own.status_code == 200 and own.text == secret, f"the host app's own route {page} is not served any more"
    assert "host-start" in started, "the host app's own lifespan did not run: enter it in the combined lifespan"
    assert started.count("start") == 1, (
        f"the MCP server's lifespan should start once when the host starts; it started {started.count('start')} times"
    )


@check(
    "mount_app without a host lifespan or routes still serves MCP, and applies its allowlist and body limit",
    points=2,
    hint="`lifespan` and `routes` are optional: with none, the host app must still run the MCP session manager. "
    "Everything create_app offers applies under the prefix too: the health route, the allowed hosts and "
    "origins (CORS included), and the max_body_bytes you were given.",
)
async def test_mount_app_options(target: Target) -> None:
    dep = Deployment()
    prefix, limit = f"/svc-{secrets.token_hex(2)}", random.randint(3_000, 12_000)
    server = await make_server(target, dep, health=True)
    mount_app = target.attr("transport", "mount_app")
    app = mount_app(server, prefix=prefix, allowed_hosts=[dep.host], allowed_origins=[dep.origin], max_body_bytes=limit)
    async with raw() as http, target.http(app, path=f"{prefix}/mcp", graceful=False) as url:
        base = url.rsplit(prefix, 1)[0]
        health = await http.get(f"{base}{prefix}/health", headers={"Host": dep.host})
        exact = await http.post(url, content=padded(limit), headers=dep.modern_headers("server/discover"))
        over = await http.post(url, content=padded(limit + 1), headers=dep.modern_headers("server/discover"))
        browser = await dep.discover(http, url, Origin=dep.origin)
        foreign = await dep.discover(http, url, Origin=f"https://evil-{secrets.token_hex(2)}.example")
        stranger = await dep.discover(http, url, host=f"evil-{secrets.token_hex(2)}.example")
        seen = {}
        if exact.status_code == 200:
            for mode in MODES:
                async with dep.client(url, mode) as client:
                    seen[mode] = (await whoami(client))["protocol"]
    assert health.status_code == 200 and health.json() == {"status": "ok", "server": dep.name}, (
        f"GET {prefix}/health got {why(health.status_code)} {health.text[:80]!r}"
    )
    assert exact.status_code == 200, (
        f"a {limit}-byte POST to {prefix}/mcp (max_body_bytes={limit}) got {why(exact.status_code)}"
        + (": is the session manager running when no host lifespan is given?" if exact.status_code == 500 else "")
    )
    assert over.status_code == 413, (
        f"a {limit + 1}-byte POST to {prefix}/mcp (over max_body_bytes={limit}) got {over.status_code}, expected 413: "
        "the mounted app does not apply the limit mount_app was given"
    )
    assert browser.status_code == 200 and browser.headers.get("access-control-allow-origin") == dep.origin, (
        f"a call from the allowed origin {dep.origin} through the mounted app got {why(browser.status_code)} "
        f"(Access-Control-Allow-Origin: {browser.headers.get('access-control-allow-origin')!r}): "
        "pass allowed_origins on"
    )
    assert foreign.status_code == 403, (
        f"a foreign Origin through the mounted app got {foreign.status_code}, expected 403"
    )
    assert stranger.status_code == 421, (
        f"a foreign Host through the mounted app got {stranger.status_code}, expected 421"
    )
    assert seen == {"auto": MODERN, "legacy": LEGACY}, f"clients of both eras through the mounted app saw {seen}"


@check(
    "the server stops cleanly: lifespans exit and the port is released",
    points=2,
    hint="Use `async with` for the session manager in the host lifespan (not a bare __aenter__), so shutdown "
    "exits it: the MCP server's cleanup must run and uvicorn must be able to finish.",
)
async def test_clean_shutdown(target: Target) -> None:
    dep = Deployment()
    prefix = f"/mcp-{secrets.token_hex(2)}"
    app = noting_shutdown(target, await host_app(target, dep, prefix, "/", "home"), dep.events)
    port, while_running = 0, []
    try:
        async with raw() as http, target.http(app, path=f"{prefix}/mcp") as url:
            port = int(url.split(":")[2].split("/")[0])
            await dep.require_reachable(http, url, "mount_app")
            async with dep.client(url, "legacy") as client:
                await whoami(client)
            while_running = list(dep.events)
    except BaseException as exc:  # noqa: BLE001 - a crash during shutdown is the finding
        leaf = leaf_exception(exc)
        if isinstance(leaf, (AssertionError, pytest.fail.Exception)):
            raise leaf from None
        if not while_running:
            raise
        pytest.fail(
            f"the server crashed while shutting down ({type(leaf).__name__}: {leaf}): something the "
            "host lifespan entered was not exited by the same `async with`"
        )
    events = list(dep.events)
    stopped = events[: events.index(APP_STOPPED)] if APP_STOPPED in events else events  # as the host app stopped
    assert while_running.count("start") == 1, "the MCP server's lifespan did not start with the host app"
    assert stopped.count("stop") == 1, (
        "after the host app stopped, the MCP server's lifespan never finished: its cleanup did not run"
    )
    assert "host-stop" in stopped, "the host app's own lifespan never finished"
    assert not port_open(port), f"port {port} still accepts connections after the server stopped"
