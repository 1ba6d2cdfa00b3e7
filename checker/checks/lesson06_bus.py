"""Lesson 6 checks, Exercise D: one event bus for every replica.

Events travel between replicas through Redis, in the SDK's own wire form. redis-server is
started by the checks that need it, on a free loopback port with a private working folder
(`kit/services.py`); without it those checks are skipped with install advice, never failed. The
events the check publishes are made where the student's code runs, and what it hears is read back
as the SDK's events (`support/lesson06.py`).
"""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis  # here, once per lesson run: the student's buses and replicas import it too
from mcp import Client
from mcp.shared.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
    event_from_wire,
    event_to_notification,
)

from checker.checks.kit.logs import plain_tracebacks
from checker.checks.kit.services import redis_server
from checker.checks.kit.text import word
from checker.checks.support.lesson06 import (
    NOTES,
    Replica,
    accept_filing,
    error_text,
    event_here,
    event_there,
    exploding,
    heard_all,
    kind,
    listener,
    replica_names,
    replicas,
)
from checker.marks import check, installed_or_skip
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("bus events travel as the SDK's wire form and survive the trip through bytes", points=1,
       hint="The SDK already has a wire form for each event (mcp.shared.subscriptions: event_to_notification and "
            "event_from_wire): write the JSON of that notification, and read any such JSON back. Decoding must never "
            "raise: other programs may publish on the same channel, and a near miss (no uri, params that are not an "
            "object) is simply not an event.")
async def test_events_round_trip(target: Target) -> None:
    scaling = target.module("scaling")
    events: list[ServerEvent] = [ToolsListChanged(), PromptsListChanged(), ResourcesListChanged(),
                                 ResourceUpdated(uri=f"desk://{word()}/{word()}?v={random.randint(1, 999)}")]
    for event in events:
        data = scaling.encode_event(event_there(target, event))
        assert isinstance(data, (bytes, str)), f"encode_event should return bytes, got {kind(target, data)}"
        back = event_here(target, scaling.decode_event(data))
        assert back == event, f"{event!r} came back as {back!r}"
        text = data.decode() if isinstance(data, bytes) else data
        assert event_here(target, scaling.decode_event(text)) == event, (
            "decode_event should accept str as well as bytes")
    for event in events:   # what another program reads: the JSON of the SDK's own notification for the event
        data = scaling.encode_event(event_there(target, event))
        try:
            message = json.loads(data)
        except ValueError:
            pytest.fail(f"encode_event({event!r}) is not JSON: {data[:80]!r}")
        method = message.get("method") if isinstance(message, dict) else None
        params = message.get("params") if isinstance(message, dict) else None
        want = event_to_notification(event, {}).method
        assert method == want and event_from_wire(method, params if isinstance(params, dict) else None) == event, (
            f"encode_event({event!r}) wrote {data[:120]!r}: expected the SDK's notification for it (method {want!r}), "
            "which every replica, of any version, can read")
        wire = event_to_notification(event, {"io.modelcontextprotocol/subscriptionId": 7})
        fields = {"jsonrpc": "2.0", **wire.model_dump(mode="json", by_alias=True, exclude_none=True)}
        shuffled = json.dumps(dict(reversed(list(fields.items()))), indent=2).encode()
        assert event_here(target, scaling.decode_event(shuffled)) == event, (
            f"decode_event({shuffled[:120]!r}) did not give {event!r}: read any JSON of the SDK's wire form (keys in "
            "any order, extra fields such as _meta), not only the exact bytes your encode_event writes")
    near_misses = [{"jsonrpc": "2.0", "method": "notifications/resources/updated"},
                   {"method": "notifications/resources/updated", "params": {"uri": 42}},
                   {"method": "notifications/resources/updated", "params": [NOTES]},
                   {"method": "notifications/resources/updated", "params": None},
                   {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}]
    for junk in (b"", b"not json", b"[1, 2]", b'{"method": 3}', b'{"method": "tools/call", "params": {}}',
                 word().encode(), b"\x80\xff", *(json.dumps(x).encode() for x in near_misses)):
        try:
            got = event_here(target, scaling.decode_event(junk))
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"decode_event({junk!r}) raised {type(exc).__name__}: return None for anything that is not "
                        "an event")
        assert got is None, f"decode_event({junk!r}) should be None, got {got!r}"


@check("RedisSubscriptionBus delivers every event once to every listener on the channel", points=2,
       hint="publish() only sends to Redis; each bus's reader gets every message on its channel (its own too) and "
            "calls the local listeners. Catch a listener's exception so the next listener still hears the event.")
