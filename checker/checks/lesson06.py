"""Lesson 6 checks: replicas that behave as one server.

Real replicas are separate `python -m uvicorn --factory research_desk.scaling:build_app`
processes on loopback ports, started in parallel and stopped when the check ends (see
`support/lesson06.py`). nginx and redis-server are started by the checks that need them, on free
loopback ports with private working folders; without the binary those checks are skipped (with
install advice), never failed. Keys, names, channels and titles are random on every run, so only
code that reads its configuration passes.

This file holds Exercises A–C (keys and name from configuration, one replica per process, legacy
sessions routed by their owner); `lesson06_bus.py` the event bus (Exercise D), and
`lesson06_caching.py` the caching hints.
"""

from __future__ import annotations

import ast
import re
import secrets
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import RequestStateSecurity
from mcp.server.request_state import InvalidRequestState
from mcp.shared.subscriptions import ResourceUpdated
from mcp.types import InputRequiredResult

from checker.checks.kit.text import word
from checker.checks.support.lesson06 import (
    KEYS,
    NOTES,
    RoundRobin,
    accept_filing,
    error_text,
    is_rejected_state,
    listener,
    nginx,
    replica_names,
    replica_of,
    replicas,
    server_names,
    split_call,
    split_in_memory,
    written,
)
from checker.marks import check, installed_or_skip
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio


# --- Exercises A and B: keys and name from configuration, one replica per process ----------------------


@check("request-state keys come from configuration, never from code", points=2,
       hint="Replicas can only share what they all read: the environment. RESEARCH_DESK_STATE_KEYS holds a key "
            "ring (comma-separated); RequestStateSecurity takes a ring in which the first key seals and every key "
            "unseals, which is how keys rotate. No variable: no policy. When the SDK refuses a key, the operator "
            "needs to hear which setting to fix.")
async def test_state_keys_from_configuration(target: Target) -> None:
    scaling = target.module("scaling")
    current, previous, other = (secrets.token_hex(32) for _ in range(3))
    env = {KEYS: f"{current},{previous}", "RESEARCH_DESK_REPLICA": "a"}
    policy = scaling.state_security_from_env(env)
    sdk_policy = f"{RequestStateSecurity.__module__}.{RequestStateSecurity.__qualname__}"
    assert sdk_policy in target.classes(policy), (
        f"with {KEYS} set, state_security_from_env should return a RequestStateSecurity, got {policy!r}")
    payload = secrets.token_bytes(24)
    token = policy.codec.seal(payload)
    try:
        assert RequestStateSecurity(keys=[current]).codec.unseal(token) == payload
    except InvalidRequestState:
        pytest.fail(f"state was not sealed with the first key in {KEYS}: the first key seals, every key unseals")
    try:
        old = RequestStateSecurity(keys=[previous]).codec.seal(payload)
        assert policy.codec.unseal(old) == payload
    except InvalidRequestState:
        pytest.fail(f"state sealed with the second key in {KEYS} was rejected: every configured key must "
                    f"unseal, or a key rotation logs everyone out")
    again = scaling.state_security_from_env(dict(env))
    try:
        again.codec.unseal(token)
    except InvalidRequestState:
        pytest.fail("two policies built from the same configuration do not accept each other's state: the key "
                    "must come from the configuration, not be generated in the process")
    stranger = scaling.state_security_from_env({KEYS: other})
    with pytest.raises(InvalidRequestState, match=""):
        stranger.codec.unseal(token)
    for empty in ({}, {KEYS: ""}):
        assert scaling.state_security_from_env(empty) is None, (
            f"with {empty or 'no configuration'}, return None (the SDK then keeps a key for this one process)")
    for short in (word(low=12, high=12), "k" * 31, "é" * 15 + "k"):
        try:
            scaling.state_security_from_env({KEYS: short})
        except ValueError as exc:
            assert KEYS in str(exc), (
                f"the error for a short key should name {KEYS} so the operator knows what to fix: {exc}")
        else:
            pytest.fail(f"a {len(short.encode())}-byte secret was accepted: request-state keys need at least 32 bytes")
    for exact in (secrets.token_hex(16), "é" * 16):
        try:
            fits = scaling.state_security_from_env({KEYS: exact})
        except ValueError as exc:
            pytest.fail(f"a key of exactly 32 bytes ({len(exact)} characters) was refused ({exc}): the SDK wants "
                        "at least 32 bytes, so 32 is enough; let RequestStateSecurity judge the keys")
        assert sdk_policy in target.classes(fits), f"a 32-byte key should give a RequestStateSecurity, got {fits!r}"
    source = target.read_text(scaling.__file__)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)) and len(node.value) >= 32:
            text = node.value.decode("latin-1") if isinstance(node.value, bytes) else node.value
            looks_random = (re.fullmatch(r"[A-Za-z0-9+/=_\-]+", text) is not None
                            and re.search(r"[0-9]", text) is not None and re.search(r"[A-Za-z]", text) is not None)
            if isinstance(node.value, bytes) or looks_random:
                pytest.fail(f"scaling.py line {node.lineno} holds a string that looks like a secret key "
                            f"({text[:6]}...): keys belong in the environment, never in code")


