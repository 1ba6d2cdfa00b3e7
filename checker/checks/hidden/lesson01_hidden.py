"""Lesson 1, instructor-only checks: edge cases the visible checks do not spell out.

Left out of the student release and run by `course grade`, so a submission tuned to the
visible checks alone does not collect these points.
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
    names = sorted({f"notes/{random.choice(['café', 'naïve plan', '研究', 'q&a'])} {random.randint(1, 99)}.md",
                    f"{random.choice(['Ünïcode', 'with space'])}.txt"})
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
    (tmp_path / "outside.md").write_text(secret)
    root = tmp_path / "desk"
    root.mkdir()
    (root / "inside.md").write_text("# inside")
    context = target.module("context")
    async with target.client(context.create_server(root)) as client:
        result = await client.call_tool("read_document", {"name": "../outside.md"})
    text = result.content[0].text if result.content else ""
    assert result.is_error and secret not in text, "read_document('../outside.md') must be refused without its content"