async def test_redis_bus_fan_out(target: Target, tmp_path: Path) -> None:
    binary = installed_or_skip("redis-server")
    scaling = target.module("scaling")
    channel = f"desk-{word()}"
    async with redis_server(binary, tmp_path / "redis") as url:
        here = scaling.RedisSubscriptionBus(url, channel=channel)
        there = scaling.RedisSubscriptionBus(url, channel=channel)
        elsewhere = scaling.RedisSubscriptionBus(url, channel=channel + "-other")
        # The listeners are the check's: what they hear is noted here, as it arrives.
        heard: dict[str, list[Any]] = {"here": [], "there": [], "elsewhere": []}
        complaint = f"a broken listener {word(low=8, high=8)}"
        here.subscribe(target.expose(exploding(complaint)))
        # A plain handler on the root logger where the bus runs: each record, one line on that process's stderr.
        token = f"lesson06-{secrets.token_hex(6)}"
        logs = target.library("logging")
        handler = logs.StreamHandler()
        handler.setLevel(logs.WARNING)
        handler.setFormatter(logs.Formatter(f"{token} {{message!r}} {{exc_info!r}}", style="{"))
        logs.getLogger().addHandler(handler)
        here.subscribe(listener(target, heard["here"]))
        stop_there = there.subscribe(listener(target, heard["there"]))
        # Subscribed after the listener it watches, so it is called after it: once it has heard an
        # event, the listener above has heard it too, if it is still subscribed.
        witness: list[Any] = []
        there.subscribe(listener(target, witness))
        elsewhere.subscribe(listener(target, heard["elsewhere"]))
        async with here, there, elsewhere, plain_tracebacks(target):
            events = [ResourceUpdated(uri=f"desk://{word()}"), ToolsListChanged(), ResourceUpdated(uri=NOTES)]
            for event in events:
                await here.publish(event_there(target, event))
            raw = aioredis.Redis.from_url(url)
            try:
                await raw.publish(channel, b"\x00 not an event")
            finally:
                await raw.aclose()
            last = PromptsListChanged()
            await there.publish(event_there(target, last))
            # Redis hands each subscriber a channel's messages in the order it took them: a bus that has
            # heard `last` has heard everything published before it, a second copy of an event included.
            await heard_all(lambda: last in heard["here"] and last in heard["there"])
            stop_there()
            stop_there()
            await here.publish(event_there(target, ResourcesListChanged()))
            closing = ResourceUpdated(uri=f"desk://{word()}/{word()}")
            await there.publish(event_there(target, closing))
            aside = ResourceUpdated(uri=f"desk://{word()}/{word()}")
            await elsewhere.publish(event_there(target, aside))  # after it, the other channel's bus has heard all
            await heard_all(lambda: closing in heard["here"] and closing in witness and aside in heard["elsewhere"])
        logs.getLogger().removeHandler(handler)
        logged = [line for line in target.output().splitlines() if line.startswith(f"{token} ") and complaint in line]
    want = [*events, last]
    assert heard["there"] == want, (
        f"the other replica's bus heard {heard['there']}, expected {want}: publish must go through Redis")
    assert heard["here"][:4] == want, (
        f"the publishing bus's own listener heard {heard['here'][:4]}, expected {want}. (A raising listener "
        f"must not stop the others, and junk on the channel must be skipped.)")
    assert heard["here"] == [*want, ResourcesListChanged(), closing], (
        f"the publishing bus's listener heard {heard['here']}: each event exactly once (not once locally and "
        f"again from Redis)")
    assert heard["elsewhere"] == [aside], (
        f"a bus on another channel heard {heard['elsewhere']}, expected only {aside!r}, published on that channel: "
        "subscribe to your own channel only")
    assert logged, (
        f"a listener raised RuntimeError({complaint!r}) and nothing was logged at WARNING or above: catch it so the "
        "others still hear the event, but log it (logger.exception), or a broken listener fails silently forever")


@check("a note filed on one replica reaches a listener on another through Redis", points=3,
       hint="ctx.notify_resource_updated publishes on the server's subscription bus and each listen stream reads "
            "from it. With RESEARCH_DESK_REDIS_URL set, the bus create_server hands to replica_server is a "
            "RedisSubscriptionBus: the server must use it, and it must carry events through Redis both ways.")
async def test_redis_bus_across_replicas(target: Target, tmp_path: Path) -> None:
    binary = installed_or_skip("redis-server")
    names = replica_names(2)
    async with redis_server(binary, tmp_path / "redis") as url:
        spec = {name: {"RESEARCH_DESK_REDIS_URL": url, "RESEARCH_DESK_BUS_CHANNEL": f"desk-{word()}"}
                for name in names}
        channel = spec[names[0]]["RESEARCH_DESK_BUS_CHANNEL"]
        for extra in spec.values():
            extra["RESEARCH_DESK_BUS_CHANNEL"] = channel
        async with replicas(target, tmp_path, spec) as (a, b):
            heard: dict[str, list[Any]] = {a.name: [], b.name: []}

            async def listen(replica: Replica, ready: anyio.Event) -> None:
                async with Client(replica.url) as client, \
                        client.listen(resource_subscriptions=[NOTES]) as subscription:
                    ready.set()
                    async for event in subscription:
                        heard[replica.name].append(event)

            async with anyio.create_task_group() as tg:
                readies = [anyio.Event(), anyio.Event()]
                tg.start_soon(listen, a, readies[0])
                tg.start_soon(listen, b, readies[1])
                with anyio.fail_after(8):
                    for ready in readies:
                        await ready.wait()
                async with Client(b.url, elicitation_callback=accept_filing) as writer:
                    result = await writer.call_tool("file_note", {"title": word(), "text": word()})
                assert not result.is_error, f"file_note failed: {error_text(result)}"
                with anyio.move_on_after(4):
                    while not (heard[a.name] and heard[b.name]):
                        await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
    assert ResourceUpdated(uri=NOTES) in heard[a.name], (
        f"a client listening on replica {a.name} never heard that replica {b.name} filed a note: the event must "
        f"travel through Redis, not stay in {b.name}'s memory")
    assert ResourceUpdated(uri=NOTES) in heard[b.name], (
        f"a client listening on replica {b.name} itself did not hear the note it filed")
