"""Lesson 7 checks: every failure reaches the right audience, and the server survives them.

Each run builds a workspace of random documents and talks to the desk through a real
in-memory MCP client, in both protocol eras where the era matters. The search service the
desk depends on is a fake (support/lesson07.py): healthy, down, hanging, or crashing with a
message that holds a random secret; every call to it runs in the check's process. Expected
answers are computed here, never by the code under test. This file: who hears about a failure
(the model, the client, the operators) and what degrades; lesson07_recovery.py: retries,
cancellation and exports; lesson07_limits.py: limits at the edge and truthful annotations.
"""

from __future__ import annotations

import logging
import random
import re
import string
import time
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.types import INVALID_PARAMS

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson07 import (
    Healthy,
    Workspace,
    fake_service,
    files_in,
    idempotency_key,
    incident_ids,
    make_desk,
    not_written,
    ok,
    server_logs,
)
from checker.checks.support.lesson07 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio



@check(
    "a mistake the model can fix comes back as a readable tool error",
    points=2,
    hint="Raise ToolError for an anticipated failure: the call returns is_error=True and the model reads "
    "your message, so name what was wrong and how to find a valid value. Check names before any work starts.",
)
async def test_tool_error_for_the_model(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await make_desk(target, workspace.root, step_seconds=0)
    server = errors.create_server(desk)
    name = rng.choice(workspace.names)
    for mode in MODES:
        missing = f"{rng.choice(['draft', 'memo', 'plan'])}-{rng.randint(1000, 9999)}.md"
        async with target.client(server, mode=mode) as client:
            bad = await client.call_tool("read_document", {"name": missing})
            text = text_of(bad)
            assert bad.is_error, (
                f"read_document({missing!r}) for a document that does not exist should be a tool error "
                f"(is_error=True), got a normal result: {text[:200]!r}. Returning an error string hides it."
            )
            assert missing in text, (
                f"[{mode}] the error for {missing!r} should name it so the model can correct itself; got "
                f"{text[:300]!r}{not_written(text, 'read_document')}"
            )
            assert "incident" not in text.lower(), (
                "a ToolError came back as an incident: `sanitised` must let ToolError through untouched"
            )
            good = await ok(client, "read_document", {"name": name})
            assert text_of(good) == workspace.texts[name], f"read_document({name!r}) should return the file's text"
            export = await client.call_tool("export_bundle", {"names": [name, missing]})
            assert export.is_error and missing in text_of(export), (
                f"export_bundle with the unknown name {missing!r} should be a tool error naming it; got "
                f"{text_of(export)[:300]!r}{not_written(text_of(export), 'export_bundle')}"
            )
    assert not desk.jobs, "export_bundle started a job although a name was unknown: validate before doing any work"


@check(
    "a request no model can fix is a JSON-RPC error with code -32602",
    points=2,
    hint="An idempotency key reused for a different note (another title, another body) is the client's bug, not "
    "the model's: raise MCPError with the invalid-params code from mcp.types and put the key in `data`. "
    "Compare the title and the body apart, never glued into one string.",
)
async def test_protocol_error_for_the_client(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await make_desk(target, workspace.root)
    server = errors.create_server(desk)
    for mode in MODES:
        key = idempotency_key(rng)
        head, tail = word(rng).title(), word(rng)
        title, body = head, f"{tail} {word(rng)}"
        conflicts = [
            ("another body", {"title": title, "body": f"{body} {word(rng)}"}),
            ("another title", {"title": f"{title} {word(rng).title()}", "body": body}),
            (
                "the same characters with the title/body boundary moved",
                {"title": f"{title}{body[:2]}", "body": body[2:]},
            ),
        ]
        before = set(desk.notes)  # the notes an earlier era saved
        async with target.client(server, mode=mode) as client:
            first = await ok(client, "save_note", {"title": title, "body": body, "idempotency_key": key})
            for what, note in conflicts:
                try:
                    result = await client.call_tool("save_note", {**note, "idempotency_key": key})
                except MCPError as exc:
                    assert exc.code == INVALID_PARAMS, (
                        f"[{mode}] reusing a key for a note with {what} should fail with code {INVALID_PARAMS} "
                        f"(invalid params), got {exc.code}: {exc.message}"
                    )
                    assert key in repr(exc.error.data) or key in exc.message, (
                        f"[{mode}] the error should carry the reused key (in `data`), got data={exc.error.data!r}"
                    )
                else:
                    pytest.fail(
                        f"[{mode}] the key of note (title={title!r}, body={body!r}) was reused for a note "
                        f"with {what} (title={note['title']!r}, body={note['body']!r}) and the call returned "
                        f"a tool result (is_error={result.is_error}: {text_of(result)[:150]!r}). That is a "
                        f"different note, and a client whose retry logic is broken is no model's to fix: "
                        f"raise MCPError so the client sees a protocol error"
                    )
            retry = await ok(client, "save_note", {"title": title, "body": body, "idempotency_key": key})
            assert retry.structured_content == first.structured_content, (
                f"[{mode}] after the refused conflicts, a true retry should still get the original receipt "
                f"{first.structured_content}, got {retry.structured_content}"
            )
        notes = desk.notes
        saved = [n for n in notes if n not in before]
        assert len(saved) == 1, f"[{mode}] a rejected request must not save a note (found {len(saved)} new notes)"
        note_id = (first.structured_content or {}).get("note_id")
        assert note_id in saved and notes[note_id].body == body and notes[note_id].title == title, (
            "the original note must stay as it was"
        )


@check(
    "a crash reaches the client as an incident id, never its text (both eras)",
    points=3,
    hint="Catch what is neither ToolError nor MCPError in `sanitised`, log it with its traceback under a "
    "fresh incident id, and raise a ToolError that says `incident <id>` and nothing of the original.",
)
async def test_crash_is_sanitised(target: Target, workspace: Workspace) -> None:
    secret = "".join(random.choices(string.ascii_letters + string.digits, k=24))
    # Every kind of bug, in both eras; the same crash three times first, to see that each gets its own id.
    kinds = {
        "auto": ["RuntimeError", "RuntimeError", "RuntimeError", "ValueError", "KeyError", "PermissionError"],
        "legacy": ["ValueError", "KeyError", "PermissionError", "ZeroDivisionError"],
    }
    errors, desk = await make_desk(target, workspace.root)
    server = errors.create_server(desk)
    crashes: list[tuple[str, str, str]] = []  # (mode, kind, text the client got)
    async with server_logs(target) as logs:
        for mode in MODES:
            async with target.client(server, mode=mode) as client:
                for kind in kinds[mode]:
                    desk.backend = fake_service(target, errors, "crashing", secret, kind)
                    result = await client.call_tool("search_documents", {"query": random.choice(workspace.names)[:3]})
                    wire = result.model_dump_json()
                    text = text_of(result)
                    assert secret not in wire, (
                        f"[{mode}] a {kind} raised by the search service (a bug) reached the client with its text, "
                        f"which holds a password: never put str(exc) of an unexpected exception in a result"
                    )
                    assert "Traceback" not in wire and "secrets.env" not in wire, (
                        f"[{mode}] after a {kind}, the client received a traceback or a server path"
                    )
                    assert result.is_error, (
                        f"[{mode}] a search service that raises {kind} (a bug, not an outage) should make the call "
                        f"fail, got {text[:200]!r}: do not hide bugs behind the fallback"
                    )
                    assert incident_ids(text), (
                        f"[{mode}] after a {kind}, the error should say `incident <id>` so the operators can find "
                        f"the details; got {text[:200]!r}"
                    )
                    crashes.append((mode, kind, text))

    def carries(record: dict[str, Any], incident: str) -> bool:
        said = re.search(rf"(?<![A-Za-z0-9_-]){re.escape(incident)}(?![A-Za-z0-9_-])", record["message"])
        return bool(said) and (secret in record["exc"] or secret in record["message"])

    seen: list[str] = []
    for mode, kind, text in crashes:
        logged = [(incident, [r for r in logs if carries(r, incident)]) for incident in incident_ids(text)]
        found = next(((incident, hits) for incident, hits in logged if hits), None)
        assert found, (
            f"[{mode}] the client read {text[:160]!r}, but no server log record names "
            f"incident {incident_ids(text)[0]!r} together with the original {kind}: log the exception "
            f"(with exc_info) under the same id, so the operators can see what went wrong"
        )
        incident, hits = found
        assert any(r["levelno"] >= logging.WARNING for r in hits), (
            f"incident {incident} was logged below WARNING; a crash is an ERROR the operators must see"
        )
        seen.append(incident)
    assert len(set(seen[:3])) > 1, (
        f"the same crash, three times, got the same incident id {seen[0]!r} every time: make a fresh id for every "
        f"incident, or the operators cannot tell them apart"
    )


@check(
    "when the search service is down, the answer degrades and says so",
    points=3,
    hint="Put a deadline around the backend call (anyio.fail_after), catch only the outage errors in "
    "OUTAGES (and the timeout), and answer from title_matches() with degraded=True and a notice. No "
    "backend at all is an outage too; and never pass on more hits than `limit`, whoever sent them.",
)
async def test_outage_degrades_gracefully(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    limit = rng.randint(2, 4)
    # More matches than `limit`, in titles (any case) and in names only, so the fallback has to cut and to look
    # at both; the query is the marker in another case.
    marker = f"zq{word(rng, 3, 5)}"
    for index in range(limit + 2):
        in_title = index % 2 == 0
        name = f"{'papers/' if index % 3 == 0 else ''}{word(rng)}{'' if in_title else '-' + marker}-{index}.md"
        title = f"{word(rng).title()} {marker.title() if in_title else word(rng).title()} {word(rng).title()}"
        workspace.add(name, title, f"# {title}\n\n{word(rng)} {word(rng)}\n")
    query = marker.upper()
    expected = workspace.title_matches(query, limit)
    assert len(workspace.title_matches(query, 1000)) > limit
    remote_hits = rng.sample(workspace.names, k=limit + 3)  # the service sends more than it was asked for
    errors, desk = await make_desk(target, workspace.root, backend_timeout=0.15)
    service = Healthy(remote_hits)
    desk.backend = target.expose(service, methods=["search"])
    server = errors.create_server(desk)
    async with target.client(server) as client:
        healthy = (await ok(client, "search_documents", {"query": query, "limit": limit})).structured_content or {}
        assert healthy.get("hits") == remote_hits[:limit] and not healthy.get("degraded"), (
            f"with a healthy search service that sent {len(remote_hits)} hits for limit={limit}, the answer should "
            f"be its first {limit}, undegraded (never pass on more than the model asked for); got {healthy!r}"
        )
        assert service.queries and service.queries[-1].strip().casefold() == query.casefold(), (
            f"search_documents({query!r}) asked the search service for {service.queries[-1:]}: pass the query on"
        )
        kinds = ["refused", "unavailable", "hang"]
        rng.shuffle(kinds)
        for kind in [*kinds, "none"]:
            desk.backend = None if kind == "none" else fake_service(target, errors, kind)
            what = {
                "refused": "refuses connections",
                "unavailable": "raises BackendUnavailable",
                "hang": "never answers",
                "none": "is not configured (backend=None)",
            }[kind]
            began = time.monotonic()
            result = None
            with anyio.move_on_after(5):
                result = await client.call_tool("search_documents", {"query": query, "limit": limit})
            took = time.monotonic() - began
            assert result is not None, (
                f"when the search service {what}, search_documents had not answered after 5 s although the desk's "
                f"backend_timeout is 0.15 s: put a deadline on the call to the service"
            )
            answer = result.structured_content or {}
            assert not result.is_error, (
                f"when the search service {what}, the tool failed ({text_of(result)[:200]!r}); answer from the "
                f"local titles instead{not_written(text_of(result), 'search_documents')}"
            )
            assert answer.get("degraded") is True and answer.get("source") == "local-titles", (
                f"when the search service {what}, mark the answer degraded=True, source='local-titles'; got {answer!r}"
            )
            assert answer.get("notice"), "a degraded answer needs a notice that tells the model what is missing"
            assert answer.get("hits") == expected, (
                f"when the search service {what}, the fallback for {query!r} (limit {limit}) should be the first "
                f"{limit} title matches {expected} (title or name, any case, sorted), got {answer.get('hits')}"
            )
            if kind == "hang":
                assert took < 2.5, (
                    f"a hanging search service held the call for {took:.1f} s although the desk's "
                    f"backend_timeout is 0.15 s: put a deadline on the call"
                )


@check(
    "read_document and export_bundle serve only the workspace's own documents",
    points=2,
    hint="A name is a document only if a scan of the workspace would list it: no `..`, no absolute path, no link "
    "that leads out, nothing hidden, only .md and .txt files. documents.document_path answers exactly that; "
    "joining the name to the root and checking that a file exists lets a model read any file on the machine.",
)
async def test_only_workspace_documents(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    secret = "".join(rng.choices(string.ascii_letters + string.digits, k=20))
    root = workspace.root
    beside = root.parent
    outside = beside / f"outside-{word(rng)}.md"
    outside.write_text(f"# Outside\n\nthe secret is {secret}\n")
    private = beside / f"{root.name}-private"  # shares the workspace's name as a prefix
    private.mkdir()
    (private / "secret.md").write_text(f"# Private\n\n{secret}\n")
    (root / "notes").mkdir(exist_ok=True)
    link, shelf = f"notes/link-{word(rng)}.md", f"shelf-{word(rng)}"
    (root / link).symlink_to(outside)  # a document-looking link that leads out
    (root / shelf).symlink_to(private, target_is_directory=True)
    (root / ".env").write_text(f"API_KEY={secret}\n")
    (root / ".drafts").mkdir()
    (root / ".drafts" / "plan.md").write_text(f"# Plan\n\n{secret}\n")
    (root / "settings.json").write_text(f'{{"token": "{secret}"}}\n')
    refused = [
        f"../{outside.name}",
        f"notes/../../{outside.name}",
        str(outside),
        f"../{private.name}/secret.md",
        link,
        f"{shelf}/secret.md",
        ".env",
        ".drafts/plan.md",
        "settings.json",
    ]
    errors, desk = await make_desk(target, root, step_seconds=0)
    good = rng.choice(workspace.names)
    async with target.client(errors.create_server(desk)) as client:
        assert text_of(await ok(client, "read_document", {"name": good})) == workspace.texts[good]
        for name in refused:
            result = await client.call_tool("read_document", {"name": name})
            text = text_of(result)
            assert secret not in result.model_dump_json(), (
                f"read_document({name!r}) returned a file that is not a document of the workspace: serve only names "
                f"a scan of the workspace lists (documents.document_path), never whatever the path reaches"
            )
            assert result.is_error and name in text and "incident" not in text.lower(), (
                f"read_document({name!r}) is not a document of the workspace; expected a tool error naming it, got "
                f"is_error={result.is_error}: {text[:200]!r}{not_written(text, 'read_document')}"
            )
            export = await client.call_tool("export_bundle", {"names": [good, name]})
            assert export.is_error and name in text_of(export), (
                f"export_bundle([{good!r}, {name!r}]) should be refused with a tool error naming {name!r}, got "
                f"is_error={export.is_error}: {text_of(export)[:200]!r}"
            )
    assert not desk.jobs, "export_bundle started a job for a name that is not a document of the workspace"
    bundles = files_in(target, desk.exports)
    assert not any(secret in target.read_text(desk.exports / b) for b in bundles), (
        "an export copied a file from outside the workspace into a bundle"
    )