@check("every replica has the same server name and publishes through the bus it is given", points=2,
       hint="The SDK seals request state for an audience: the server's name. Name the server the same on every "
            "replica (tell replicas apart elsewhere, e.g. in replica_info), and pass the bus as the server's "
            "`subscriptions`.")
async def test_one_name_and_the_given_bus(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    first, second = replica_names(2)
    servers = [scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
               for name in (first, second)]
    assert servers[0].name == servers[1].name, (
        f"replicas {first} and {second} are named {servers[0].name!r} and {servers[1].name!r}: state sealed by "
        f"one is addressed to a different audience than the other, so a retry on a sibling fails")
    assert first not in servers[0].name, "the replica's own name is part of the server name; keep it out"
    bus = target.library("mcp.server.subscriptions").InMemorySubscriptionBus()  # the SDK's, where the server lives
    heard: list[Any] = []
    bus.subscribe(listener(target, heard))
    server = scaling.create_server({"RESEARCH_DESK_REPLICA": first, "RESEARCH_DESK_ROOT": str(tmp_path)}, bus=bus)
    title = f"{word()} {word()}"
    async with target.client(server, elicitation_callback=accept_filing) as client:
        result = await client.call_tool("file_note", {"title": title, "text": word(low=20, high=20)})
    assert not result.is_error, f"file_note failed: {error_text(result)}"
    assert ResourceUpdated(uri=NOTES) in heard, (
        "filing a note published nothing on the bus create_server was given: pass it to MCPServer(subscriptions=...)")
    # The lifespan replica_server is handed is the one that keeps a Redis bus connected: it must run.
    noted: list[str] = []
    stand_in = target.library("unittest.mock").MagicMock
    on_exit = target.expose(lambda *exc_info: noted.append("stop"))

    def lifespan(app: Any) -> Any:
        noted.append("start")
        return stand_in(**{"__aenter__.return_value": {}, "__aexit__.side_effect": on_exit})

    bare = scaling.replica_server({"RESEARCH_DESK_REPLICA": second, "RESEARCH_DESK_ROOT": str(tmp_path)},
                                  lifespan=target.expose(lifespan),
                                  events=target.library("mcp.server.subscriptions").InMemorySubscriptionBus())
    async with target.client(bare) as client:
        await client.list_tools()
    assert noted[:1] == ["start"], (
        "replica_server(environ, lifespan=..., events=...) built a server that never ran the lifespan it was given: "
        "pass it to MCPServer(lifespan=...), it is what connects a Redis bus")


@check("create_server is configured only from the mapping it is given", points=2,
       hint="create_server(environ) hands `environ` to replica_server, and everything must come from it, never from "
            "os.environ: the notebook and the tests build replicas in one process from dicts. Two mappings with the "
            "same RESEARCH_DESK_STATE_KEYS share state; a mapping with another key does not.")
async def test_configured_from_the_mapping(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    key, other = secrets.token_hex(32), secrets.token_hex(32)
    first, second, stranger = replica_names(3)

    def build(name: str, ring: str) -> Any:
        return scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path), KEYS: ring})

    one, sibling, foreign = build(first, key), build(second, key), build(stranger, other)
    text = " ".join(word() for _ in range(6))
    with anyio.fail_after(10):
        async with target.client(one, elicitation_callback=accept_filing) as a, \
                target.client(sibling, elicitation_callback=accept_filing) as b, \
                target.client(foreign, elicitation_callback=accept_filing) as c:
            finished = await split_in_memory(a, b, f"{word()} {word()}", text)
            refused = await split_in_memory(a, c, word(), word())
    if isinstance(finished, MCPError):
        pytest.fail(f"round 1 on replica {first}, retry on replica {second}, both built from mappings holding the same "
                    f"{KEYS}: MCPError {finished.code} {finished.message}. Does replica_server read the mapping it is "
                    "given, rather than os.environ?")
    assert not isinstance(finished, InputRequiredResult), f"replica {second} asked again instead of finishing the call"
    receipt = finished.structured_content or {}
    assert not finished.is_error and receipt.get("replica") == second and receipt.get("filed"), (
        f"the retry should be finished (and filed) by replica {second}, got {receipt or finished.content}")
    assert text in (written(target, tmp_path / str(receipt.get("name"))) or ""), "the note was not written"
    if not isinstance(refused, MCPError):
        pytest.fail(f"state sealed by replica {first} was accepted by replica {stranger}, whose mapping holds another "
                    "key: the keys in use are not the ones the mapping configures")
    assert is_rejected_state(refused), f"expected 'Invalid or expired requestState' (-32602), got {refused}"


