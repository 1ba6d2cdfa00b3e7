"""Lesson 4, instructor-only checks: edge cases the visible checks do not spell out.

Left out of the student release and run by `course grade`, so a submission tuned to the
visible checks alone does not collect these points. Each check lays out its own folder under
`tmp_path` with random names and computes what the tools should answer from what it wrote.
"""

from __future__ import annotations

import os
import random
import string
from pathlib import Path
from typing import Any

import pytest

from checker.checks.kit.eras import MODES
from checker.checks.kit.text import text_of
from checker.checks.support.lesson04 import CRASH, random_tag
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


def _desk(tmp_path: Path, rng: random.Random) -> tuple[Path, Path]:
    """A real (resolved) base folder and a root inside it."""
    base = Path(os.path.realpath(tmp_path)) / random_tag(rng)
    root = base / f"desk-{random_tag(rng)}"
    root.mkdir(parents=True)
    return base, root


def _not_a_crash(result: Any, tool: str, asked: str, expected: str) -> str:
    body = text_of(result)
    assert result.is_error, f"{tool}({asked}) succeeded with {body[:120]!r}; {expected}"
    assert body.strip() != f"{CRASH} {tool}", (
        f"{tool}({asked}) crashed, so the model only sees {body!r}: {expected}, with a ToolError whose message "
        "says why")
    return body


@check("percent signs: plain paths are taken literally, file:// URIs are decoded exactly once", points=1,
       hint="Only a file:// URI is percent-encoded. A plain path like 100%25.md may be a real file name, and "
            "decoding a URI twice turns %252E into a dot.")
