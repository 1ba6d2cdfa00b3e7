"""Lesson 9 checks, try it live: the production app over HTTP, for clients of both eras.

Each check deploys the student's `build_app(settings)` under a real uvicorn and talks to it as a
client behind a proxy would, with the deployment's public Host and bearer token
(`support/lesson09.py`).
"""

from __future__ import annotations

import json
import random
import secrets
from typing import Any

import anyio
import httpx2
import pytest
from jsonschema import Draft202012Validator
from mcp import MCPError
from mcp.types import INVALID_PARAMS

from checker.checks.kit.eras import LEGACY, MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson09 import (
    DISCOVER_HEADERS,
    EXPECTED_TOOLS,
    FALLBACK_MODEL,
    NOTES,
    Desk,
    Model,
    call_ok,
    desk_client,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    desk_settings,
    echo_model,
    modern_discover,
    own_errors,
    sentence,
    serve,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("over HTTP, both eras see every lesson's tools with descriptions and schemas", points=2,
       hint="register_tools adds each lesson's tools through that lesson's register(...). Two lessons built a "
            "read_document: keep lesson 7's (validated, sanitised) and remove the other before adding it, since "
            "the SDK keeps the first tool registered under a name.")
async def test_http_tools_listed(target: Target, desk: Desk) -> None:
    seen: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode in MODES:
                async with desk_client(url, desk, mode) as client:
                    tools = (await client.list_tools()).tools
                    resources = [str(r.uri) for r in (await client.list_resources()).resources]
                    seen[mode] = (client.protocol_version, {t.name: t for t in tools}, resources)
    for mode, (version, tools, resources) in seen.items():
        assert version == MODES[mode], f"a {mode} client negotiated {version}, expected {MODES[mode]}"
        missing = sorted(EXPECTED_TOOLS - set(tools))
        assert not missing, f"{version}: the capstone does not list {missing}; every lesson's tools belong in it"
        for name in EXPECTED_TOOLS:
            tool = tools[name]
            assert (tool.description or "").strip(), f"{name} has no description: a model picks tools by reading them"
            assert tool.input_schema.get("type") == "object", f"{name}'s input schema is not a JSON object schema"
        too_long = {"name": "x" * 201}   # lesson 7 limits a document name to 200 characters; lesson 1 does not
        assert not Draft202012Validator(tools["read_document"].input_schema).is_valid(too_long), (
            "read_document is lesson 1's (its schema lets a 201-character name through): lesson 7's validated, "
            "sanitised read_document must be the one served")
        assert NOTES in resources, f"{version}: the {NOTES} resource (lesson 6) is not listed"


@check("over HTTP, the bearer token and the Host/Origin allowlists guard MCP, bodies are capped, /health stays open",
       points=2,
       hint="Authentication is fixed when the MCPServer is built: pass lesson 5's auth_options when a token is "
            "configured. The Host allowlist is settings.hosts (the public URL's host plus loopback names unless "
            "allowed_hosts says otherwise), the Origin allowlist settings.origins, the body limit max_body_bytes, "
            "on both apps the router serves; /health is a custom route, which the SDK never authenticates.")
async def test_http_auth_and_hosts(target: Target, desk: Desk) -> None:
    discover, base = modern_discover(), DISCOVER_HEADERS
    outcomes: dict[str, int] = {}
    async with serve(target, desk_settings(target, desk)) as url, httpx2.AsyncClient(timeout=10) as http:
        health_url = url.rsplit("/mcp", 1)[0] + "/health"
        cases = {
            "right token, public Host": {"Host": desk.host, "Authorization": f"Bearer {desk.token}"},
            "no token": {"Host": desk.host},
            "a wrong token": {"Host": desk.host, "Authorization": f"Bearer {secrets.token_urlsafe(24)}"},
            "an unknown Host": {"Host": f"evil-{word(low=4, high=4)}.example", "Authorization": f"Bearer {desk.token}"},
        }
        for label, headers in cases.items():
            outcomes[label] = (await http.post(url, json=discover, headers=base | headers)).status_code
        health = await http.get(health_url, headers={"Host": desk.host})
    assert outcomes["right token, public Host"] == 200, (
        f"a request with the right token and the public Host got HTTP {outcomes['right token, public Host']}, "
        f"expected 200 (is {desk.host} on the allowlist? is the token verifier given the token?)")
    for label in ("no token", "a wrong token"):
        assert outcomes[label] == 401, (f"a request with {label} got HTTP {outcomes[label]}, expected 401: the "
                                        f"MCP endpoint must require the bearer token when one is configured")
    assert outcomes["an unknown Host"] == 421, (
        f"a request with an unknown Host got HTTP {outcomes['an unknown Host']}, expected 421 (DNS-rebinding "
        f"protection: only the configured names may appear in Host)")
    assert health.status_code == 200 and health.json().get("status") == "ok", (
        f"GET /health without a token got HTTP {health.status_code}: probes must reach it without credentials")

    # The same desk told its own Host names, browser origins and body limit.
    alias, origin = f"alias-{word(low=5, high=5)}.example", f"https://app-{word(low=5, high=5)}.example"
    limit = random.randint(20_000, 40_000)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "course-check", "version": "1.0"}}}
    legacy = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    auth = {"Host": alias, "Authorization": f"Bearer {desk.token}"}

    def padded(message: dict[str, Any], size: int) -> bytes:
        body = json.dumps(message).encode()
        return body + b" " * (size - len(body))   # JSON allows trailing white space: same message, exact size

    told: dict[str, int] = {}
    settings = desk_settings(target, desk, allowed_hosts=(alias, desk.host), allowed_origins=(origin,),
                             max_body_bytes=limit)
    async with serve(target, settings) as url, httpx2.AsyncClient(timeout=10) as http:
        told["alias"] = (await http.post(url, json=discover, headers=base | auth)).status_code
        told["allowed origin"] = (await http.post(url, json=discover, headers=base | auth | {"Origin": origin})
                                  ).status_code
        told["other origin"] = (await http.post(url, json=discover, headers=base | auth | {
            "Origin": f"https://evil-{word(low=4, high=4)}.example"})).status_code
        for era, message, headers in (("modern", discover, base), ("legacy", initialize, legacy)):
            for size in (limit, limit + 1):
                told[f"{era} {size}"] = (await http.post(url, content=padded(message, size),
                                                         headers=headers | auth)).status_code
    assert told["alias"] == 200, (
        f"with allowed_hosts=({alias!r}, ...), a request with Host {alias} got HTTP {told['alias']}: serve the "
        f"configured Host names (settings.hosts)")
    assert told["allowed origin"] == 200 and told["other origin"] == 403, (
        f"with allowed_origins=({origin!r},), a browser request from {origin} got HTTP {told['allowed origin']} "
        f"(expected 200) and one from another origin {told['other origin']} (expected 403): pass settings.origins on")
    for era in ("modern", "legacy"):
        assert told[f"{era} {limit}"] == 200 and told[f"{era} {limit + 1}"] == 413, (
            f"with max_body_bytes={limit}, a {era} request of exactly {limit} bytes got HTTP {told[f'{era} {limit}']} "
            f"(expected 200) and one of {limit + 1} bytes {told[f'{era} {limit + 1}']} (expected 413): give the limit "
            f"to every app the desk serves")