@check("a multi-round-trip call finishes on a sibling replica when keys are shared", points=3,
       hint="Round 1 on one replica returns sealed request_state; the retry may reach any replica. Give every "
            "replica the same RESEARCH_DESK_STATE_KEYS and read them in state_security_from_env; keep the server "
            "name identical everywhere.")
async def test_retry_on_a_sibling(target: Target, tmp_path: Path) -> None:
    key = secrets.token_hex(32)
    first, second = replica_names(2)
    async with replicas(target, tmp_path, {first: {KEYS: key}, second: {KEYS: key}}) as (a, b):
        for one, other in ((a, b), (b, a)):
            title = f"{word()} {word()}"
            text = " ".join(word() for _ in range(8))
            split = await split_call(one, other, title, text)
            if split.error is not None:
                names = await server_names(a, b)
                why = (f"the replicas are named {names[a.name]!r} and {names[b.name]!r}, so the audience differs"
                       if len(set(names.values())) > 1 else
                       f"both replicas were started with the same {KEYS}: is it read?")
                pytest.fail(f"round 1 on replica {one.name}, retry on replica {other.name}: "
                            f"MCPError {split.error.code} {split.error.message}; {why}")
            assert split.result and split.result.get("replica") == other.name and split.result.get("filed"), (
                f"the retry should be finished (and filed) by replica {other.name}, got {split.result}")
            note = tmp_path / "workspace" / str(split.result.get("name"))
            assert text in (written(target, note) or ""), f"the note was not written to {note}"


@check("replicas without keys, or with other keys, reject each other's state", points=2,
       hint="Without RESEARCH_DESK_STATE_KEYS each process must seal with a key of its own (return None and let "
            "the SDK make one); a key written in the code, or a default key, would let any copy of the code "
            "forge state for your server.")
async def test_strangers_reject_state(target: Target, tmp_path: Path) -> None:
    lone1, lone2, keyed = replica_names(3)
    specs = {lone1: {}, lone2: {}, keyed: {KEYS: secrets.token_hex(32)}}
    async with replicas(target, tmp_path, specs) as (p, q, k):
        same = await split_call(p, p, word(), word())
        assert same.error is None, (
            f"without keys a replica must still finish its own multi-round-trip calls, got {same.error}")
        for one, other in ((p, q), (p, k), (k, p)):
            split = await split_call(one, other, word(), word())
            if split.error is None:
                pytest.fail(f"state sealed by replica {one.name} ({'own key' if one is not k else 'configured key'}) "
                            f"was accepted by replica {other.name} ({'configured key' if other is k else 'no key'}): "
                            f"they share a key nobody configured. Is there a key (or a default) in the code?")
            assert is_rejected_state(split.error), (
                f"expected 'Invalid or expired requestState' (-32602), got {split.error.code} {split.error.message}")



