"""Lesson 5, instructor-only checks: edge cases the visible checks do not spell out.

Left out of the student release and run by `course grade`, so a submission tuned to the
visible checks alone does not collect these points. Like the visible checks, each one deploys
the student's app with a real uvicorn on a loopback port and reads status codes from raw httpx2
requests; tokens, names, paths and limits are random per run.
"""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

import anyio
import httpx2
import pytest

from checker.checks.kit.eras import MODES
from checker.checks.support.lesson05 import bare_server, mcp_client, modern_headers, modern_request, padded, whoami
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


def _hex(n: int = 3) -> str:
    return secrets.token_hex(n)


# --- an app's lifespan, run from here ------------------------------------------------------------


async def _startup_problem(target: Target, app: Any) -> str:
    """Run `app`'s ASGI lifespan (startup, then shutdown) without a server, talking to it from here.

    Returns "" when it started and stopped, else what went wrong. (uvicorn reports a failed startup
    by exiting, which says nothing about the cause.)
    """
    started, asked = anyio.Event(), list[bool]()

    async def receive() -> dict[str, str]:
        if not asked:
            asked.append(True)
            return {"type": "lifespan.startup"}
        await started.wait()
        return {"type": "lifespan.shutdown"}

    async def send(message: dict[str, Any]) -> None:
        if message.get("type") == "lifespan.startup.complete":
            started.set()

    try:
        with anyio.fail_after(5):
            await app(
                {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}},
                target.expose(receive),
                target.expose(send),
            )
    except Exception as exc:  # noqa: BLE001 - the problem is the observation
        return f"{type(exc).__name__}: {exc}"
    return "" if started.is_set() else "its lifespan returned without completing startup"


# --- raw HTTP -----------------------------------------------------------------------------------


async def _discover(
    url: str, host: str, authorization: str | bytes | None = None, content: bytes | None = None
) -> httpx2.Response:
    """One modern `server/discover` POST on a fresh connection (a crashed request closes its own)."""
    body = content if content is not None else json.dumps(modern_request("server/discover")).encode()
    async with httpx2.AsyncClient(timeout=10) as http:
        return await http.post(url, content=body, headers=modern_headers(host, "server/discover", None, authorization))


def _status(response: httpx2.Response) -> str:
    return f"{response.status_code} {response.text[:120]!r}"


# --- checks ---------------------------------------------------------------------------------------


@check(
    "bearer tokens with non-ASCII characters get 401, never a crash",
    points=1,
    hint="verify_token sees whatever text follows `Bearer `, and a header can carry bytes outside ASCII. "
    "Check what your constant-time comparison accepts: for any text that is not the token it must "
    "answer None, never raise.",
)
async def test_non_ascii_tokens_refused(target: Target) -> None:
    rng = random.Random()
    token = secrets.token_urlsafe(rng.randint(16, 32))
    host = f"desk-{_hex()}.example"
    resource, issuer = f"https://{host}/mcp", f"https://auth-{_hex()}.example"
    accents = "éüßçñøπ✓ö"
    odd = sorted(
        {
            token + rng.choice(accents),
            token[:-1] + rng.choice(accents),
            "".join(rng.choice(accents + "tokn") for _ in range(rng.randint(6, 20))),
            rng.choice(accents) + token[1:],
        }
    )

    transport = target.module("transport")
    verifier = transport.StaticTokenVerifier(token, resource=resource)
    for presented in [*odd, ""]:
        try:
            got = await verifier.verify_token(presented)
        except NotImplementedError:
            raise
        except Exception as exc:  # noqa: BLE001 - the exception is the finding
            pytest.fail(
                f"verify_token({presented!r}) raised {type(exc).__name__}: {exc}. A token that is not the "
                "configured one must be answered with None; an exception becomes a 500 for the caller"
            )
        assert got is None, f"verify_token({presented!r}) accepted a token that is not the configured one"

    options = transport.auth_options(token, resource_url=resource, issuer_url=issuer)
    assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
    server = bare_server(target, f"desk-{_hex()}", **options)
    app = target.attr("transport", "create_app")(server, allowed_hosts=[host])
    async with target.http(app, graceful=False) as url:
        refused = {text: await _discover(url, host, b"Bearer " + text.encode("utf-8")) for text in odd}
        right = await _discover(url, host, f"Bearer {token}")
    assert right.status_code == 200, f"the configured token got {_status(right)}, expected 200"
    for text, response in refused.items():
        assert response.status_code != 500, (
            f"Authorization: Bearer {text!r} (sent as UTF-8 bytes) crashed the server (500): verify_token raised "
            "instead of answering None"
        )
        assert response.status_code == 401, (
            f"Authorization: Bearer {text!r} got {_status(response)}, expected 401: it is not the configured token"
        )


