"""Lesson 4 checks, the tools: read, search and list stay inside their roots, in both protocol eras.

Each check serves a fresh sandbox (`support/lesson04.py`) through the student's server and calls
its tools as a client would; a legacy client's own roots may narrow the configured ones, never
widen them.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from mcp.types import ListRootsResult, Root
from pydantic import FileUrl

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of
from checker.checks.support.lesson04 import (
    CRASH,
    Sandbox,
    assert_refused,
    call_read,
    random_tag,
    verdict_of,
)
from checker.checks.support.lesson04 import sandbox as sandbox  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("read_file refuses outside paths without revealing content or existence", points=3,
       hint="Pass every path through the gate (resolve_allowed) before anything touches the disk, so everything "
            "outside gets one refusal whether it exists or not; say 'no such file' (a ToolError) only inside.")
async def test_read_refusal_no_leak(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = target.module("roots")
    server = roots.create_server([box.root])
    ghost = box.siblings[0] / f"{random_tag(random.Random())}.md"      # same length as the secret's name
    pairs = [(str(box.sibling_secret), str(ghost)),
             (f"../{box.siblings[0].name}/{box.sibling_secret.name}", f"../{box.siblings[0].name}/{ghost.name}")]
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            good = await call_read(client, f"notes/{box.doc.name}")
            assert not good.is_error and text_of(good) == box.doc_text, (
                f"[{mode}] read_file('notes/{box.doc.name}') should return the document, got {text_of(good)[:100]!r}")
            for real, fake in pairs:
                exists = assert_refused(await call_read(client, real), box, real)
                missing = assert_refused(await call_read(client, fake), box, fake)
                assert exists.replace(box.sibling_secret.name, "<name>") == missing.replace(ghost.name, "<name>"), (
                    f"[{mode}] an existing outside file and a missing one get different refusals ({exists!r} vs "
                    f"{missing!r}): the difference tells the model what exists outside the roots")
            via_link = assert_refused(await call_read(client, "out-file"), box, "out-file")
            for leak in (box.secret.name, box.outside.name):
                assert leak not in via_link, (
                    f"[{mode}] the refusal for the link 'out-file' names where it points ({leak}); name only what was "
                    "asked")
            assert_refused(await call_read(client, f"../{box.outside.name}/{box.secret.name}"), box, "../…")
            ghost_inside = f"notes/{ghost.name}"
            missing_inside = await call_read(client, ghost_inside)
            assert missing_inside.is_error and text_of(missing_inside).strip() != f"{CRASH} read_file", (
                f"[{mode}] read_file({ghost_inside!r}), missing inside the root, should be a ToolError that says so, "
                f"got {text_of(missing_inside)!r}")


@check("search_files never reads through links that leave the roots", points=3,
       hint="Walking a folder finds links too. Check every file you are about to open with is_path_allowed, "
            "not only the folder you started from.")
async def test_search_stays_inside(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = target.module("roots")
    (box.root / "notes" / "copy.md").symlink_to(box.secret)     # one more outward link, deep in a folder
    server = roots.create_server([box.root])
    async with target.client(server) as client:
        result = await client.call_tool("search_files", {"query": box.needle.upper()})
        assert not result.is_error, f"search_files failed: {text_of(result)[:150]}"
        hits = (result.structured_content or {}).get("result") or []
        body = text_of(result)
        assert box.secret_marker not in body, (
            "search_files returned lines from a file outside the roots, read through a link inside them: "
            "check each file, not only the starting folder")
        found = {Path(h["path"]).name for h in hits}
        assert box.doc.name in found, (
            f"search_files should find {box.needle!r} in {box.doc.name} (case-insensitive), got {sorted(found)}")
        outside = await client.call_tool("search_files", {"query": box.needle, "path": str(box.siblings[0])})
        assert_refused(outside, box, str(box.siblings[0]), "search_files")


@check("search_files names each file the way read_file takes it back, never by its server path", points=2,
       hint="An absolute path tells the model where the roots live on the server, and nothing it needs. Name a hit "
            "relative to the first root when it lies there (that is what read_file expects); a file under another "
            "root keeps the folder as the client named it.")
async def test_search_paths_relative(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    second = box.siblings[1]                       # configured as a second root here
    roots = target.module("roots")
    server = roots.create_server([box.root, second])
    expected_doc = box.doc.relative_to(box.root).as_posix()
    async with target.client(server) as client:
        found: dict[str, list[str]] = {}
        for label, path in (("the first root", ""), ("a linked folder inside it", "in-link"),
                            ("the second root, named absolutely", str(second))):
            result = await client.call_tool("search_files", {"query": box.needle, "path": path})
            assert not result.is_error, f"search_files in {label} failed: {text_of(result)[:150]}"
            found[label] = [h["path"] for h in (result.structured_content or {}).get("result") or []]
        log_text = {}
        for label in found:
            for hit in found[label][:1]:
                answer = await client.call_tool("read_file", {"path": hit})
                log_text[(label, hit)] = (answer.is_error, text_of(answer))
    for label in ("the first root", "a linked folder inside it"):
        assert found[label] == [expected_doc], (
            f"search_files in {label} named its hit {found[label]}, expected [{expected_doc!r}]: relative to the first "
            f"root, never the server's absolute path")
    assert found["the second root, named absolutely"] == [f"{second}/secret.md"], (
        f"a hit under the second root, searched as {str(second)!r}, was named "
        f"{found['the second root, named absolutely']}: "
        f"keep the folder as the client named it, joined with the file's path below it")
    for (label, hit), (failed, text) in log_text.items():
        assert not failed and box.needle in text, (
            f"read_file({hit!r}) (a hit of the search in {label}) failed: {text[:120]!r}")


@check("list_files shows a folder inside the roots and nothing that leads out", points=2,
       hint="list_files is given: it passes the folder through resolve_allowed and every entry through "
            "is_path_allowed. If this fails, look at those two.")
async def test_list_files(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = target.module("roots")
    server = roots.create_server([box.root])
    expected = sorted(["notes/", box.spaced.name, "in-link/", "in-file"])
    async with target.client(server) as client:
        result = await client.call_tool("list_files", {})
        assert not result.is_error, f"list_files failed: {text_of(result)[:150]}"
        names = sorted((result.structured_content or {}).get("result") or [])
        assert names == expected, f"list_files() of the root should list {expected}, got {names}"
        assert_refused(await client.call_tool("list_files", {"path": str(box.outside)}), box, str(box.outside),
                       "list_files")


@check("read_file answers a folder, undecodable bytes and a link loop without crashing", points=2,
       hint="Inside the roots, every odd target gets a ToolError that says what it is, or the text: a folder is not "
            "a file (say so), bytes that are not UTF-8 are replaced with U+FFFD rather than fatal, and a symbolic-link "
            "loop never resolves, so is_path_allowed answers False for it instead of raising.")
async def test_read_file_odd_targets(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    raw = b"caf\xe9 au lait\n\xff\xfe ok \xc3( end\n\xe2\x82"
    bad = box.root / "latin1.txt"
    bad.write_bytes(raw)
    (box.root / "loop-a").symlink_to("loop-b")
    (box.root / "loop-b").symlink_to("loop-a")
    for path in ("loop-a", str(box.root / "loop-b" / "x.md")):
        assert verdict_of(target, path, [str(box.root)]) is False, (
            f"is_path_allowed({path!r}) returned True for a symbolic-link loop (loop-a -> loop-b -> loop-a): a path "
            "that "
            "never resolves is not allowed")
    roots = target.module("roots")
    server = roots.create_server([box.root])
    async with target.client(server) as client:
        folder = await call_read(client, "notes")
        body = text_of(folder)
        assert folder.is_error and body.strip() != f"{CRASH} read_file", (
            f"read_file('notes'), a folder inside the root, gave {body[:120]!r}: refuse it with a ToolError")
        assert "folder" in body.lower() or "director" in body.lower(), (
            f"read_file('notes') on a folder said {body!r}: say that it is a folder (list_files shows folders), "
            "not that it is missing")
        decoded = await call_read(client, bad.name)
        want = raw.decode("utf-8", errors="replace")
        assert not decoded.is_error and text_of(decoded) == want, (
            f"read_file({bad.name!r}), a file with bytes that are not UTF-8, gave {text_of(decoded)[:120]!r}, expected "
            f"{want!r}: decode as UTF-8, replacing each undecodable byte with U+FFFD and keeping everything else")
        loop = await call_read(client, "loop-a")
        assert loop.is_error and text_of(loop).strip() != f"{CRASH} read_file", (
            f"read_file('loop-a'), a link loop, gave {text_of(loop)[:120]!r}: refuse it with a ToolError")


@check("search_files refuses a blank query and returns 1-based, trimmed lines, at most `limit` of them", points=2,
       hint="A blank query would match every line: refuse it with a ToolError. Number lines from 1, strip each "
            "line's surrounding spaces, keep the file's order, and stop as soon as `limit` hits are found (the tool "
            "uses MAX_HITS).")
async def test_search_hits(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    needle = box.needle
    folder = box.root / "hits"
    folder.mkdir()
    lines = [f"  Top {needle.upper()} line\t", "nothing here", f"\t{needle} two  ", "", f"last {needle.title()}."]
    (folder / "lines.md").write_text("\n".join(lines) + "\n")
    expected = [(1, f"Top {needle.upper()} line"), (3, f"{needle} two"), (5, f"last {needle.title()}.")]
    roots = target.module("roots")
    limit = roots.MAX_HITS
    assert isinstance(limit, int) and 1 <= limit <= 500, f"MAX_HITS should be a small positive number, got {limit!r}"
    bulk = box.root / "bulk"
    bulk.mkdir()
    (bulk / "many.md").write_text("".join(f"{i} {needle}\n" for i in range(1, limit + 6)))
    server = roots.create_server([box.root])
    async with target.client(server) as client:
        for blank in ("", "   "):
            result = await client.call_tool("search_files", {"query": blank})
            assert result.is_error and text_of(result).strip() != f"{CRASH} search_files", (
                f"search_files({blank!r}) gave {text_of(result)[:120]!r}: a blank query matches every line; refuse it "
                "with a ToolError that says why")
        query = needle[:3].upper() + needle[3:]              # mixed case: every line matches, whatever its case
        result = await client.call_tool("search_files", {"query": query, "path": "hits"})
        assert not result.is_error, f"search_files in hits/ failed: {text_of(result)[:150]}"
        got = [(h.get("line"), h.get("text")) for h in (result.structured_content or {}).get("result") or []]
        assert got == expected, (
            f"search_files({query!r}) in a file of {len(lines)} lines returned (line, text) {got}, expected "
            f"{expected}: "
            "lines count from 1, the text is the line without its surrounding spaces, case is ignored")
        result = await client.call_tool("search_files", {"query": needle, "path": "bulk"})
        many = [h.get("line") for h in (result.structured_content or {}).get("result") or []]
        assert many == list(range(1, limit + 1)), (
            f"a file with {limit + 5} matching lines gave {len(many)} hits: the tool returns the first MAX_HITS "
            f"({limit}), in order")
    search_files = target.attr("roots", "search_files")
    capped = [h.line for h in search_files(needle, str(bulk), [box.root], limit=3)]
    assert capped == [1, 2, 3], (
        f"search_files(..., limit=3) on a file with {limit + 5} matching lines returned lines {capped}: honour the "
        "`limit` argument, stop once it is reached")


@check("configured roots apply in both eras; clients without roots still work", points=3,
       hint="The server's configuration is the policy. Ask a client for roots only if it is a legacy client that "
            "declared the capability; everyone else gets an empty offer, never a -32021 error.")
async def test_both_eras(target: Target, sandbox: Sandbox) -> None:
    from mcp import MCPError

    box = sandbox
    roots = target.module("roots")
    server = roots.create_server([box.root])
    asked: list[str] = []

    async def offer_notes(context: Any) -> ListRootsResult:
        asked.append("yes")
        return ListRootsResult(roots=[Root(uri=FileUrl(box.notes.as_uri()))])

    for mode in MODES:
        for callback in (None, offer_notes):
            extra = {"list_roots_callback": callback} if callback else {}
            async with target.client(server, mode=mode, **extra) as client:
                label = f"[{mode} client, {'with' if callback else 'without'} roots]"
                try:
                    top = await call_read(client, box.spaced.name)
                except MCPError as exc:
                    pytest.fail(f"{label} read_file raised a protocol error ({exc}): degrade to the configured "
                                "roots when the client cannot be asked")
                if mode == "auto" or callback is None:
                    assert not top.is_error and text_of(top) == box.spaced_text, (
                        f"{label} read_file({box.spaced.name!r}) inside the configured root failed: "
                        f"{text_of(top)[:120]!r}")
                assert_refused(await call_read(client, str(box.secret)), box, str(box.secret))
                tools = {t.name: t for t in (await client.list_tools()).tools}
                props = tools["read_file"].input_schema.get("properties", {})
                assert list(props) == ["path"], f"{label} read_file's schema should take only `path`, got {list(props)}"
        if mode == "auto":
            assert not asked, ("a 2026-07-28 client was asked for its roots: roots are deprecated there "
                               "(SEP-2577) and the configuration decides")


@check("a legacy client's roots narrow the configuration but never widen it", points=3,
       hint="Roots are the client's guidance. Intersect them with the configured roots: keep what both allow, "
            "drop offered folders outside the configuration.")
async def test_legacy_roots_narrow(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = target.module("roots")
    server = roots.create_server([box.root])
    calls: list[list[str]] = []

    def offering(uris: list[str]) -> Any:
        async def offer(context: Any) -> ListRootsResult:
            calls.append(uris)
            return ListRootsResult(roots=[Root(uri=FileUrl(u)) for u in uris])
        return offer

    narrow = [box.notes.as_uri(), box.outside.as_uri(), f"file://evil.example{quote(str(box.root))}"]
    random.shuffle(narrow)
    async with target.client(server, mode="legacy", list_roots_callback=offering(narrow)) as client:
        inside = await call_read(client, str(box.doc))
        assert not inside.is_error and text_of(inside) == box.doc_text, (
            f"the client offered notes/, so {box.doc} there must be readable: {text_of(inside)[:120]!r}")
        top = await call_read(client, str(box.spaced))
        assert top.is_error and box.spaced_text not in text_of(top), (
            f"the client offered only notes/ (and folders outside the configuration), yet {box.spaced.name} in "
            "the root's top level was readable: narrow to the overlap of both lists")
        body = assert_refused(await call_read(client, str(box.secret)), box, str(box.secret))
        assert box.secret_marker not in body, "the secret leaked"
    assert calls, "a legacy client that declared roots was never asked for them"
    async with target.client(server, mode="legacy", list_roots_callback=offering([box.outside.as_uri()])) as client:
        assert_refused(await call_read(client, str(box.secret)), box, str(box.secret))
    assert len(calls) >= 2, "each request of a legacy client with roots should ask for them"


@check("narrow_roots keeps exactly the overlap of configured and offered roots", points=2,
       hint="Two folders overlap only if one is inside the other; then the deeper one is the overlap. An empty "
            "offer changes nothing.")
async def test_narrow_roots(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    narrow = target.attr("roots", "narrow_roots")
    configured = [box.root, box.outside]
    cases = [
        ([], configured, "an empty offer leaves the configuration as it is"),
        ([box.notes.as_uri()], [box.notes], "an offered folder inside a configured root is the overlap"),
        (["file:///"], configured, "an offer of / keeps the configured roots, not the whole disk"),
        ([box.siblings[0].as_uri()], [], "an offered folder outside every configured root grants nothing"),
        ([box.alias.as_uri()], [box.root], "an offered link to the root counts as the root (resolve offers)"),
        ([box.deep.as_uri(), box.outside.as_uri()], [box.deep, box.outside], "keep the client's order"),
        ([f"file://evil.example{quote(str(box.notes))}", "https://example.com" + quote(str(box.notes)),
          box.notes.as_uri() + "%00", box.deep.as_uri()], [box.deep],
         "offered roots that to_path refuses (another host, another scheme, a NUL byte) are skipped, not fatal"),
        (["../" * 40 + str(box.notes).lstrip("/")], [],
         "a relative offered root is skipped (it names no folder until something anchors it); resolved against "
         "the working directory it would lead to notes/"),
    ]
    for offered, want, why in cases:
        got = [Path(p) for p in narrow(configured, offered)]
        assert got == want, f"narrow_roots(configured, {offered}) returned {got}, expected {want}: {why}"