# --- Exercise C: legacy sessions need a proxy that knows where they live ------------------------------


@check("stateless legacy calls spread over replicas, stateful sessions stay the default", points=2,
       hint="streamable_http_app has a switch that serves 2025 clients without sessions, so any replica can answer "
            "any of their requests. It also removes their back-channel, so it is opt-in: on only when "
            "RESEARCH_DESK_STATELESS says \"1\".")
async def test_legacy_stateless_spreads(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    names = replica_names(2)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}
    for value in (None, "0", "false", "1"):
        env = {"RESEARCH_DESK_REPLICA": names[0], "RESEARCH_DESK_ROOT": str(tmp_path)}
        if value is not None:
            env["RESEARCH_DESK_STATELESS"] = value
        async with target.http(scaling.build_app(env), graceful=False) as url, httpx2.AsyncClient() as http:
            response = await http.post(url, headers={"accept": "application/json, text/event-stream"},
                                       json=initialize)
        ids = response.headers.get_list("mcp-session-id")
        setting = "without RESEARCH_DESK_STATELESS" if value is None else f"with RESEARCH_DESK_STATELESS={value!r}"
        if value == "1":
            assert response.status_code == 200 and not ids, (
                f"{setting} a legacy initialize got Mcp-Session-Id {ids} (HTTP {response.status_code}): stateless "
                "serving has no session, so there is nothing to tag, and a made-up id would send the client back "
                "with it")
        else:
            assert ids, (f"{setting} a legacy client should get a session (Mcp-Session-Id): stateless mode drops the "
                         "back-channel, so it is on only for the value \"1\"")
    served: list[str] = []
    spec = {name: {"RESEARCH_DESK_STATELESS": "1"} for name in names}
    async with replicas(target, tmp_path, spec) as (a, b):
        transport = RoundRobin([a.port, b.port])
        async with httpx2.AsyncClient(transport=transport, timeout=10) as http:
            try:
                with anyio.fail_after(10):
                    async with Client(streamable_http_client(a.url, http_client=http), mode="legacy") as client:
                        for _ in range(8):
                            served.append(await replica_of(client))
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"a legacy client whose requests alternate between two replicas failed with "
                            f"{type(leaf).__name__}: {leaf} (with RESEARCH_DESK_STATELESS=1 there must be no session)")
    counts = {name: served.count(name) for name in names}
    assert all(count >= 2 for count in counts.values()), f"calls should reach both replicas, got {counts}"


@check("a legacy session id names the replica that owns it", points=2,
       hint="An ASGI middleware sees both directions: it can add the owner to the Mcp-Session-Id a response "
            "carries, and take off its own owner (and only its own) from a request's header before the SDK looks "
            "the session up.")
