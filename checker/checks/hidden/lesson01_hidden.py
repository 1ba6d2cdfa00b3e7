"""Lesson 1, instructor-only checks: the visible requirements again, with inputs the student never saw.

Left out of the student release and run by `course grade`. Each re-tests a requirement a visible
check already enforces (names kept exactly, an empty workspace is valid, only indexed names are
read) with other names and other paths, so a submission that hard-coded the visible cases loses
these points and one that understood them does not.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("documents with spaces and non-ASCII names are indexed as they are", points=1,
       hint="Store each document's path relative to the root exactly, without re-encoding it.")
async def test_unusual_names_are_indexed(target: Target, tmp_path: Path) -> None:
    names = sorted({f"notes/{random.choice(['研究 ノート', 'q&a #2', 'ελληνικά'])} {random.randint(1, 99)}.md",
                    f"{random.choice(['Ærø draft', 'with  two spaces', 'emoji 🙂'])}.txt"})
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("# title\nbody")
    async with target.attr("context", "open_desk")(tmp_path) as state:
        got = state.document_names()
    assert got == names, f"expected {names}, the index holds {got}"


@check("an empty workspace is a valid, empty desk", points=1,
       hint="No documents is not an error: list nothing and count zero.")
async def test_empty_workspace(target: Target, tmp_path: Path) -> None:
    context = target.module("context")
    async with target.client(context.create_server(tmp_path)) as client:
        listed = await client.call_tool("list_documents", {})
        info = await client.call_tool("desk_info", {})
    assert not listed.is_error and listed.structured_content == {"result": []}, "an empty desk lists no documents"
    assert not info.is_error and info.structured_content["documents"] == 0, "an empty desk counts zero documents"


@check("read_document never reads a file outside the index", points=1,
       hint="Only names that are in the index may be read; a path like ../x.md is not a document name.")
async def test_no_reading_outside_the_index(target: Target, tmp_path: Path) -> None:
    secret = f"secret-{random.randint(1000, 9999)}"
    (tmp_path / "elsewhere.md").write_text(secret)
    root = tmp_path / "desk"
    (root / "notes").mkdir(parents=True)
    (root / "inside.md").write_text("# inside")
    (root / "notes" / "linked.md").symlink_to(tmp_path / "elsewhere.md")
    (root / "_build").mkdir()
    (root / "_build" / "cache.json").write_text(secret)
    context = target.module("context")
    names = [str(tmp_path / "elsewhere.md"), "notes/../../elsewhere.md", "notes/linked.md", "_build/cache.json",
             "./inside.md/../../elsewhere.md"]
    async with target.client(context.create_server(root)) as client:
        results = {name: await client.call_tool("read_document", {"name": name}) for name in names}
    for name, result in results.items():
        text = result.content[0].text if result.content else ""
        assert result.is_error and secret not in text, f"read_document({name!r}) must be refused without its content"