async def test_percent_signs_literal(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    base, root = _desk(tmp_path, rng)
    name = f"{random_tag(rng)}.md"
    # A folder literally called %2E%2E inside the root; decoding it would mean `..`, which leads to
    # a secret file of the same name beside the root.
    trap = root / "%2E%2E"
    trap.mkdir()
    inner = f"inner {random_tag(rng, 12)}\n"
    (trap / name).write_text(inner)
    secret = f"SECRET-{random_tag(rng, 12)}\n"
    (base / name).write_text(secret)
    # Two files whose names differ only by an escape: `<stem>%XX<tag>.md` and its decoded twin.
    escape, decoded = rng.choice([("%20", " "), ("%25", "%"), ("%2D", "-"), ("%41", "A")])
    stem, tag = random_tag(rng, 4), random_tag(rng, 4)
    literal, twin = root / f"{stem}{escape}{tag}.md", root / f"{stem}{decoded}{tag}.md"
    literal_text, twin_text = f"literal {random_tag(rng, 12)}\n", f"decoded {random_tag(rng, 12)}\n"
    literal.write_text(literal_text)
    twin.write_text(twin_text)
    cases = [
        (f"%2E%2E/{name}", inner, f"the folder named %2E%2E inside the root holds {name}; a plain path is "
                                  "never percent-decoded, so it does not mean `..`"),
        (literal.name, literal_text, f"a plain path is taken literally: {literal.name!r} names that very file, "
                                     f"not {twin.name!r}"),
        ((trap / name).as_uri(), inner, "a file URI is decoded exactly once: %252E%252E is the text %2E%2E, "
                                        "the folder's real name"),
        (literal.as_uri(), literal_text, f"decoded once, this URI names {literal.name!r}"),
        (twin.as_uri(), twin_text, f"decoded once, this URI names {twin.name!r}"),
    ]
    roots = target.module("roots")
    server = roots.create_server([root])
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            for path, want, why in cases:
                result = await client.call_tool("read_file", {"path": path})
                got = text_of(result)
                assert secret.strip() not in got, (
                    f"[{mode}] read_file({path!r}) returned the file beside the root: {why}")
                assert not result.is_error and got == want, (
                    f"[{mode}] read_file({path!r}) returned {got[:120]!r}, expected {want!r}: {why}")


@check("read_file answers a folder, undecodable bytes and a link loop without crashing", points=1,
       hint="Every odd target inside the roots deserves a ToolError with a reason, or the text: a folder is "
            "not a file, bad UTF-8 is replaced rather than fatal, and a link loop never resolves.")
async def test_read_file_odd_targets(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    _, root = _desk(tmp_path, rng)
    folder = root / random_tag(rng, 8)           # a random name, so the refusal must say "folder" itself
    folder.mkdir()
    (folder / "inside.md").write_text("# inside\n")
    raw = b"".join(rng.choice([b"caf\xe9 ", b"\xff\xfe", random_tag(rng).encode() + b" ", b"ok\n", b"\xc3("])
                   for _ in range(rng.randint(6, 14))) + b"\xe2\x82\n"
    bad = root / f"legacy-{random_tag(rng)}.txt"
    bad.write_bytes(raw)
    expected_text = raw.decode("utf-8", errors="replace")
    first, second = f"loop-{random_tag(rng)}", f"loop-{random_tag(rng)}"
    (root / first).symlink_to(second)
    (root / second).symlink_to(first)

    is_path_allowed = target.attr("roots", "is_path_allowed")
    try:
        verdict = is_path_allowed(first, [str(root)])
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"is_path_allowed({first!r}, [root]) raised {type(exc).__name__} on a link loop ({first} -> "
                    f"{second} -> {first}): it must answer True or False, never raise")
    assert isinstance(verdict, bool), f"is_path_allowed must return True or False, got {verdict!r}"

    roots = target.module("roots")
    server = roots.create_server([root])
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            body = _not_a_crash(await client.call_tool("read_file", {"path": folder.name}), "read_file",
                                repr(folder.name), "a folder inside the root is not a file: refuse it")
            assert "folder" in body.lower() or "director" in body.lower(), (
                f"[{mode}] read_file({folder.name!r}) on a folder said {body!r}; say that it is a folder "
                "(list_files shows folders)")
            result = await client.call_tool("read_file", {"path": bad.name})
            got = text_of(result)
            assert not result.is_error, (
                f"[{mode}] read_file({bad.name!r}), a file with bytes that are not UTF-8, failed with {got[:150]!r}; "
                "read it as UTF-8 and replace what does not decode")
            assert got == expected_text, (
                f"[{mode}] read_file({bad.name!r}) returned {got[:120]!r}, expected {expected_text[:120]!r}: decode "
                "as UTF-8, replacing each undecodable byte with U+FFFD, and keep everything else")
            _not_a_crash(await client.call_tool("read_file", {"path": first}), "read_file", repr(first),
                         f"{first} is a link loop ({first} -> {second} -> {first}) and can never be read: refuse it")


@check("search_files refuses a blank query and reports 1-based, trimmed lines up to the limit", points=1,
       hint="A blank query would match every line: refuse it with a reason. Count lines from 1, strip each "
            "line's surrounding spaces, keep the file's order, and stop once the limit is reached.")
async def test_search_hits_exact(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    _, root = _desk(tmp_path, rng)
    needle = "".join(rng.choices(string.ascii_lowercase, k=7))

    def line(match: bool) -> str:
        pad = lambda: rng.choice(["", " ", "  ", "\t", " \t "])  # noqa: E731
        word = "".join(c.upper() if rng.random() < 0.5 else c for c in needle)
        if match:
            middle = f"{random_tag(rng, 4)} {word}{rng.choice(['', '.', ' ' + random_tag(rng, 3)])}"
        else:
            middle = f"{random_tag(rng, 5)} {random_tag(rng, 4)}"      # too short to hold the 7-letter needle
        return f"{pad()}{middle}{pad()}"

    def write(folder: Path, lines: list[str]) -> list[tuple[int, str]]:
        folder.mkdir()
        (folder / f"{random_tag(rng)}.md").write_text("\n".join(lines) + "\n")
        return [(number, text.strip()) for number, text in enumerate(lines, start=1) if needle in text.lower()]

    small = root / f"small-{random_tag(rng)}"
    small_lines = [line(rng.random() < 0.4) for _ in range(rng.randint(8, 25))]
    small_lines[rng.randrange(len(small_lines))] = line(True)
    small_lines[0] = line(rng.random() < 0.5)          # line 1 matches on some runs: a 0-based count shows
    expected_small = write(small, small_lines)

    roots = target.module("roots")
    limit = roots.MAX_HITS
    assert isinstance(limit, int) and 1 <= limit <= 500, f"MAX_HITS should be a small positive number, got {limit!r}"
    bulk = root / f"bulk-{random_tag(rng)}"
    bulk_lines: list[str] = []
    while sum(needle in x.lower() for x in bulk_lines) < limit + rng.randint(3, 30):
        bulk_lines.append(line(rng.random() < 0.8))
    expected_bulk = write(bulk, bulk_lines)[:limit]

    server = roots.create_server([root])
    async with target.client(server, mode=rng.choice(list(MODES))) as client:
        for blank in ("", " ", "\t ", "   "):
            _not_a_crash(await client.call_tool("search_files", {"query": blank}), "search_files", repr(blank),
                         "a blank query matches every line and finds nothing worth reading: refuse it")
        for folder, lines, expected, what in (
                (small, small_lines, expected_small, "every matching line"),
                (bulk, bulk_lines, expected_bulk, f"the first {limit} matching lines (MAX_HITS), in order")):
            query = "".join(c.upper() if rng.random() < 0.5 else c for c in needle)
            result = await client.call_tool("search_files", {"query": query, "path": folder.name})
            assert not result.is_error, f"search_files({query!r}, path={folder.name!r}) failed: {text_of(result)[:150]}"
            hits = (result.structured_content or {}).get("result") or []
            got = [(h.get("line"), h.get("text")) for h in hits]
            assert got == expected, (
                f"search_files({query!r}) in a file of {len(lines)} "
                f"lines should return {what} as (line, text) {expected[:4]}{'…' if len(expected) > 4 else ''} "
                f"({len(expected)} hits), got {got[:4]}{'…' if len(got) > 4 else ''} ({len(got)} hits): lines count "
                "from 1, the text is the line without its surrounding spaces, case is ignored")

    search_files = target.attr("roots", "search_files")
    k = rng.randint(1, min(9, limit + 2))          # the bulk file has at least limit + 3 matches
    capped = search_files(needle, str(bulk), [root], limit=k)
    assert len(capped) == k, (
        f"search_files(..., limit={k}) returned {len(capped)} hits from a file with {len(expected_bulk)}+ matching "
        "lines: honour the `limit` argument, stop once it is reached")