@check("over HTTP, every file-reading tool stays inside the roots", points=3,
       hint="Roots are the server's configuration: lesson 4's file tools get the configured roots, and the tools "
            "that read documents by name (lessons 2 and 7) get the workspace, i.e. the first root. Never a parent "
            "folder, never the working directory.")
async def test_http_roots_enforced(target: Target, desk: Desk) -> None:
    link = desk.root / "shortcut-out.md"
    inside = random.choice(desk.names)
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("read_file", {"path": f"../{desk.private.name}/secret.md"}),
        ("read_file", {"path": str(desk.secret_file)}),
        ("read_file", {"path": desk.secret_file.as_uri()}),
        ("read_file", {"path": link.name}),
        ("list_files", {"path": str(desk.private)}),
        ("search_files", {"query": desk.secret, "path": str(desk.private)}),
        ("search_files", {"query": desk.secret}),
        ("read_document", {"name": f"../{desk.private.name}/secret.md"}),
        ("read_document", {"name": f"{desk.private.name}/secret.md"}),
        ("summarise_document", {"name": f"../{desk.private.name}/secret.md"}),
        ("summarise_document", {"name": f"{desk.private.name}/secret.md"}),
        ("export_bundle", {"names": [f"{desk.private.name}/secret.md"]}),
        ("search_documents", {"query": desk.secret}),
    ]
    leaks: list[str] = []
    with own_errors():  # a generous search timeout: a busy machine must not turn this into lesson 7's fallback
        async with serve(target, desk_settings(target, desk, search_timeout=10.0)) as url:
            link.symlink_to(desk.secret_file)  # a link inside the workspace that leads out of it
            async with desk_client(url, desk, sampling_callback=echo_model) as client:
                result = await call_ok(client, "read_file", {"path": inside})
                assert text_of(result) == desk.texts[inside], (
                    f"read_file({inside!r}) inside the workspace did not return the file's text")
                result = await call_ok(client, "read_document", {"name": inside})
                assert text_of(result) == desk.texts[inside], f"read_document({inside!r}) did not return the document"
                for name, arguments in attempts:
                    try:
                        result = await client.call_tool(name, arguments)
                        shown = text_of(result) + json.dumps(result.structured_content or {})
                    except MCPError as exc:
                        shown = exc.message
                    if desk.secret in shown:
                        leaks.append(f"{name}({json.dumps(arguments)})")
    assert not leaks, (
        f"these calls returned text from {desk.private.name}/ (or sent it to the client's model), a folder outside "
        f"the roots that only shares the workspace's name prefix: {'; '.join(leaks[:3])}. Give every tool the "
        f"configured roots or the workspace")


