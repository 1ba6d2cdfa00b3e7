"""Lesson 1 checks: the lifespan opens one index per process and tools read it through `ctx`.

Every run builds a fresh workspace with random document names, so only code that really
indexes the folder passes. Expected values are computed here, never by the code under test.
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.types import Implementation

from checker.checks.kit.eras import MODES
from checker.checks.support.lesson01 import Workspace, desk_info, diff, expected_row
from checker.checks.support.lesson01 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("open_desk indexes every document in the workspace", points=2,
       hint="Walk the root with scan_documents(), load each with load_document(), and store one row per "
            "document (its name relative to the root, its title, its word count); hidden folders and non-text "
            "files are already skipped for you. An empty folder is a desk with no documents, not an error.")
async def test_index_matches_workspace(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    open_desk = target.attr("context", "open_desk")
    async with open_desk(workspace.root) as state:
        names = state.document_names()
        rows = sorted(tuple(row) for row in state.index.execute("SELECT name, title, words FROM documents").fetchall())
        first_id = state.instance_id
    assert names == workspace.names, f"the index does not match the workspace: {diff(names, workspace.names)}"
    want = sorted(expected_row(name, text) for name, text in workspace.documents.items())
    wrong = [(got, expected) for got, expected in zip(rows, want, strict=False) if got != expected]
    assert not wrong, (f"the row for {wrong[0][1][0]!r} should be (name, title, words) = {wrong[0][1]}, the index "
                       f"holds {wrong[0][0]}: store what load_document() read")
    async with open_desk(workspace.root) as again:
        assert again.instance_id != first_id, (
            f"two lifespans both got instance_id {first_id!r}; make a fresh one each time the desk opens (uuid4)")
    empty = tmp_path / "empty"
    empty.mkdir()
    try:
        async with open_desk(empty) as state:
            nothing = state.document_names()
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"open_desk refused an empty workspace folder with {type(exc).__name__}: {exc}; a folder "
                    "without documents is a valid desk with none")
    assert nothing == [], f"an empty folder should give an empty index, got {nothing}"


@check("the index is closed when the lifespan ends, even after an error", points=2,
       hint="Put the yield inside try/finally and close the connection in the finally block, so an "
            "exception thrown into the generator still closes it (and still propagates).")
async def test_index_closed_on_exit(target: Target, workspace: Workspace) -> None:
    open_desk = target.attr("context", "open_desk")
    async with open_desk(workspace.root) as state:
        assert state.is_open, "the index must be open inside the lifespan"
    assert not state.is_open, "the index is still open after the lifespan ended: close it on the way out"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with open_desk(workspace.root) as failing:
            raise Boom("a tool crashed")
    assert not failing.is_open, "after an exception inside the lifespan the index stayed open: use try/finally"


@check("a missing workspace stops startup with a clear StartupError", points=2,
       hint="Check that the root is a folder before opening anything and raise StartupError with a message that "
            "names it, so whoever deploys the server knows exactly what to fix. A path to a file is no workspace "
            "either.")
async def test_startup_failure_is_clear(target: Target, tmp_path: Path) -> None:
    context = target.module("context")
    missing = tmp_path / f"no-such-folder-{random.randint(1000, 9999)}"
    a_file = tmp_path / f"notes-{random.randint(1000, 9999)}.md"
    a_file.write_text("# a file, not a folder")
    for root, what in ((missing, "does not exist"), (a_file, "is a file, not a folder")):
        try:
            async with context.open_desk(root):
                pass
        except context.StartupError as exc:
            assert str(root) in str(exc), f"the StartupError should name the folder {root}, but says: {exc}"
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"open_desk raised {type(exc).__name__}: {exc}; raise StartupError instead")
        else:
            pytest.fail(f"open_desk started although the workspace {root} {what}")


@check("tools read the lifespan state through ctx", points=3,
       hint="Inside a tool, ctx.request_context.lifespan_context is the DeskState that open_desk yielded: "
            "read the index from it and count requests on it. Never keep the state in a global, and never "
            "rescan the folder: the index is what the desk serves.")
async def test_tools_read_lifespan_state(target: Target, workspace: Workspace) -> None:
    context = target.module("context")
    late = f"notes/late-{random.randint(1000, 9999)}.md"
    async with (
        target.record_yields("context", "open_desk") as states,
        target.client(context.create_server(workspace.root)) as client,
    ):
        (workspace.root / late).parent.mkdir(parents=True, exist_ok=True)
        (workspace.root / late).write_text("# Late\n\nwritten after the desk opened")
        listed = await client.call_tool("list_documents", {})
        assert not listed.is_error, f"list_documents failed: {listed.content[0].text}"
        names = (listed.structured_content or {}).get("result")
        if late in (names or []):
            pytest.fail(f"list_documents lists {late!r}, written after the desk opened: it rescanned the "
                        "folder; answer from the index the lifespan built")
        assert names == workspace.names, f"list_documents is wrong: {diff(names or [], workspace.names)}"
        infos = [await desk_info(client) for _ in range(3)]
    assert len(states) == 1, "expected the lifespan to open exactly one desk for this connection"
    state = states[0]
    assert {i["instance_id"] for i in infos} == {state.instance_id}, (
        "desk_info reports an instance_id that is not the one the lifespan created: take it from the context")
    assert [i["requests_served"] for i in infos] == [1, 2, 3], (
        f"requests_served should count 1, 2, 3 over three calls, got {[i['requests_served'] for i in infos]}")
    assert state.requests_served == 3, "count requests on the shared DeskState itself"
    assert all(i["documents"] == len(workspace.names) for i in infos), (
        f"desk_info.documents should count the index ({len(workspace.names)} documents), got "
        f"{sorted({i['documents'] for i in infos})}")


@check("desk_info reports the request, the protocol era and the client", points=3,
       hint="ctx.request_id, ctx.protocol_version, ctx.session.client_params (may be None) and "
            "ctx.client_capabilities describe the current request; they differ between the two eras.")
async def test_request_context_both_eras(target: Target, workspace: Workspace) -> None:
    context = target.module("context")
    server = context.create_server(workspace.root)

    async def sampler(*_: Any) -> Any:
        raise AssertionError("not used")

    for (mode, version), can_sample in itertools.product(MODES.items(), (True, False)):
        name = f"client-{random.randint(10_000, 99_999)}"
        extra = {"sampling_callback": sampler} if can_sample else {}
        async with target.client(server, mode=mode, client_info=Implementation(name=name, version="1.0"),
                                 **extra) as client:
            first, second = await desk_info(client), await desk_info(client)
        assert first["protocol_version"] == version, (
            f"with a mode={mode!r} client, protocol_version should be {version}, got {first['protocol_version']!r}")
        assert first["client_name"] == name, (
            f"client_name should be the client's own name {name!r}, got {first['client_name']!r}")
        assert first["client_can_sample"] is can_sample, (
            f"client_can_sample should be {can_sample} for this {mode} client (it "
            f"{'did' if can_sample else 'did not'} declare sampling)")
        assert first["request_id"] != second["request_id"], (
            "two requests reported the same request_id: read it from ctx")


@check("over HTTP the lifespan runs once for every connection and request", points=3,
       hint="One server process opens one desk. If instance ids differ between connections, something opens "
            "the index per request or per connection instead of in the lifespan.")
async def test_lifespan_once_per_process(target: Target, workspace: Workspace) -> None:
    context = target.module("context")
    async with target.record_yields("context", "open_desk") as states:
        app = context.create_server(workspace.root).streamable_http_app()
        infos: list[dict[str, Any]] = []

        async def one_connection(mode: str) -> None:
            async with target.client(url, mode=mode) as client:
                infos.append(await desk_info(client))

        async with target.http(app, graceful=False) as url:
            for mode in ("auto", "legacy"):
                await one_connection(mode)
            async with anyio.create_task_group() as tg:
                for mode in ("legacy", "auto"):
                    tg.start_soon(one_connection, mode)
    assert len(states) == 1, f"the lifespan opened {len(states)} desks for one server process; it should open one"
    ids = {i["instance_id"] for i in infos}
    assert len(ids) == 1, f"four connections saw {len(ids)} different desks; they should all share one"
    served = sorted(i["requests_served"] for i in infos)
    assert served == list(range(1, 5)), f"requests_served should run 1..4 across connections, got {served}"


@check("a failing tool returns a readable error and the index still closes", points=2,
       hint="Raise ToolError for a name that is not in the index (the model reads its message); return the "
            "file's text, as UTF-8, for names that are.")
async def test_cleanup_after_failing_tool(target: Target, workspace: Workspace) -> None:
    context = target.module("context")
    missing = f"{random.choice(['draft', 'plan', 'memo'])}-{random.randint(100, 999)}.md"
    async with (
        target.record_yields("context", "open_desk") as states,
        target.client(context.create_server(workspace.root)) as client,
    ):
        bad = await client.call_tool("read_document", {"name": missing})
        read = {name: await client.call_tool("read_document", {"name": name}) for name in workspace.names}
    body = bad.content[0].text if bad.content else ""
    assert bad.is_error, f"reading {missing!r}, which does not exist, should be a tool error (is_error=True)"
    assert missing in body, (
        f"the error should name the missing document {missing!r} so the model can fix it; got {body!r}")
    for name, good in read.items():
        text = good.content[0].text if good.content else ""
        assert not good.is_error and text == workspace.documents[name], (
            f"read_document({name!r}) should return the file's text exactly (it is UTF-8), got {text[:80]!r}")
    assert states and not states[0].is_open, "after the client disconnected, the index was left open"


@check("read_document serves only documents in the index, never other files", points=2,
       hint="The index is the list of what may be read: look the name up there first. A name like ../x.md, a "
            "hidden file or a file written after startup exists on disk but is no document of this desk, and "
            "its content must not come back.")
async def test_read_document_only_serves_the_index(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    context = target.module("context")
    secret = f"secret-{random.randint(10_000, 99_999)}"
    (tmp_path / "outside.md").write_text(f"# Outside\n\n{secret}")
    (workspace.root / ".hidden" / "secret.md").write_text(f"# Hidden\n\n{secret}")
    late = f"late-{random.randint(1000, 9999)}.md"
    async with target.client(context.create_server(workspace.root)) as client:
        (workspace.root / late).write_text(f"# Late\n\n{secret}")
        refused = {name: await client.call_tool("read_document", {"name": name})
                   for name in ("../outside.md", ".hidden/secret.md", late, "logo.png")}
    for name, result in refused.items():
        text = result.content[0].text if result.content else ""
        assert result.is_error and secret not in text and "not text" not in text, (
            f"read_document({name!r}) returned {text[:60]!r} (is_error={result.is_error}): {name!r} is not in the "
            "index, so it must be refused with a tool error, whatever is on the disk")


@check("tools are registered with titles, descriptions and read-only hints; ctx stays hidden", points=3,
       hint="server.tool(title=..., annotations=ToolAnnotations(read_only_hint=True)) registers a function; "
            "its docstring becomes the description and a Context parameter never appears in the schema.")
async def test_tools_registered_well(target: Target, workspace: Workspace) -> None:
    context = target.module("context")
    async with target.client(context.create_server(workspace.root)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    wanted = {"desk_info", "list_documents", "read_document"}
    assert wanted <= set(tools), f"missing tools: {sorted(wanted - set(tools))}"
    for name in sorted(wanted):
        tool = tools[name]
        props = tool.input_schema.get("properties", {})
        assert "ctx" not in props and "context" not in props, f"{name} exposes its Context parameter in the schema"
        assert tool.title, f"{name} needs a human title"
        assert tool.description, f"{name} needs a description (its docstring)"
        assert tool.annotations and tool.annotations.read_only_hint, f"{name} only reads: mark it read_only_hint=True"
    assert tools["read_document"].input_schema.get("required") == ["name"], "read_document takes exactly `name`"
