"""Lesson 5 checks, production security: who may reach the endpoint, and with what.

The Host and Origin allowlists (DNS-rebinding protection), the bearer token and the metadata that
names its issuer, a public health probe, CORS for browsers, and what a tool learns of the caller.
Like the main file's checks, each deploys the student's app under a real uvicorn with a random
configuration (support/lesson05.py) and reads status codes from raw HTTP requests.
"""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

import httpx2
import pytest

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of
from checker.checks.support.lesson05 import (
    Deployment,
    bare_server,
    make_app,
    modern_request,
    raw,
    whoami,
    why,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check(
    "a bad Host gets 421 and a bad Origin 403; allowed ones pass",
    points=3,
    hint="Pass TransportSecuritySettings with protection on. A Host header carries the port unless it is "
    "the default, so allow each name both bare and with a port pattern; list the allowed origins exactly.",
)
async def test_host_and_origin_allowlist(target: Target) -> None:
    dep = Deployment()
    evil = f"evil-{secrets.token_hex(3)}.example"
    port = random.choice([8443, 9000, random.randint(10_000, 60_000)])
    app = await make_app(
        target, dep, allowed_hosts=[dep.host, dep.other_host], allowed_origins=[dep.origin, dep.other_origin]
    )
    async with raw() as http, target.http(app) as url:
        bare = await dep.discover(http, url)
        with_port = await dep.discover(http, url, host=f"{dep.host}:{port}")
        second = {h: await dep.discover(http, url, host=h) for h in (dep.other_host, f"{dep.other_host}:{port}")}
        second_origin = await dep.discover(http, url, Origin=dep.other_origin)
        bad_hosts = {
            h: await dep.discover(http, url, host=h)
            for h in (evil, f"{evil}:{port}", f"{dep.host}.{evil}", f"x{dep.host}")
        }
        good_origin = await dep.discover(http, url, Origin=dep.origin)
        bad_origin = await dep.discover(http, url, Origin=f"https://{evil}")
    assert bare.status_code == 200, f"Host: {dep.host} is allowed, but got {why(bare.status_code)}"
    assert with_port.status_code == 200, (
        f"Host: {dep.host}:{port} (the allowed name on a non-default port) got {why(with_port.status_code)}"
    )
    for host, response in second.items():
        assert response.status_code == 200, (
            f"Host: {host} names the second allowed host, but got {why(response.status_code)}: apply every name in "
            "allowed_hosts, not only the first"
        )
    assert second_origin.status_code == 200, (
        f"the second allowed Origin {dep.other_origin} got {why(second_origin.status_code)}: allow every given origin"
    )
    for host, response in bad_hosts.items():
        assert response.status_code == 421, (
            f"Host: {host} is not an allowed name but got {response.status_code}, expected 421: "
            "DNS-rebinding protection is off or too loose"
        )
    assert good_origin.status_code == 200, f"the allowed Origin {dep.origin} got {why(good_origin.status_code)}"
    assert bad_origin.status_code == 403, (
        f"a request from Origin https://{evil} got {bad_origin.status_code}, expected 403: origins are not restricted"
    )


@check(
    "the MCP endpoint needs the right bearer token (401 otherwise)",
    points=3,
    hint="Give MCPServer a token_verifier (verify_token returns an AccessToken or None, never raises) and "
    "auth=AuthSettings(...) naming the issuer and this resource. Compare tokens whole and in constant time, "
    "as bytes: hmac.compare_digest refuses str with characters outside ASCII, and a header can carry them.",
)
async def test_bearer_token_required(target: Target) -> None:
    dep = Deployment()
    wrong = {
        "no token": "",
        "a random token": secrets.token_urlsafe(24),
        "the token minus its last character": dep.token[:-1],
        "the token plus one character": dep.token + "x",
        "the token in upper case": dep.token.upper(),
    }
    accented = {
        "the token plus é": dep.token + "é",
        "the token with its last character replaced by ü": dep.token[:-1] + "ü",
        "a token of accented letters": "éüßçñøπ✓",
    }
    verifier = target.module("transport").StaticTokenVerifier(dep.token, resource=dep.resource)
    for what, tok in accented.items():
        try:
            verdict = await verifier.verify_token(tok)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exception is the finding
            pytest.fail(
                f"verify_token({tok!r}) ({what}) raised {type(exc).__name__}: {exc}. A token that is not the "
                "configured one is answered with None, whatever its characters; compare bytes"
            )
        assert verdict is None, f"verify_token({tok!r}) ({what}) accepted a token that is not the configured one"
    async with raw() as http, target.http(await make_app(target, dep, auth=True)) as url:
        refused: dict[str, httpx2.Response] = {}
        for what, tok in wrong.items():
            if tok != dep.token:
                async with raw() as fresh:  # its own connection: after a crash (500) the server closes the one it used
                    refused[what] = await dep.discover(fresh, url, token=tok)
        for what, tok in accented.items():
            headers: dict[str, Any] = dep.modern_headers("server/discover", token="")
            headers["Authorization"] = b"Bearer " + tok.encode("utf-8")  # as a client would send it: UTF-8 bytes
            async with raw() as fresh:
                refused[what] = await fresh.post(url, json=modern_request("server/discover"), headers=headers)
        right = await dep.discover(http, url)
        metadata_url = ""
        if (challenge := refused["no token"].headers.get("www-authenticate", "")) and "resource_metadata=" in challenge:
            metadata_url = challenge.split('resource_metadata="', 1)[1].split('"', 1)[0]
        path = metadata_url.split(dep.host, 1)[-1] if metadata_url else ""
        metadata = await http.get(url.rsplit("/mcp", 1)[0] + path, headers={"Host": dep.host}) if path else None
        if right.status_code == 200:
            for mode in MODES:
                async with dep.client(url, mode) as client:
                    await whoami(client)
    for what, response in refused.items():
        assert response.status_code != 500, (
            f"{what} crashed the server (500): verify_token must return None for a bad token, not raise"
        )
        assert response.status_code == 401, f"a request with {what} got {why(response.status_code)}, expected 401"
    challenge = refused["no token"].headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer"), "a 401 should carry a WWW-Authenticate: Bearer ... header"
    assert right.status_code == 200, f"the right token got {why(right.status_code)}"
    assert metadata is not None, (
        "the 401 does not point to resource metadata (resource_metadata=...): give AuthSettings the resource URL"
    )
    assert metadata.status_code == 200 and metadata.json().get("resource") == dep.resource, (
        f"the protected-resource metadata should name this endpoint {dep.resource}"
    )
    assert dep.issuer in " ".join(metadata.json().get("authorization_servers", [])), (
        f"the protected-resource metadata should name the issuer {dep.issuer}"
    )


@check(
    "/health answers 200 without a token while /mcp stays protected",
    points=2,
    hint="Register the probe with @server.custom_route at the path you are given (default /health): the SDK "
    "leaves custom routes outside the bearer check. Answer JSON with status ok and the server's name. A "
    "probe sends no token (give it an allowed Host).",
)
async def test_health_is_public(target: Target) -> None:
    dep = Deployment()
    elsewhere = f"/ready-{secrets.token_hex(2)}"
    async with raw() as http, target.http(await make_app(target, dep, auth=True, health=True)) as url:
        base = url.rsplit("/mcp", 1)[0]
        probe = await http.get(f"{base}/health", headers={"Host": dep.host})  # no token
        with_token = await http.get(f"{base}/health", headers=dep.headers())
        mcp_without = await dep.discover(http, url, token="")
    async with raw() as http, target.http(await make_app(target, dep, health=elsewhere)) as url:
        base = url.rsplit("/mcp", 1)[0]
        moved = await http.get(f"{base}{elsewhere}", headers={"Host": dep.host})
    assert probe.status_code == 200, f"GET /health without a token got {why(probe.status_code)}"
    try:
        body = probe.json()
    except ValueError:
        pytest.fail(f"/health should answer JSON, got {probe.text[:80]!r}")
    want = {"status": "ok", "server": dep.name}
    assert body == want, f"/health should answer {want} (the server's own name), got {body}"
    assert (
        moved.status_code == 200
        and moved.headers.get("content-type", "").startswith("application/json")
        and moved.json() == want
    ), (
        f"add_health_route(server, path={elsewhere!r}) should answer GET {elsewhere} with {want}, got "
        f"{why(moved.status_code)} {moved.text[:80]!r}: register the route at the path you are given"
    )
    assert with_token.status_code == 200, "/health should also answer a caller that sends a token"
    assert mcp_without.status_code == 401, (
        f"/mcp without a token got {mcp_without.status_code}: the health route is public, the MCP endpoint must not be"
    )


@check(
    "every route obeys the Host allowlist, and allowed origins get CORS (preflight without a token)",
    points=3,
    hint="The SDK checks Host and Origin on the MCP endpoint only: guard the other routes too (GuardEveryRoute), so "
    "/health answers a foreign Host with 421. A browser asks first with an OPTIONS preflight that carries no "
    "token: add Starlette's CORSMiddleware for the allowed origins (cors_options) outside the bearer check.",
)
async def test_every_route_guarded_and_cors(target: Target) -> None:
    dep = Deployment()
    evil_host, evil_origin = f"evil-{secrets.token_hex(3)}.example", f"https://evil-{secrets.token_hex(3)}.example"
    transport = target.module("transport")
    server = transport.create_server(token=dep.token, resource_url=dep.resource)
    app = target.attr("transport", "create_app")(server, allowed_hosts=[dep.host], allowed_origins=[dep.origin])
    wanted = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name"
    async with raw() as http, target.http(app) as url:
        base = url.rsplit("/mcp", 1)[0]
        health = {host: await http.get(f"{base}/health", headers={"Host": host}) for host in (dep.host, evil_host)}
        preflight = await http.options(
            url,
            headers={
                "Host": dep.host,
                "Origin": dep.origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": wanted,
            },
        )
        foreign = await http.options(
            url, headers={"Host": dep.host, "Origin": evil_origin, "Access-Control-Request-Method": "POST"}
        )
        call = await dep.discover(http, url, Origin=dep.origin)
    assert health[dep.host].status_code == 200, f"/health with an allowed Host got {why(health[dep.host].status_code)}"
    assert health[evil_host].status_code == 421, (
        f"/health answered Host: {evil_host} with {health[evil_host].status_code}, expected 421: the allowlist must "
        "guard every route, or a DNS-rebinding page can still probe the server"
    )
    assert preflight.status_code in (200, 204), (
        f"the browser's preflight from the allowed origin {dep.origin} got {why(preflight.status_code)}: a preflight "
        "never carries the token, so CORS must answer it before the bearer check"
    )
    assert preflight.headers.get("access-control-allow-origin") == dep.origin, (
        f"the preflight answer does not allow {dep.origin} (Access-Control-Allow-Origin: "
        f"{preflight.headers.get('access-control-allow-origin')!r})"
    )
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    missing = [h.strip() for h in wanted.split(",") if h.strip() not in allowed and allowed != "*"]
    assert not missing, f"the preflight does not allow the request headers {missing} that MCP clients send"
    assert "access-control-allow-origin" not in foreign.headers, (
        f"CORS allowed {evil_origin}, which is not an allowed origin: allow exactly the configured ones"
    )
    assert call.status_code == 200 and call.headers.get("access-control-allow-origin") == dep.origin, (
        f"a call from the allowed origin got {why(call.status_code)} without Access-Control-Allow-Origin: the "
        "browser would hide the answer from the page"
    )
    exposed = call.headers.get("access-control-expose-headers", "").lower()
    assert "mcp-session-id" in exposed, "browsers must be able to read Mcp-Session-Id (expose it)"


@check(
    "a static token publishes no authorization server; a real issuer is named",
    points=2,
    hint="Protected-resource metadata tells clients which OAuth server issues tokens. A static key has none: "
    "without an issuer_url publish no metadata (no resource_server_url in AuthSettings), so no client is "
    "sent to a server that answers 404. With one, name it and check each token's resource.",
)
async def test_static_token_names_no_issuer(target: Target) -> None:
    dep = Deployment()
    transport = target.module("transport")
    server = transport.create_server(token=dep.token, resource_url=dep.resource)
    app = target.attr("transport", "create_app")(server, allowed_hosts=[dep.host])
    async with raw() as http, target.http(app) as url:
        base = url.rsplit("/mcp", 1)[0]
        refused = await dep.discover(http, url, token="")
        accepted = await dep.discover(http, url)
        metadata = await http.get(f"{base}/.well-known/oauth-protected-resource/mcp", headers={"Host": dep.host})
    assert refused.status_code == 401 and accepted.status_code == 200, (
        f"auth_options without an issuer must still require the token: no token got {why(refused.status_code)}, "
        f"the token got {why(accepted.status_code)}"
    )
    challenge = refused.headers.get("www-authenticate", "")
    assert challenge.startswith("Bearer") and "resource_metadata" not in challenge, (
        f"the 401 answer points clients to metadata ({challenge[:160]!r}) although no authorization server exists"
    )
    assert metadata.status_code == 404, (
        f"with a static token and no issuer the server published {metadata.text[:160]!r}: it names an "
        "authorization server that does not exist, so a client's OAuth flow can only fail"
    )


@check(
    "tools see who holds the token, never the token; a token for another resource is refused",
    points=2,
    hint="verify_token describes the caller: the AccessToken carries the verifier's client_id (who the token "
    "belongs to, which tools read), the verifier's resource (the endpoint the token is for) and no scopes; "
    "never the secret itself as an id. With an issuer, auth_options has the SDK check that resource "
    "against this server's URL (validate_token_resource).",
)
async def test_token_names_its_holder(target: Target) -> None:
    dep = Deployment()
    holder = f"operator-{secrets.token_hex(3)}"
    elsewhere = f"https://other-{secrets.token_hex(3)}.example/mcp"
    transport = target.module("transport")
    access = await transport.StaticTokenVerifier(dep.token, resource=dep.resource, client_id=holder).verify_token(
        dep.token
    )
    assert access is not None, "verify_token(<the configured token>) answered None: the right token must be accepted"
    assert (access.client_id, access.resource, list(access.scopes)) == (holder, dep.resource, []), (
        f"StaticTokenVerifier(token, resource={dep.resource!r}, client_id={holder!r}).verify_token(token) described "
        f"the caller as client_id={access.client_id!r}, resource={access.resource!r}, scopes={list(access.scopes)}; "
        f"expected {holder!r}, {dep.resource!r}, []: the token belongs to the verifier's client, for its resource"
    )

    async def serve(resource: str) -> Any:
        options = transport.auth_options(dep.token, resource_url=dep.resource, issuer_url=dep.issuer)
        assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
        options["token_verifier"] = transport.StaticTokenVerifier(dep.token, resource=resource, client_id=holder)
        return target.attr("transport", "create_app")(
            bare_server(target, dep.name, **options), allowed_hosts=[dep.host]
        )

    seen: dict[str, Any] = {}
    async with raw() as http, target.http(await serve(dep.resource), graceful=False) as url:
        await dep.require_reachable(http, url, "create_app with auth_options")
        for mode in MODES:
            async with dep.client(url, mode) as client:
                result = await client.call_tool("connection_info", {})
                seen[mode] = (result.is_error, dict(result.structured_content or {}), text_of(result))
    async with raw() as http, target.http(await serve(elsewhere), graceful=False) as url:
        foreign = await dep.discover(http, url)
    for mode, (failed, info, text) in seen.items():
        assert not failed, f"[{mode}] connection_info failed over HTTP: {text[:150]}"
        assert dep.token not in text and dep.token not in json.dumps(info), (
            f"[{mode}] the bearer token itself reached a tool result ({info}): a tool's output goes to the model and "
            "its logs; name the caller by the verifier's client_id, never by the secret"
        )
        assert info.get("client_id") == holder, (
            f"[{mode}] the tool saw the caller as {info.get('client_id')!r}, expected {holder!r} "
            "(the verifier's client_id)"
        )
    assert foreign.status_code == 401, (
        f"the server at {dep.resource} accepted a token its verifier issued for {elsewhere} "
        f"(got {why(foreign.status_code)}, expected 401): with an issuer, auth_options must have the SDK check each "
        "token's resource"
    )
