"""Lesson 7 checks, limits: bad calls fail fast at the edge, the schema advertises every limit, and
the tool annotations tell a host the truth.

Both sides of every documented limit are tried, in two-byte characters where a limit counts
characters, and the values are validated against the input schema the client sees.
"""

from __future__ import annotations

import random
import string
from typing import Any

import anyio
import pytest
from mcp import MCPError

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson07 import (
    Workspace,
    idempotency_key,
    make_desk,
    ok,
)
from checker.checks.support.lesson07 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

# The limits the lesson documents (errors.py's MAX_* constants): both sides of each are tried.
MAX_QUERY_CHARS, MAX_LIMIT, MAX_NAME_CHARS, MAX_TITLE_CHARS = 500, 50, 200, 120
MAX_NOTE_CHARS, MAX_EXPORT_DOCUMENTS, MAX_NOTE_ID_CHARS, KEY_CHARS = 10_000, 100, 64, (8, 64)
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
WIDE = "\u00e9"  # 'e' with an accent: one character, two bytes in UTF-8 (limits count characters)



@check(
    "the server keeps serving after a storm of bad calls",
    points=2,
    hint="Bad input must never take the server down or leave it half-done: invalid arguments fail validation "
    "before your code runs, unknown tools are answered by the SDK, and valid calls still work afterwards.",
)
async def test_survives_bad_call_storm(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await make_desk(target, workspace.root, backend=("healthy", workspace.names[:2]), step_seconds=0)
    server = errors.create_server(desk)
    huge = "x" * rng.randint(100_000, 400_000)
    bad_calls: list[tuple[str, Any]] = [
        (f"{word(rng)}_{word(rng)}", {}),
        (f"{word(rng)}", {"query": "a"}),
        ("search_documents", {}),
        ("search_documents", {"query": rng.randint(1, 99)}),
        ("search_documents", {"query": "ok", "limit": "many"}),
        ("search_documents", {"query": "ok", "limit": -rng.randint(1, 10**9)}),
        ("search_documents", {"query": "ok", "limit": rng.randint(10**6, 10**9)}),
        ("search_documents", {"query": huge}),
        ("read_document", {"name": huge}),
        ("read_document", {"name": ["a", "b"]}),
        ("read_document", {"name": "../" * rng.randint(2, 6) + "etc/passwd"}),
        ("read_document", None),
        ("save_note", {"title": "t", "body": "b"}),
        ("save_note", {"title": "t", "body": huge, "idempotency_key": idempotency_key(rng)}),
        ("save_note", {"title": huge[:5000], "body": "b", "idempotency_key": idempotency_key(rng)}),
        ("save_note", {"title": "t", "body": "b", "idempotency_key": "no"}),
        ("save_note", {"title": "t", "body": "b", "idempotency_key": "spaces and ; quotes' " * 2}),
        ("delete_note", {"note_id": huge}),
        ("export_bundle", {"names": []}),
        ("export_bundle", {"names": "not-a-list"}),
        ("export_bundle", {"names": [rng.choice(workspace.names)] * rng.randint(5_000, 20_000)}),
    ]
    calls = bad_calls * 2
    rng.shuffle(calls)
    outcomes: list[str] = []

    async def bad(client: Any, tool: str, args: Any) -> None:
        try:
            result = await client.call_tool(tool, args)
        except MCPError:
            outcomes.append("protocol")
            return
        outcomes.append("tool-error" if result.is_error else f"accepted {tool}")

    for mode in MODES:
        outcomes.clear()
        async with target.client(server, mode=mode) as client:
            with anyio.move_on_after(12) as storm:
                async with anyio.create_task_group() as tg:
                    for tool, args in calls:
                        tg.start_soon(bad, client, tool, args)
            assert not storm.cancelled_caught, (
                f"[{mode}] {len(calls) - len(outcomes)} of {len(calls)} bad calls got no answer within 12 s: a bad "
                f"call must fail fast, not hang"
            )
            accepted = [o for o in outcomes if o.startswith("accepted")]
            assert not accepted, (
                f"[{mode}] a malformed or oversized call was accepted ({accepted[0]}): constrain the "
                f"arguments so it is rejected at the edge"
            )
            search = (await ok(client, "search_documents", {"query": "a"})).structured_content or {}
            assert search.get("hits") == workspace.names[:2], f"after the storm, search answered {search!r}"
            name = rng.choice(workspace.names)
            assert text_of(await ok(client, "read_document", {"name": name})) == workspace.texts[name]
            await ok(client, "save_note", {"title": "after", "body": "storm", "idempotency_key": idempotency_key(rng)})
        assert not desk.jobs, f"[{mode}] a rejected export started a job"
    assert len(desk.notes) == 2, f"only the two good save_note calls may save notes; found {len(desk.notes)}"


@check(
    "argument limits are advertised in the schema and enforced at the edge",
    points=2,
    hint="Annotated[str, Field(max_length=...)], Annotated[int, Field(ge=..., le=...)] (or gt/lt, or a pattern) put "
    "the limits in the input schema the client sees, and the SDK rejects a value past them with a message "
    "naming the field. Limits count characters, not bytes, and a value exactly at a limit is allowed.",
)
async def test_limits_advertised_and_enforced(target: Target, workspace: Workspace) -> None:
    from jsonschema import Draft202012Validator

    rng = random.Random()
    # Two documents whose names are exactly at the name limit and one past it, in two-byte characters.
    at_limit = f"{WIDE * 120}/{WIDE * (MAX_NAME_CHARS - 124)}.md"
    past_limit = f"{WIDE * 120}/{WIDE * (MAX_NAME_CHARS - 123)}.md"
    for name in (at_limit, past_limit):
        (workspace.root / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace.root / name).write_text(f"# Long name\n\n{word(rng)}\n", encoding="utf-8")
    doc = rng.choice(workspace.names)
    huge = "x" * rng.randint(100_000, 150_000)

    def key(length: int) -> str:
        return "".join(rng.choices(KEY_ALPHABET, k=length))

    def note(**changes: Any) -> dict[str, Any]:
        return {"title": "t", "body": "b", "idempotency_key": key(20), **changes}

    low, high = KEY_CHARS
    allowed: list[tuple[str, str, dict[str, Any]]] = [
        ("a query of exactly 500 two-byte characters", "search_documents", {"query": WIDE * MAX_QUERY_CHARS}),
        ("limit=1", "search_documents", {"query": "a", "limit": 1}),
        (f"limit={MAX_LIMIT}", "search_documents", {"query": "a", "limit": MAX_LIMIT}),
        (f"a document name of exactly {MAX_NAME_CHARS} two-byte characters", "read_document", {"name": at_limit}),
        (f"a title of exactly {MAX_TITLE_CHARS} two-byte characters", "save_note", note(title=WIDE * MAX_TITLE_CHARS)),
        (f"a body of exactly {MAX_NOTE_CHARS} two-byte characters", "save_note", note(body=WIDE * MAX_NOTE_CHARS)),
        (f"an idempotency key of {low} characters", "save_note", note(idempotency_key=key(low))),
        (f"an idempotency key of {high} characters", "save_note", note(idempotency_key=key(high))),
        (f"a note id of {MAX_NOTE_ID_CHARS} characters", "delete_note", {"note_id": "n" * MAX_NOTE_ID_CHARS}),
        ("one name to export", "export_bundle", {"names": [at_limit]}),
        (f"{MAX_EXPORT_DOCUMENTS} names to export", "export_bundle", {"names": [doc] * MAX_EXPORT_DOCUMENTS}),
    ]
    refused: list[tuple[str, str, dict[str, Any], str]] = [
        ("a query one character too long", "search_documents", {"query": WIDE * (MAX_QUERY_CHARS + 1)}, "query"),
        ("a 100,000-character query", "search_documents", {"query": huge}, "query"),
        ("limit=0", "search_documents", {"query": "a", "limit": 0}, "limit"),
        ("a negative limit", "search_documents", {"query": "a", "limit": -rng.randint(1, 10**6)}, "limit"),
        (f"limit={MAX_LIMIT + 1}", "search_documents", {"query": "a", "limit": MAX_LIMIT + 1}, "limit"),
        ("a huge limit", "search_documents", {"query": "a", "limit": rng.randint(10**6, 10**9)}, "limit"),
        ("a document name one character too long (the document exists)", "read_document", {"name": past_limit}, "name"),
        ("a 100,000-character document name", "read_document", {"name": huge}, "name"),
        ("a title one character too long", "save_note", note(title=WIDE * (MAX_TITLE_CHARS + 1)), "title"),
        ("a body one character too long", "save_note", note(body=WIDE * (MAX_NOTE_CHARS + 1)), "body"),
        (
            f"an idempotency key of {low - 1} characters",
            "save_note",
            note(idempotency_key=key(low - 1)),
            "idempotency_key",
        ),
        (
            f"an idempotency key of {high + 1} characters",
            "save_note",
            note(idempotency_key=key(high + 1)),
            "idempotency_key",
        ),
        ("a 100,000-character idempotency key", "save_note", note(idempotency_key=huge), "idempotency_key"),
        (
            "an idempotency key with a space and a quote",
            "save_note",
            note(idempotency_key=f"{key(6)} '{key(6)}"),
            "idempotency_key",
        ),
        ("a note id one character too long", "delete_note", {"note_id": "n" * (MAX_NOTE_ID_CHARS + 1)}, "note_id"),
        ("no names to export", "export_bundle", {"names": []}, "names"),
        (
            f"{MAX_EXPORT_DOCUMENTS + 1} names to export",
            "export_bundle",
            {"names": [doc] * (MAX_EXPORT_DOCUMENTS + 1)},
            "names",
        ),
        (
            "a name to export one character too long (the document exists)",
            "export_bundle",
            {"names": [past_limit]},
            "names",
        ),
    ]
    errors, desk = await make_desk(target, workspace.root, backend=("healthy", workspace.names), step_seconds=0)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        missing = sorted(
            {"search_documents", "read_document", "save_note", "delete_note", "export_bundle"} - set(tools)
        )
        assert not missing, f"missing tools: {missing}"
        schemas = {name: Draft202012Validator(tool.input_schema) for name, tool in tools.items()}
        for what, tool, args in allowed:
            assert schemas[tool].is_valid(args), (
                f"the input schema of {tool} refuses {what}, which the lesson allows: "
                f"{next(iter(schemas[tool].iter_errors(args))).message[:160]}"
            )
            result = await ok(client, tool, args)
            if tool == "read_document":
                assert text_of(result).startswith("# Long name"), f"read_document with {what} did not return it"
        for what, tool, args, field in refused:
            assert not schemas[tool].is_valid(args), (
                f"the input schema of {tool} accepts {what}: the client cannot see the limit on `{field}`. Put it "
                f"in the argument's type (Annotated[..., Field(...)]) so the schema advertises it"
            )
            try:
                result = await client.call_tool(tool, args)
            except MCPError as exc:
                text, rejected = exc.message, True
            else:
                text, rejected = text_of(result), result.is_error
            assert rejected and field in text, (
                f"{tool} with {what} should be rejected at the edge with a message naming `{field}`; got "
                f"is_error={rejected}: {text[:200]!r}"
            )
    saved = len([a for _, tool, a in allowed if tool == "save_note"])
    assert len(desk.notes) == saved, f"only the {saved} calls within the limits may save notes, found {len(desk.notes)}"


@check(
    "tools declare truthful annotations (read-only, idempotent, destructive, open-world)",
    points=2,
    hint="ToolAnnotations tell a host what it may retry or must confirm. Remember the defaults when a hint is "
    "missing: not read-only, destructive, not idempotent, open world. A writer that destroys nothing, and a "
    "tool that never leaves the desk, must say so.",
)
async def test_annotations_truthful(target: Target, workspace: Workspace) -> None:
    errors, desk = await make_desk(target, workspace.root)
    async with target.client(errors.create_server(desk)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    problems: list[str] = []

    def hints(name: str) -> Any:
        tool = tools.get(name)
        if tool is None or tool.annotations is None:
            problems.append(f"{name} has no annotations")
            return None
        return tool.annotations

    for reader in ("search_documents", "read_document"):
        a = hints(reader)
        if a is not None and a.read_only_hint is not True:
            problems.append(f"{reader} only reads: read_only_hint=True")
    save = hints("save_note")
    if save is not None:
        if save.read_only_hint:
            problems.append("save_note changes state: it is not read-only")
        if save.idempotent_hint is not True:
            problems.append("save_note is idempotent thanks to its key: idempotent_hint=True")
        if save.destructive_hint is not False:
            problems.append("save_note only adds: destructive_hint=False (a missing hint means destructive)")
    delete = hints("delete_note")
    if delete is not None:
        if delete.read_only_hint or delete.destructive_hint is False:
            problems.append("delete_note destroys data: not read-only, destructive_hint True")
        if delete.idempotent_hint is not True:
            problems.append("deleting twice ends in the same state: delete_note is idempotent")
    export = hints("export_bundle")
    if export is not None:
        if export.read_only_hint:
            problems.append("export_bundle writes a file: it is not read-only")
        if export.destructive_hint is not False:
            problems.append(
                "export_bundle only adds a new file: destructive_hint=False (a missing hint means destructive)"
            )
        if export.idempotent_hint:
            problems.append("export_bundle writes a new bundle on every call: it is not idempotent")
    search = tools.get("search_documents")
    if search is not None and search.annotations is not None and search.annotations.open_world_hint is False:
        problems.append("search_documents asks an outside search service: it is open-world (open_world_hint True)")
    for name in ("read_document", "save_note", "delete_note", "export_bundle"):
        tool = tools.get(name)
        if tool is not None and tool.annotations is not None and tool.annotations.open_world_hint is not False:
            problems.append(
                f"{name} touches only the desk's own workspace and notes: open_world_hint=False (a "
                f"missing hint means open world)"
            )
    assert not problems, "; ".join(problems)
