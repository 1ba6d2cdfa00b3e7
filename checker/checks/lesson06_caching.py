"""Lesson 6 checks, going further: caching hints (`ttlMs`, `cacheScope`) on every replica.

Every client here is a real `mcp.Client`; what a result carries is read from that client's parsed
result. `cache=None` turns the client's own cache off, so every call reaches the server and shows
what the server sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp.client.caching import CacheConfig

from checker.checks.kit.text import word
from checker.checks.support.lesson06 import (
    LIST_CALLS,
    NOTES,
    WatchedStore,
    hints_given,
    hints_on_the_wire,
    replica_names,
    two_ttls,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("desk_cache_hints marks every list shared and reads private, with the TTLs it is given", points=2,
       hint="A hint is a CacheHint(ttl_ms=..., scope=...) per method name. The four lists describe the desk and "
            "are the same for every caller: `public`. A read returns content only an admitted caller may see: "
            "`private`, the default scope. Use the TTL each argument gives, in milliseconds.")
async def test_cache_hints_as_given(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    list_ttl, read_ttl = two_ttls()
    hints = scaling.desk_cache_hints(list_ttl_ms=list_ttl, read_ttl_ms=read_ttl)
    probe = target.library("mcp.server.mcpserver").MCPServer(f"probe-{word()}", log_level="WARNING",
                                                               cache_hints=hints)
    scaling.register(probe, replica=replica_names(1)[0], root=tmp_path)
    async with target.client(probe, cache=None) as client:
        seen = await hints_on_the_wire(client)
    for method, _ in LIST_CALLS:
        assert seen[method] == (list_ttl, "public"), (
            f"{method} arrived with ttlMs={seen[method][0]}, cacheScope={seen[method][1]!r} from "
            f"desk_cache_hints(list_ttl_ms={list_ttl}, read_ttl_ms={read_ttl}); expected ttlMs={list_ttl}, "
            f"'public': every list is the same for every caller")
    ttl, scope = seen["resources/read"]
    assert scope == "private", (
        f"resources/read arrived marked {scope!r}: a cache shared between users would hand one caller's read to "
        f"another without asking the server. Reads are 'private'")
    assert ttl == read_ttl, (
        f"resources/read arrived with ttlMs={ttl}; desk_cache_hints(read_ttl_ms={read_ttl}) asked for {read_ttl}")


@check("every replica's desk carries desk_cache_hints() on its results", points=2,
       hint="MCPServer(cache_hints=...) fills ttlMs/cacheScope on every list and read result. Build each "
            "replica's server with desk_cache_hints(), so whichever replica answers, a cache is told the same.")
async def test_desk_carries_its_hints(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    hints = scaling.desk_cache_hints()
    expected = hints_given(hints)
    assert expected["tools/list"][1] == "public" and expected["resources/read"][1] == "private", (
        f"desk_cache_hints() gives tools/list {expected['tools/list']} and resources/read "
        f"{expected['resources/read']}: lists are 'public', reads 'private'")
    assert expected["tools/list"][0] > 0 and expected["resources/read"][0] > 0, (
        f"desk_cache_hints() keeps nothing (ttlMs {expected['tools/list'][0]} for lists, "
        f"{expected['resources/read'][0]} for reads): its defaults are LIST_TTL_MS and READ_TTL_MS")
    for name in replica_names(2):
        desk = scaling.create_server({"RESEARCH_DESK_REPLICA": name, "RESEARCH_DESK_ROOT": str(tmp_path)})
        async with target.client(desk, cache=None) as client:
            seen = await hints_on_the_wire(client)
        wrong = {method: got for method, got in seen.items() if got != expected[method]}
        assert not wrong, (
            f"replica {name} sent {wrong} (ttlMs, cacheScope), but desk_cache_hints() says "
            f"{ {m: expected[m] for m in wrong} }: does replica_server pass cache_hints=desk_cache_hints()?")


@check("a cache shared by two users serves one user's list to the other, never a read", points=2,
       hint="A client keeps a result as long as ttlMs says. In a cache shared between users (CacheConfig with "
            "share_public=True), a 'public' result fetched for one user is served to the next without asking the "
            "server; a 'private' one is kept per user. Which of the desk's results may another user see?")
async def test_shared_cache_keeps_only_public(target: Target, tmp_path: Path) -> None:
    scaling = target.module("scaling")
    desk = scaling.create_server({"RESEARCH_DESK_REPLICA": replica_names(1)[0], "RESEARCH_DESK_ROOT": str(tmp_path)})
    store, now, server_id = WatchedStore(), [1_700_000_000.0], f"desk-{word()}"
    alice, bob = f"alice-{word()}", f"bob-{word()}"

    def config(user: str) -> CacheConfig:
        return CacheConfig(store=store, partition=user, share_public=True, target_id=server_id, clock=lambda: now[0])

    async with target.client(desk, cache=config(alice)) as client:
        await client.list_tools()
        await client.read_resource(NOTES)
        await client.read_resource(NOTES)
    assert store.fetches("tools/list") == 1 and store.fetches("resources/read") == 1, (
        f"a client kept {store.fetches('tools/list')} tools/list and {store.fetches('resources/read')} "
        f"resources/read results, expected one of each: are the desk's ttlMs above 0?")
    async with target.client(desk, cache=config(bob)) as client:
        await client.list_tools()
        await client.read_resource(NOTES)
    assert store.fetches("tools/list") == 1, (
        "a second user's tools/list went to the server although another user's copy sat in the shared cache: "
        "the tool list is the same for everyone, mark it 'public'")
    assert store.fetches("resources/read") == 2, (
        "a second user was served the first user's resources/read from the shared cache, without the server "
        "deciding whether they may read it: reads are 'private'")
    read_ttl = scaling.desk_cache_hints()["resources/read"].ttl_ms
    now[0] += read_ttl / 1000 + 1
    async with target.client(desk, cache=config(alice)) as client:
        await client.read_resource(NOTES)
    assert store.fetches("resources/read") == 3, "a read kept past its ttlMs was served again instead of refetched"