@check("over HTTP, summaries borrow the client's model, and fall back when it has none", points=2,
       hint="Register lesson 2's summarise tools as they are: their resolver asks the client's model only when the "
            "client declared sampling, and otherwise answers with the desk's own extractive summary. A tool wired "
            "straight to Sample(...) fails with -32021 for clients that cannot sample.")
async def test_http_summary_through_sampling(target: Target, desk: Desk) -> None:
    passage = " ".join(sentence() for _ in range(4))
    marker, model_name = f"summary {word()} {word()}", f"model-{word(low=5, high=5)}"
    name = random.choice(desk.names)
    got: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode in MODES:
                model = Model(marker, model_name)
                async with desk_client(url, desk, mode, sampling_callback=model) as client:
                    got[mode] = (await call_ok(client, "summarise", {"text": passage})).structured_content
                    got[mode + " document"] = (await call_ok(client, "summarise_document", {"name": name})
                                               ).structured_content
                got[mode + " prompts"] = model.prompts
            async with desk_client(url, desk) as client:
                try:
                    got["no sampling"] = (await client.call_tool("summarise", {"text": passage})).structured_content
                except MCPError as exc:
                    pytest.fail(f"a client without sampling got a protocol error {exc.code} ({exc.message}): the "
                                f"summary must degrade to the desk's own, not fail")
    for mode, version in MODES.items():
        for what in (mode, mode + " document"):
            summary = got[what] or {}
            assert summary.get("summary") == marker and summary.get("model") == model_name, (
                f"{version}: summarise{'_document' if 'document' in what else ''} answered {summary}, expected the "
                f"client's model's reply {marker!r} from {model_name!r}")
            assert summary.get("fallback") is False, f"{version}: a summary from the client's model is not a fallback"
        prompts = got[mode + " prompts"]
        assert any(passage[:40] in p for p in prompts), f"{version}: the client's model never saw the passage"
    fallback = got["no sampling"] or {}
    assert fallback.get("fallback") is True and fallback.get("model") == FALLBACK_MODEL, (
        f"a client without sampling got {fallback}; expected the extractive fallback (fallback=True, "
        f"model={FALLBACK_MODEL!r})")
    assert fallback.get("summary", "").split()[:3] == passage.split()[:3], (
        "the fallback summary should be extractive: the passage's opening sentences")


