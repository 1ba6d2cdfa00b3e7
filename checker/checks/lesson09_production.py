"""Lesson 9 checks, production promises: cancellation, writes, exposure, honesty, and load.

Each check deploys the student's `build_app(settings)` under a real uvicorn (`support/lesson09.py`)
and does what production traffic does: hangs up, plants links, arrives from the network through a
local proxy, reads what the server advertises, or comes all at once.
"""

from __future__ import annotations

import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError

from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson06 import accept_filing  # lesson 6's file_note asks before filing
from checker.checks.support.lesson09 import (
    DISCOVER_HEADERS,
    Desk,
    desk_client,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    desk_settings,
    exports,
    modern_call,
    modern_discover,
    own_errors,
    sentence,
    serve,
    until,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("over HTTP, a call the client abandons stops, on the JSON-only app too", points=3,
       hint="Closing the response is how a 2026-07-28 client cancels (its SDK does it when it times out with -32001). "
            "The streaming app notices; the SDK's JSON-response app never listens for http.disconnect, so wrap the "
            "JSON-only twin in CancelOnDisconnect, or a cancelled export runs on and writes its bundle anyway.")
async def test_http_abandoned_call_stops(target: Target, desk: Desk) -> None:
    names = [random.choice(desk.names) for _ in range(100)]     # 100 steps of 50 ms: five seconds of work
    outcome: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            port = int(url.split(":")[2].split("/")[0])
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(modern_call(desk, port, "export_bundle", {"names": names}))
                outcome["started"] = await until(lambda: bool(exports(desk)), 5)
            outcome["after hang-up"] = await until(lambda: not exports(desk), 2) or exports(desk)
            async with desk_client(url, desk) as client:
                try:
                    await client.call_tool("export_bundle", {"names": names}, read_timeout_seconds=1)
                    outcome["timeout"] = "answered"
                except MCPError as exc:
                    outcome["timeout"] = exc.code
            outcome["after timeout"] = await until(lambda: not exports(desk), 2) or exports(desk)
    assert outcome["started"], "export_bundle of 100 documents never started writing its bundle into .exports"
    for how, key in (("closed its connection", "after hang-up"), ("timed out (-32001)", "after timeout")):
        assert outcome[key] is True, (
            f"a 2026-07-28 client {how}, yet two seconds later the export is still writing {outcome[key]}: the "
            f"handler was not cancelled, and would finish a bundle nobody waits for")


@check("over HTTP, notes and bundles are written inside the workspace: no link followed, nothing replaced",
       points=3,
       hint="A write acts on whatever is on the disk: a link planted at notes/x.md or .exports leads it out of the "
            "roots, and an existing document with the same name gets overwritten. Register lesson 6's and 7's tools "
            "as given (they write through research_desk.writing) over the workspace, never a folder above it.")
async def test_http_writes_stay_inside(target: Target, desk: Desk) -> None:
    planted = f"{word()}-{word(low=4, high=4)}"
    existing = next((n for n in desk.names if n.startswith("notes/")), None)
    if existing is None:
        existing = f"notes/{word()}.md"
        (desk.root / existing).parent.mkdir(parents=True, exist_ok=True)
        (desk.root / existing).write_text(f"# {word()}\n\n{sentence()}\n")
    original = target.read_text(desk.root / existing)
    title = Path(existing).stem                                  # file_note files `notes/<slug>.md`
    secret_before = target.read_text(desk.secret_file)
    results: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            (desk.root / "notes").mkdir(exist_ok=True)
            (desk.root / "notes" / f"{planted}.md").symlink_to(desk.secret_file)
            async with desk_client(url, desk, elicitation_callback=accept_filing) as client:
                results["link"] = await client.call_tool("file_note", {"title": planted, "text": sentence()})
                results["clash"] = await client.call_tool("file_note", {"title": title, "text": sentence()})
                (desk.root / ".exports").symlink_to(desk.private)
                results["export"] = await client.call_tool("export_bundle", {"names": [desk.names[0]]})
    assert target.read_text(desk.secret_file) == secret_before, (
        f"file_note({planted!r}) wrote through the link notes/{planted}.md into {desk.private.name}/secret.md, outside "
        f"every root: a write must never follow a link")
    assert target.read_text(desk.root / existing) == original, (
        f"file_note({title!r}) replaced the existing document {existing}: never replace a file without saying so")
    clash = results["clash"].structured_content or {}
    said = text_of(results["clash"]) if results["clash"].is_error else json.dumps(clash)
    assert results["clash"].is_error or clash.get("name") not in (None, existing), (
        f"file_note({title!r}) answered {said[:200]!r} as if it had filed {existing}, which already exists")
    assert existing in said, f"file_note({title!r}) did not say that {existing} was taken: {said[:200]!r}"
    assert sorted(p.name for p in desk.private.iterdir()) == ["secret.md"], (
        f"export_bundle wrote through the link .exports into {desk.private.name}/: {sorted(os.listdir(desk.private))}")
    assert results["export"].is_error, "an export that cannot be written inside the workspace must fail and say why"


@check("over HTTP, a desk without a token serves only its own machine, whatever uvicorn binds", points=2,
       hint="The settings cannot see `uvicorn --host 0.0.0.0` or a local proxy forwarding the world. Judge each "
            "request by its connection (the ASGI scope's client and server addresses, never the Host header): "
            "without a token, and unless allow_anonymous is set, wrap the app in LoopbackOnly.")
async def test_http_no_token_loopback_only(target: Target, desk: Desk) -> None:
    forwarded = {"X-Forwarded-For": f"203.0.113.{random.randint(1, 254)}"}
    status: dict[str, int] = {}
    discover, base = modern_discover(), DISCOVER_HEADERS
    async with httpx2.AsyncClient(timeout=10) as http:
        async with serve(target, desk_settings(target, desk, token="", public_url="")) as url:
            local = {"Host": url.split("/")[2]}
            status["local"] = (await http.post(url, json=discover, headers=base | local)).status_code
            status["network"] = (await http.post(url, json=discover, headers=base | local | forwarded)).status_code
            status["network, Host 127.0.0.1"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": "127.0.0.1"})).status_code
        async with serve(target, desk_settings(target, desk)) as url:
            status["network with the token"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": desk.host, "Authorization": f"Bearer {desk.token}"})).status_code
        async with serve(target, desk_settings(target, desk, token="", public_url="", allow_anonymous=True)) as url:
            status["network, anonymous allowed"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": url.split("/")[2]})).status_code
    assert status["local"] == 200, f"without a token, a client on this machine should be served: got {status['local']}"
    for label in ("network", "network, Host 127.0.0.1"):
        assert status[label] == 403, (
            f"without a token, a request from {forwarded['X-Forwarded-For']} ({label}, through a local proxy) got "
            f"HTTP {status[label]}, expected 403: whoever reaches the port reads the workspace")
    assert status["network with the token"] == 200, (
        f"with a token, a request from the network should be served: got {status['network with the token']}")
    assert status["network, anonymous allowed"] == 200, (
        f"with allow_anonymous=True (a proxy in front authenticates), a request from the network should be served "
        f"without a token: got {status['network, anonymous allowed']} (settings.loopback_only says when to guard)")


@check("over HTTP, the desk advertises only what it does: no unsent listChanged, no made-up issuer", points=2,
       hint="Advertise only notifications the desk sends (the SDK says listChanged for every list once listen is "
            "served: honest_capabilities corrects server/discover). With a static token there is no authorization "
            "server: publish protected-resource metadata only when RESEARCH_DESK_ISSUER_URL names a real one.")
async def test_http_honest_advertising(target: Target, desk: Desk) -> None:
    issuer = f"https://auth-{word(low=5, high=5)}.example"
    metadata_path = "/.well-known/oauth-protected-resource/mcp"
    seen: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            async with desk_client(url, desk) as client:
                seen["capabilities"] = client.server_capabilities
            async with httpx2.AsyncClient(timeout=10, headers={"Host": desk.host}) as http:
                seen["static"] = await http.get(url.rsplit("/mcp", 1)[0] + metadata_path)
                seen["challenge"] = (await http.post(url, json={})).headers.get("www-authenticate", "")
        async with serve(target, desk_settings(target, desk, issuer_url=issuer)) as url, \
                httpx2.AsyncClient(timeout=10, headers={"Host": desk.host}) as http:
            seen["issued"] = await http.get(url.rsplit("/mcp", 1)[0] + metadata_path)
    capabilities = seen["capabilities"]
    assert capabilities is not None and capabilities.tools is not None, "server/discover advertised no tools"
    for kind in ("tools", "prompts", "resources"):
        advertised = getattr(capabilities, kind, None)
        assert not getattr(advertised, "list_changed", None), (
            f"the desk advertises {kind}.listChanged but never changes that list, so no such notification ever "
            f"comes: a client waits for nothing")
    assert capabilities.resources is not None and capabilities.resources.subscribe, (
        "desk://notes updates are really sent: resources.subscribe should stay advertised")
    assert seen["static"].status_code == 404 and "resource_metadata" not in seen["challenge"], (
        f"with a static token and no issuer the desk published {seen['static'].text[:160]!r} (the 401 says "
        f"{seen['challenge'][:120]!r}): it names an authorization server that does not exist")
    assert seen["issued"].status_code == 200 and issuer in json.dumps(seen["issued"].json()), (
        f"with RESEARCH_DESK_ISSUER_URL={issuer} the protected-resource metadata should name it; got "
        f"HTTP {seen['issued'].status_code} {seen['issued'].text[:160]!r}")


@check("a burst of concurrent mixed calls gets only correct answers", points=2,
       hint="Under load every answer must still be right: one server, one desk index opened by the lifespan, "
            "the search service answering within its timeout (not degrading), progress reaching its caller.")
async def test_short_load_zero_errors(target: Target, desk: Desk) -> None:
    names = desk.names
    first = names[0]
    query = desk.texts[first].split()[-1].strip(".").lower()
    calls: list[tuple[str, dict[str, Any], Any]] = [
        ("replica_info", {}, lambda r: r.structured_content.get("replica") == desk.replica),
        ("read_document", {"name": first}, lambda r: text_of(r) == desk.texts[first]),
        ("read_file", {"path": names[-1]}, lambda r: text_of(r) == desk.texts[names[-1]]),
        ("search_documents", {"query": query},
         lambda r: r.structured_content.get("source") == "search-service" and first in r.structured_content["hits"]),
        ("list_documents", {}, lambda r: sorted(r.structured_content.get("result", [])) == names),
        ("summarise", {"text": sentence() + " " + sentence()}, lambda r: r.structured_content.get("fallback") is True),
        ("index_documents", {}, lambda r: r.structured_content.get("documents") == len(names)),
        ("save_note", {"title": "burst", "body": "same", "idempotency_key": f"burst-{secrets.token_hex(6)}"},
         lambda r: bool(r.structured_content.get("note_id"))),
    ]
    done: list[str] = []
    errors: list[str] = []
    steps: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(progress)

    async def worker(offset: int, url: str) -> None:
        mode = "legacy" if offset % 4 == 3 else "auto"
        async with desk_client(url, desk, mode) as client:
            for step in range(offset, offset + len(calls)):   # every kind of call once, in its own order
                name, arguments, ok = calls[step % len(calls)]
                try:
                    listener = on_progress if name == "index_documents" else None
                    result = await client.call_tool(name, arguments, progress_callback=listener)
                    if result.is_error or not ok(result):
                        errors.append(f"{name}: {text_of(result)[:120]}")
                    else:
                        done.append(name)
                except MCPError as exc:
                    errors.append(f"{name}: MCPError {exc.code} {exc.message}")

    clients = 8
    with own_errors():
        async with serve(target, desk_settings(target, desk, search_timeout=10.0)) as url:
            try:
                with anyio.fail_after(15):
                    async with anyio.create_task_group() as tg:
                        for offset in range(clients):
                            tg.start_soon(worker, offset, url)
            except TimeoutError:
                pytest.fail(f"{clients} clients making {clients * len(calls)} calls between them had {len(done)} "
                            f"answered after 15 s: something holds calls up (a lock held across an await, a blocked "
                            f"event loop)")
    assert not errors, f"{len(errors)} of {len(errors) + len(done)} calls under load went wrong; the first: {errors[0]}"
    assert len(done) == clients * len(calls), f"{len(done)} of {clients * len(calls)} calls were answered"
    assert steps, "no progress reached the clients that indexed under load"