async def test_session_ids_name_their_owner(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    name, stranger = replica_names(2)
    seen: list[str] = []

    async def record(response: httpx2.Response) -> None:
        if response.headers.get("mcp-session-id"):
            seen.append(response.headers["mcp-session-id"])

    app = scaling.build_app({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
    async with target.http(app, graceful=False) as url:  # nothing is asked of it once it stops
        async def raw_call(session_id: str) -> int:
            headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25",
                       "mcp-session-id": session_id}
            async with httpx2.AsyncClient(timeout=5) as raw:
                answer = await raw.post(url, headers=headers, json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"})
            return answer.status_code

        async with httpx2.AsyncClient(event_hooks={"response": [record]}, timeout=10) as http:
            try:
                async with Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
                    served = [await replica_of(client) for _ in range(3)]
                    current = seen[0] if seen else ""
                    raw_id = current.split(".", 1)[-1]
                    own, foreign = await raw_call(current), await raw_call(f"{stranger}.{raw_id}")
            except Exception as exc:  # noqa: BLE001
                leaf = leaf_exception(exc)
                pytest.fail(f"a legacy session broke after the first response: {type(leaf).__name__}: {leaf}. "
                            f"Does the middleware strip its prefix from incoming session ids?")
        assert seen, "the legacy client never received an Mcp-Session-Id"
        assert all(value.startswith(f"{name}.") and len(value) > len(name) + 8 for value in seen), (
            f"session ids should look like '{name}.<id>', got {seen[0]!r}")
        assert served == [name] * 3
        assert own == 200, f"a request with this replica's own session id got HTTP {own}, expected 200"
        assert foreign == 404, (
            f"a session id tagged for replica {stranger} reached replica {name} and got HTTP {foreign}; only "
            f"this replica's own prefix may be removed, so anything else stays 'Session not found' (404)")
        async with target.client(url) as modern:
            assert await replica_of(modern) == name, "modern clients must work through the middleware too"
        async with httpx2.AsyncClient(timeout=5) as raw:
            headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": "2026-07-28",
                       "mcp-method": "server/discover"}
            discover = await raw.post(url, headers=headers, json={
                "jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientInfo": {"name": "c", "version": "1"},
                    "io.modelcontextprotocol/clientCapabilities": {}}}})
        assert discover.status_code == 200 and "mcp-session-id" not in discover.headers, (
            f"a modern request through the middleware got HTTP {discover.status_code} with Mcp-Session-Id "
            f"{discover.headers.get('mcp-session-id')!r}: tag only a session id the SDK sent, never invent one")


@check("through nginx, every legacy session stays on its replica and sessions spread", points=3,
       hint="nginx cannot remember which replica answered an initialize, and that request has no session id "
            "yet. Route on what every later request carries: the owner written into Mcp-Session-Id. Requests "
            "without one may go anywhere.")
async def test_nginx_sticky_legacy_sessions(target: Target, tmp_path: Path) -> None:
    binary = installed_or_skip("nginx")
    names = replica_names(2)
    key = secrets.token_hex(32)
    async with replicas(target, tmp_path, {name: {KEYS: key} for name in names}) as started, \
            nginx(target, binary, tmp_path, {r.name: r.port for r in started}) as url:
            sessions: list[list[str]] = []
            failures: list[str] = []

            async def one_session() -> None:
                try:
                    with anyio.fail_after(10):
                        async with Client(url, mode="legacy") as client:
                            sessions.append([await replica_of(client) for _ in range(3)])
                except Exception as exc:  # noqa: BLE001
                    leaf = leaf_exception(exc)
                    failures.append(f"{type(leaf).__name__}: {leaf}")

            for _ in range(3):
                async with anyio.create_task_group() as tg:
                    for _ in range(4):
                        tg.start_soon(one_session)
            assert not failures, (
                f"{len(failures)} of 12 legacy sessions through nginx failed ({failures[0]}): a request of a "
                f"session reached a replica that does not hold it")
            split = [s for s in sessions if len(set(s)) > 1]
            assert not split, f"one session was served by several replicas: {split[0]}"
            used = {s[0] for s in sessions}
            assert used == set(names), (
                f"all 12 sessions went to {sorted(used)}: new sessions should spread over every replica")
            with anyio.fail_after(10):
                async with Client(url, mode="legacy", elicitation_callback=accept_filing) as client:
                    long = [await replica_of(client) for _ in range(15)]
                    result = await client.call_tool("file_note", {"title": word(), "text": word()})
            assert len(set(long)) == 1, f"one long legacy session was served by {sorted(set(long))}"
            assert not result.is_error and (result.structured_content or {}).get("filed"), (
                "a legacy file_note through nginx failed: the elicitation answer must reach the same replica")
            async with target.client(url) as modern:
                spread = {await replica_of(modern) for _ in range(8)}
            assert spread == set(names), (
                f"modern requests through nginx should reach every replica, got {sorted(spread)}")