@check("over HTTP, indexing reports progress to clients of both eras", points=2,
       hint="Progress travels in an SSE response. A JSON-only app drops it, so calls to tools that report "
            "progress (STREAMING_TOOLS) must reach the streaming app, and so must legacy sessions.")
async def test_http_progress_while_indexing(target: Target, desk: Desk) -> None:
    total = len(desk.names)
    seen: dict[str, list[float]] = {}
    results: dict[str, Any] = {}
    with own_errors():
        async with serve(target, desk_settings(target, desk, progress_interval=0.0)) as url:
            for mode in MODES:
                steps: list[float] = []

                async def on_progress(progress: float, total_: float | None, message: str | None,
                                      steps: list[float] = steps) -> None:
                    steps.append(progress)

                async with desk_client(url, desk, mode) as client:
                    results[mode] = (await call_ok(client, "index_documents", {}, progress_callback=on_progress)
                                     ).structured_content
                    with anyio.move_on_after(2):
                        while len(steps) < total:
                            await anyio.sleep(0.02)
                seen[mode] = sorted(steps)
    for mode, version in MODES.items():
        assert (results[mode] or {}).get("documents") == total, (
            f"{version}: index_documents reported {results[mode]}, expected {total} documents")
        assert seen[mode], (f"{version}: no progress notification arrived while indexing {total} documents. Was the "
                            f"call answered by a JSON-only app (json_response drops notifications)?")
        assert [float(p) for p in seen[mode]] == [float(i) for i in range(1, total + 1)], (
            f"{version}: progress went {seen[mode]}, expected 1..{total}, one per document with progress_interval=0")


@check("over HTTP, a retried note is saved once, whichever era or connection retries it", points=2,
       hint="Build one MCPServer per process and serve every app from it: a second server (or a second "
            "ErrorDesk) would keep its own receipts, and a retry that lands there saves the note twice.")
async def test_http_idempotent_retry(target: Target, desk: Desk) -> None:
    key = f"key-{secrets.token_hex(8)}"
    title, body = f"note {word()}", " ".join(sentence() for _ in range(2))
    receipts: list[dict[str, Any]] = []
    conflict: MCPError | None = None
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode in ("auto", "legacy", "auto"):
                async with desk_client(url, desk, mode) as client:
                    receipts.append((await call_ok(client, "save_note", {
                        "title": title, "body": body, "idempotency_key": key})).structured_content or {})
            async with desk_client(url, desk) as client:
                try:
                    await client.call_tool("save_note", {"title": title, "body": body + " changed",
                                                         "idempotency_key": key})
                except MCPError as exc:
                    conflict = exc
                other = (await call_ok(client, "save_note", {"title": title, "body": body,
                                                           "idempotency_key": f"other-{secrets.token_hex(6)}"})
                         ).structured_content or {}
    ids = [r.get("note_id") for r in receipts]
    assert ids[0] and ids.count(ids[0]) == 3, (
        f"the same save_note retried (modern, then legacy, then modern again, each on a new connection) gave note "
        f"ids {ids}; a retry must return the first receipt. Do all apps serve the same server and desk?")
    assert other.get("note_id") not in (None, ids[0]), "a new idempotency key must save a new note"
    assert conflict is not None and conflict.code == INVALID_PARAMS, (
        "reusing an idempotency key for a different note must be refused with -32602 (lesson 7), "
        f"got {conflict.code if conflict else 'no error'}")