@check(
    "a token is accepted only for its own resource, and tools see who holds it",
    points=1,
    hint="The AccessToken verify_token returns says who the caller is (the verifier's client_id) and which "
    "endpoint the token is for (the verifier's resource). auth_options must have the SDK compare that "
    "resource with this server's URL, so a token meant for another endpoint is refused.",
)
async def test_token_bound_to_its_resource(target: Target) -> None:
    rng = random.Random()
    token = secrets.token_urlsafe(rng.randint(16, 32))
    host, client_id = f"desk-{_hex()}.example", f"operator-{_hex()}"
    resource, issuer = f"https://{host}/mcp", f"https://auth-{_hex()}.example"
    elsewhere = rng.choice([f"https://other-{_hex()}.example/mcp", f"https://{host}/other-{_hex(2)}/mcp"])

    transport = target.module("transport")
    verifier_cls = transport.StaticTokenVerifier
    access = await verifier_cls(token, resource=resource, client_id=client_id).verify_token(token)
    assert access is not None, "verify_token(<the configured token>) answered None: the right token must be accepted"
    assert access.client_id == client_id, (
        f"a verifier made with client_id={client_id!r} returned an AccessToken for {access.client_id!r}: the "
        "token belongs to the verifier's client"
    )
    assert access.resource == resource, (
        f"a verifier made for resource {resource!r} returned an AccessToken with resource {access.resource!r}: "
        "the token's audience is the verifier's resource"
    )
    assert list(access.scopes) == [], f"a static token grants no scopes, got {list(access.scopes)}"

    async def serve(verifier_resource: str) -> Any:
        options = transport.auth_options(token, resource_url=resource, issuer_url=issuer)
        assert isinstance(options, dict), "auth_options must return a dict of MCPServer keyword arguments"
        options["token_verifier"] = verifier_cls(token, resource=verifier_resource, client_id=client_id)
        server = bare_server(target, f"desk-{_hex()}", **options)
        return target.attr("transport", "create_app")(server, allowed_hosts=[host])

    seen: dict[str, dict[str, Any]] = {}
    async with target.http(await serve(resource), graceful=False) as url:
        probe = await _discover(url, host, f"Bearer {token}")
        assert probe.status_code == 200, (
            f"a server whose verifier names this resource ({resource}) answered the right token with "
            f"{_status(probe)}, expected 200"
        )
        for mode in MODES:
            async with mcp_client(url, host, token, mode) as client:
                seen[mode] = await whoami(client, mode)
    async with target.http(await serve(elsewhere), graceful=False) as url:
        foreign = await _discover(url, host, f"Bearer {token}")
    for mode, info in seen.items():
        assert info.get("protocol") == MODES[mode], (
            f"a {mode} client negotiated {info.get('protocol')}, not {MODES[mode]}"
        )
        assert info.get("client_id") == client_id, (
            f"[{mode}] the tool saw the caller as {info.get('client_id')!r}, expected {client_id!r} (the verifier's "
            "client_id)"
        )
    assert foreign.status_code == 401, (
        f"the server at {resource} accepted a token its verifier issued for {elsewhere} (got "
        f"{foreign.status_code}, expected 401): auth_options does not have the token's resource checked"
    )


@check(
    "mount_app with no host lifespan or routes still serves MCP, /health and the body limit",
    points=1,
    hint="lifespan and routes are optional: with none given, the host app must still run the MCP session "
    "manager. Everything create_app offers applies under the prefix too: the health route, answering "
    "with the server's name, and the max_body_bytes you were given.",
)
async def test_mount_app_defaults(target: Target) -> None:
    rng = random.Random()
    host, name = f"desk-{_hex()}.example", f"desk-{_hex()}"
    prefix, limit = f"/svc-{_hex(2)}", rng.randint(3_000, 12_000)

    transport = target.module("transport")
    # First a throwaway copy, started and stopped without uvicorn, so a failing startup is reported
    # with its cause (the MCP session manager runs once per server, hence a server of its own).
    spare = transport.mount_app(bare_server(target, name), prefix=prefix, allowed_hosts=[host], max_body_bytes=limit)
    problem = await _startup_problem(target, spare)
    assert not problem, (
        f"the app from mount_app(server, prefix={prefix!r}, allowed_hosts=[...], max_body_bytes={limit}), given no "
        f"lifespan and no routes, failed to start: {problem}. Without a host lifespan, the host app must still "
        "start and run the MCP session manager"
    )

    server = bare_server(target, name)
    transport.add_health_route(server)
    app = transport.mount_app(server, prefix=prefix, allowed_hosts=[host], max_body_bytes=limit)
    seen: dict[str, dict[str, Any]] = {}
    async with target.http(app, path=f"{prefix}/mcp", graceful=False) as url:
        base = url.rsplit(prefix, 1)[0]
        async with httpx2.AsyncClient(timeout=10) as http:
            health = await http.get(f"{base}{prefix}/health", headers={"Host": host})  # every route checks Host
        small = await _discover(url, host, content=padded(limit - 200, wide=False))
        big = await _discover(url, host, content=padded(limit + 200, wide=False))
        if small.status_code == 200:
            for mode in MODES:
                async with mcp_client(url, host, None, mode) as client:
                    seen[mode] = await whoami(client, mode)
    assert health.status_code == 200, f"GET {prefix}/health got {_status(health)}, expected 200"
    try:
        body = health.json()
    except ValueError:
        pytest.fail(f"{prefix}/health should answer JSON, got {health.text[:80]!r}")
    assert body == {"status": "ok", "server": name}, (
        f"{prefix}/health answered {body}, expected {{'status': 'ok', 'server': {name!r}}} (the server's own name)"
    )
    assert small.status_code == 200, (
        f"a {limit - 200}-byte POST to {prefix}/mcp (under max_body_bytes={limit}) got {_status(small)}, expected 200"
        + (
            ": the MCP app crashed, is the session manager running when no host lifespan is given?"
            if small.status_code == 500
            else ""
        )
    )
    assert big.status_code == 413, (
        f"a {limit + 200}-byte POST to {prefix}/mcp (over max_body_bytes={limit}) got {big.status_code}, expected "
        "413: the mounted app does not apply the limit mount_app was given"
    )
    for mode in MODES:
        assert seen.get(mode, {}).get("protocol") == MODES[mode], (
            f"a {mode} client through the mounted app saw {seen.get(mode)}, expected protocol {MODES[mode]}"
        )
