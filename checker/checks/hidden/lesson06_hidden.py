"""Lesson 6, instructor-only checks: edge cases the visible checks do not spell out.

Left out of the student release and run by `course grade`, so a submission tuned to the
visible checks alone does not collect these points. The visible checks start real replicas
(whose configuration sits in the process environment), nginx and Redis; these stay fast:
servers built in memory from a mapping, one app behind one uvicorn, and the event codec's
pure functions. Keys, names, URIs and values are random on every run.
"""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
    event_from_wire,
    event_to_notification,
)
from mcp.types import INVALID_PARAMS, InputRequiredResult

from checker.checks.kit.eras import LEGACY
from checker.checks.kit.text import word
from checker.checks.support.lesson06 import (
    KEYS,
    LIST_CALLS,
    NotAnEvent,
    accept_filing,
    event_here,
    event_there,
    hints_given,
    hints_on_the_wire,
    replica_names,
    split_in_memory,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

REPLICA = "RESEARCH_DESK_REPLICA"
ROOT = "RESEARCH_DESK_ROOT"
STATELESS = "RESEARCH_DESK_STATELESS"


def _here(target: Target, obj: Any) -> Any:
    """`obj` (from the student's code): None, the SDK's event it is, or a description in angle brackets."""
    got = event_here(target, obj, limit=200)
    return f"<{got!r}>" if isinstance(got, NotAnEvent) else got


def _decoded(target: Target, scaling: Any, data: Any) -> list[Any]:
    """["ok", what decode_event returned, read back here] or ["raised", the exception]."""
    try:
        return ["ok", _here(target, scaling.decode_event(data))]
    except Exception as exc:  # noqa: BLE001 - an observation: the check decides
        return ["raised", f"{type(exc).__name__}: {exc}"[:200]]


# --- checks ---------------------------------------------------------------------------------------


@check("create_server takes its keys from the mapping it is given, and a rotated ring still opens old state",
       points=1,
       hint="create_server(environ) must be configured only from `environ`, the mapping passed in (the notebook "
            "builds two replicas in memory from two dicts); the process environment may hold nothing, or something "
            "else. During a rotation one replica runs keys 'old,new' and another 'new,old': the first key seals, "
            "every key opens.")
async def test_keys_from_the_given_mapping(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    old, new, other = (secrets.token_hex(32) for _ in range(3))
    first, second, stranger = replica_names(3)

    def build(name: str, ring: str) -> Any:
        return scaling.create_server({REPLICA: name, ROOT: str(tmp_path), KEYS: ring})

    sealer, rotated, foreign = build(first, f"{old},{new}"), build(second, f"{new},{old}"), build(stranger, other)
    title, text = f"{word()} {word()}", " ".join(word() for _ in range(6))
    with anyio.fail_after(10):
        async with target.client(sealer, elicitation_callback=accept_filing) as a, \
                target.client(rotated, elicitation_callback=accept_filing) as b, \
                target.client(foreign, elicitation_callback=accept_filing) as c:
            finished = await split_in_memory(a, b, title, text)
            refused = await split_in_memory(a, c, word(), word())
    if isinstance(finished, MCPError):
        pytest.fail(f"round 1 on replica {first} ({KEYS}='old,new' in its mapping), retry on replica {second} "
                    f"('new,old'): MCPError {finished.code} {finished.message}. Both mappings share the key that "
                    f"sealed it: does replica_server read the configuration it is given, rather than os.environ?")
    assert not isinstance(finished, InputRequiredResult), f"replica {second} asked again instead of finishing the call"
    assert not finished.is_error, (
        f"file_note failed on replica {second}: {finished.content[0].text if finished.content else ''}")
    receipt = finished.structured_content or {}
    assert receipt.get("replica") == second and receipt.get("filed"), (
        f"the retry should be finished (and filed) by replica {second}, got {receipt}")
    note = tmp_path / str(receipt.get("name"))
    try:
        written = target.read_text(note)  # read where the student's code wrote it
    except OSError:
        written = ""
    assert text in written, f"the note was not written to {note}"
    if not isinstance(refused, MCPError):
        pytest.fail(f"state sealed by replica {first} was accepted by replica {stranger}, whose mapping holds a "
                    f"different key: the keys in use are not the ones the mapping configures")
    assert refused.code == INVALID_PARAMS and "requeststate" in refused.message.lower(), (
        f"expected 'Invalid or expired requestState' (-32602) from a replica with another key, got "
        f"{refused.code} {refused.message}")


@check("only RESEARCH_DESK_STATELESS=1 turns legacy sessions off, and then no session id is sent", points=1,
       hint="The switch is on for exactly one value, \"1\": an operator who writes 0, false or off means off, and "
            "must keep sessions (and the back-channel they carry). When sessions are off there is no session id to "
            "tag, so the owner tag must not invent a header.")
async def test_stateless_only_on_one(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    off = random.choice(["0", "false", "no", "off", "False"])
    name = replica_names(1)[0]
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": word(), "version": "1"}}}
    seen: dict[str, list[str]] = {}
    for value in (off, "1"):
        app = scaling.build_app({REPLICA: name, ROOT: str(tmp_path), STATELESS: value})
        async with target.http(app, graceful=False) as url, httpx2.AsyncClient(timeout=10) as http:
            response = await http.post(url, json=initialize,
                                       headers={"accept": "application/json, text/event-stream"})
        assert response.status_code == 200, (
            f"a legacy initialize with {STATELESS}={value!r} got HTTP {response.status_code}")
        seen[value] = response.headers.get_list("mcp-session-id")
    kept = seen[off]
    assert kept, (f"with {STATELESS}={off!r} a legacy initialize got no Mcp-Session-Id: only the value \"1\" turns "
                  f"sessions off; any other value keeps them")
    assert len(kept) == 1 and kept[0].startswith(f"{name}.") and len(kept[0]) > len(name) + 8, (
        f"with {STATELESS}={off!r} the session id should be '{name}.<id>', got {kept}")
    assert not seen["1"], (
        f"with {STATELESS}=1 a legacy initialize still got Mcp-Session-Id {seen['1']}: stateless serving has no "
        f"session, so there is nothing to tag (and a bare tag would send the client back with a bogus id)")


@check("events use the SDK's wire form, so every replica (and version) reads the others", points=1,
       hint="Another replica may run another build of the desk, or another program entirely: the message on the "
            "channel must be the JSON of the SDK's own notification for the event (mcp.shared.subscriptions), "
            "and decoding must accept any such JSON (any key order, extra fields like _meta) and shrug off "
            "near-misses, such as an update that carries no usable uri.")
async def test_sdk_wire_form(target: Target) -> None:
    scaling = target.module("scaling")
    uri = f"desk://notes/{word()} {random.choice(['café', '研究', 'q&a', 'naïve'])}?v={random.randint(1, 999)}&t=\"x\""
    list_changes: list[ServerEvent] = [ToolsListChanged(), PromptsListChanged(), ResourcesListChanged()]
    events = [ResourceUpdated(uri=uri), random.choice(list_changes)]
    # What this build writes, read the way any other program would: JSON, then the SDK's parser.
    for event in events:
        data = scaling.encode_event(event_there(target, event))
        assert isinstance(data, (bytes, str)), (
            f"encode_event should return bytes, got a {target.classes(data)[0].rsplit('.', 1)[-1]}")
        try:
            message = json.loads(data)
        except ValueError:
            pytest.fail(f"encode_event({event!r}) is not JSON: {data[:80]!r}")
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params") if isinstance(message, dict) else None
        want = event_to_notification(event, {}).method
        assert method == want, (
            f"encode_event({event!r}) wrote {data[:120]!r}: expected the SDK's notification for it, method {want!r}")
        got = event_from_wire(method, params if isinstance(params, dict) else None)
        assert got == event, f"the SDK reads encode_event({event!r}) back as {got!r}"
    # What another build might write: the SDK's notification, serialized some other way.
    for event in events:
        wire = event_to_notification(event, {"io.modelcontextprotocol/subscriptionId": random.randint(1, 99)})
        fields = wire.model_dump(mode="json", by_alias=True, exclude_none=True)
        fields["jsonrpc"] = "2.0"
        fields = dict(random.sample(list(fields.items()), len(fields)))
        text = json.dumps(fields, indent=random.choice([None, 2]), ensure_ascii=random.choice([True, False]))
        outcome, got = _decoded(target, scaling, text.encode())
        assert outcome == "ok", f"decode_event raised on the SDK's own wire form {text[:120]!r}: {got}"
        assert got == event, (
            f"decode_event({text[:120]!r}) gave {got!r}, expected {event!r}: read the SDK's wire form, "
            f"not only the exact bytes your encode_event writes")
    near_misses = [
        {"jsonrpc": "2.0", "method": "notifications/resources/updated"},
        {"method": "notifications/resources/updated", "params": {"uri": random.randint(1, 99)}},
        {"method": "notifications/resources/updated", "params": [uri]},
        {"method": "notifications/resources/updated", "params": None},
        {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": word()}},
        "notifications/tools/list_changed",
    ]
    for junk in [json.dumps(x).encode() for x in near_misses] + [b"\x80" + word().encode()]:
        outcome, got = _decoded(target, scaling, junk)
        assert outcome == "ok", (
            f"decode_event({junk!r}) raised {got}: anything that is not an event is None, never an exception")
        assert got is None, f"decode_event({junk!r}) should be None (not an event), got {got!r}"


# --- caching hints (issue 19): the visible requirements, at their boundaries ---------------------

@check("desk_cache_hints at the edges: reads stale at once, lists kept for a day", points=1,
       hint="ttlMs 0 means 'stale at once' and is still a hint with a scope; the TTLs come from the arguments as "
            "given, large or zero, and a read stays 'private' whatever its TTL.")
async def test_cache_hints_at_the_edges(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    for list_ttl, read_ttl in ((24 * 3600 * 1000 - random.randrange(1, 1000), 0), (0, random.randrange(1, 50))):
        hints = scaling.desk_cache_hints(list_ttl_ms=list_ttl, read_ttl_ms=read_ttl)
        probe = target.library("mcp.server.mcpserver").MCPServer(f"probe-{word()}", log_level="WARNING",
                                                                   cache_hints=hints)
        scaling.register(probe, replica=replica_names(1)[0], root=tmp_path)
        async with target.client(probe, cache=None) as client:
            seen = await hints_on_the_wire(client)
        expected = {method: (list_ttl, "public") for method, _ in LIST_CALLS}
        expected["resources/read"] = (read_ttl, "private")
        assert seen == expected, (
            f"desk_cache_hints(list_ttl_ms={list_ttl}, read_ttl_ms={read_ttl}) put {seen} (ttlMs, cacheScope) on the "
            f"wire, expected {expected}")


@check("the desk served over HTTP carries its cache hints, whichever replica answers", points=1,
       hint="The hints travel with every result, over any transport: each replica's server is built with "
            "desk_cache_hints(), and HTTP changes nothing.")
async def test_desk_hints_over_http(target: Target, tmp_path: Path) -> None:
    from mcp import Client

    scaling = target.module("scaling")
    hints = scaling.desk_cache_hints()
    expected = hints_given(hints)
    assert expected["resources/read"][1] == "private" and expected["tools/list"][1] == "public", (
        f"desk_cache_hints() gives {expected}: lists are 'public', reads 'private'")
    seen_by: dict[str, dict[str, tuple[int, str]]] = {}
    for name in replica_names(2):
        app = scaling.build_app({REPLICA: name, ROOT: str(tmp_path), STATELESS: "1"})
        async with target.http(app, graceful=False) as url, Client(url, cache=None) as client:
            seen_by[name] = await hints_on_the_wire(client)
    for name, seen in seen_by.items():
        assert seen == expected, f"replica {name} over HTTP sent {seen}, desk_cache_hints() says {expected}"
