"""Lesson 4 checks: the file tools stay inside their roots, whatever path they are handed.

Every check builds its own sandbox under `tmp_path` with random names: a root with nested
folders, siblings that share the root's name as a prefix, a folder outside, and links that point
inward, outward and nowhere. Expected verdicts are computed here, from the sandbox's own map of
folders and links (a small model of the file system), never by the code under test.
"""

from __future__ import annotations

import os
import random
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListRootsResult, Root

from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

MODES = {"auto": "2026-07-28", "legacy": "2025-11-25"}
CRASH = "Error executing tool"  # all the model sees when a tool raises something other than ToolError


def _tag(rng: random.Random, k: int = 6) -> str:
    return "".join(rng.choices(string.ascii_lowercase + string.digits, k=k))


@dataclass
class Sandbox:
    """A root to serve and everything around it that must stay out of reach."""

    base: Path                  # holds everything below; a real (resolved) folder
    root: Path                  # the configured root
    notes: Path                 # root/notes, a nested folder
    deep: Path                  # root/notes/deep
    doc: Path                   # root/notes/<doc>.md, an ordinary document
    doc_text: str
    spaced: Path                # root/<name with a space>.md
    spaced_text: str
    siblings: list[Path]        # share the root's name as a prefix: app-x-secrets, app-x2, app-x.bak
    outside: Path               # a folder next to the root
    secret: Path                # outside/<secret>.md
    sibling_secret: Path        # siblings[0]/<secret>.md
    secret_marker: str          # appears only in secret files
    needle: str                 # a word in the doc and in every secret file
    alias: Path                 # base/alias -> root
    links: dict[str, Path] = field(default_factory=dict)      # name inside root -> where it points
    model_links: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)


def _parts(path: Path | str) -> tuple[str, ...]:
    return tuple(p for p in str(path).split("/") if p)


def build_sandbox(tmp_path: Path) -> Sandbox:
    """Lay out the sandbox; record every link so the model can resolve paths on its own."""
    rng = random.Random()
    tag = _tag(rng)
    # Three random levels between tmp_path and the sandbox: generated paths may climb at most
    # three `..` above it and still land in folders made here.
    base = Path(os.path.realpath(tmp_path)) / _tag(rng) / _tag(rng) / _tag(rng)
    root = base / f"app-{tag}"
    notes, deep = root / "notes", root / "notes" / "deep"
    deep.mkdir(parents=True)
    needle = f"needle{_tag(rng, 5)}"
    marker = f"SECRET-{_tag(rng, 10)}"
    doc = notes / f"{_tag(rng)}.md"
    doc_text = f"# Notes {tag}\n\nthe {needle} is here\n"
    doc.write_text(doc_text)
    (deep / f"{_tag(rng)}.txt").write_text(f"deep {_tag(rng)}\n")
    spaced = root / f"my notes {_tag(rng, 4)}.md"
    spaced_text = f"spaced {_tag(rng)}\n"
    spaced.write_text(spaced_text)
    siblings = [base / f"app-{tag}-secrets", base / f"app-{tag}2", base / f"app-{tag}.bak"]
    for sib in siblings:
        sib.mkdir()
    outside = base / f"outside-{tag}"
    outside.mkdir()
    secret = outside / f"{_tag(rng)}.md"
    sibling_secret = siblings[0] / f"{_tag(rng)}.md"
    for path in (secret, sibling_secret, *(s / "secret.md" for s in siblings[1:])):
        path.write_text(f"{marker}\nthe {needle} is also here, {marker}\n")
    alias = base / f"alias-{tag}"
    alias.symlink_to(root, target_is_directory=True)
    box = Sandbox(base, root, notes, deep, doc, doc_text, spaced, spaced_text, siblings, outside, secret,
                  sibling_secret, marker, needle, alias)
    links = {   # name inside root -> (link text, real target)
        "in-link": ("notes", notes),                                          # inward folder link
        "in-file": (f"notes/{doc.name}", doc),                                # inward file link
        "out-link": (f"../{siblings[0].name}", siblings[0]),                  # outward folder link
        "out-file": (f"../{outside.name}/{secret.name}", secret),             # outward file link
        "dangling": (f"../{outside.name}/planned-{tag}.md", outside / f"planned-{tag}.md"),  # outward, missing
        "notes/jump": (f"../../{outside.name}", outside),                     # `jump/..` is not `notes`
    }
    for name, (text, real) in links.items():
        (root / name).symlink_to(text)
        box.links[name] = real
        box.model_links[_parts(root / name)] = _parts(real)
    box.model_links[_parts(alias)] = _parts(root)
    return box


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return build_sandbox(tmp_path)


# --- the model: where a path really leads, computed without os.path.realpath -------------------

def model_resolve(parts: Sequence[str], start: tuple[str, ...], links: dict[tuple[str, ...], tuple[str, ...]],
                  depth: int = 0) -> tuple[str, ...]:
    """Walk `parts` from `start` the way the kernel does: follow a link as soon as it is reached,
    then apply the rest; `..` pops one level; missing names are simply appended."""
    assert depth < 20, "link loop in the sandbox model"
    stack = list(start)
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if stack:
                stack.pop()
            continue
        stack.append(part)
        target = links.get(tuple(stack))
        if target is not None:
            stack = list(model_resolve(target, (), links, depth + 1))
    return tuple(stack)


def model_verdict(path: str, roots: Sequence[str], links: dict[tuple[str, ...], tuple[str, ...]]) -> bool:
    """The expected answer for plain (already decoded) paths and roots."""
    real_roots = [model_resolve(r.split("/"), (), links) for r in roots]
    start = () if path.startswith("/") else real_roots[0]
    real = model_resolve(path.split("/"), start, links)
    return any(real[: len(r)] == r for r in real_roots)


# --- helpers ------------------------------------------------------------------------------------

def _verdict(target: Target, path: Any, roots: Sequence[Any]) -> bool:
    fn = target.attr("roots", "is_path_allowed")
    try:
        got = fn(path, roots)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"is_path_allowed({_short(path)}, ...) raised {type(exc).__name__}: {exc}; it must "
                    "return False for anything it cannot judge, never raise")
    assert isinstance(got, bool), f"is_path_allowed must return True or False, got {got!r}"
    return got


def _short(value: Any) -> str:
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text if len(text) <= 90 else text[:70] + "…" + text[-15:]


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content or [])


def _rel(box: Sandbox, path: Path) -> str:
    return os.path.relpath(path, box.root)


async def _read(client: Any, path: str) -> Any:
    return await client.call_tool("read_file", {"path": path})


def _assert_refused(result: Any, box: Sandbox, asked: str, tool: str = "read_file") -> str:
    body = _text(result)
    assert result.is_error, f"{tool}({asked!r}) succeeded although it leads outside the roots"
    assert box.secret_marker not in body, f"{tool}({asked!r}) was refused, but the error shows the secret file's content"
    assert body.strip() != f"{CRASH} {tool}", (
        f"{tool}({asked!r}) crashed (the model only sees {body!r}): refuse with a ToolError (PathRejected) "
        "whose message says why")
    return body


def _file_uri(path: str, *, host: str = "") -> str:
    return f"file://{host}{quote(path, safe='/')}"


# --- the gate: is_path_allowed --------------------------------------------------------------------

LINKS = ["in-link", "in-file", "out-link", "out-file", "dangling", "jump"]
TOKENS = [".", "..", "..", "notes", "deep", "DOC", *LINKS, *LINKS, "ROOT", "SIBLING", "OUTSIDE", "SECRET", "ALIAS",
          "missing", "SPACED"]
ROOT_CHOICES = ["root", "notes", "deep", "sibling", "alias", "outside"]


def _token(box: Sandbox, token: str) -> str:
    names = {"DOC": box.doc.name, "ROOT": box.root.name, "SIBLING": box.siblings[0].name,
             "OUTSIDE": box.outside.name, "SECRET": box.secret.name, "ALIAS": box.alias.name,
             "SPACED": box.spaced.name}
    return names.get(token, token)


def _explain(box: Sandbox, path: str, roots: list[str], expected: bool) -> str:
    """Name the likely misconception behind a wrong verdict."""
    anchored = path if path.startswith("/") else roots[0] + "/" + path
    lexical = os.path.normpath(anchored)
    if not expected:
        real = "/" + "/".join(model_resolve(anchored.split("/"), (), box.model_links))
        if any(lexical == r or lexical.startswith(r.rstrip("/") + "/") for r in roots):
            return ("it only looks inside: a symbolic link on the way leads out of the roots; resolve links "
                    "(Path.resolve) before comparing")
        if any(real.startswith(r.rstrip("/")) for r in roots):
            return f"it really leads to {real}: you compared strings, so a sibling that shares the root's name passed"
        return f"it leads to {real}, outside every root: collapse `..` and follow links before comparing"
    how = "a relative path starts at the first root, not the working directory; " if not path.startswith("/") else ""
    if any(box.alias.name in r for r in roots):
        how += "a root reached through a link must be resolved too; "
    return f"{how}once links and `..` are followed it stays inside a root (a path need not exist to be judged)"


@check("is_path_allowed agrees with the file system on generated paths and roots", points=4,
       hint="Judge where a path really leads: anchor a relative path at the first root, resolve it (links "
            "and `..`), resolve the roots too, and compare with Path.is_relative_to.")
@settings(max_examples=60, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
@given(tokens=st.lists(st.sampled_from(TOKENS), max_size=6).filter(lambda t: t.count("..") <= 3),
       start=st.sampled_from(["relative", "relative", "base", "root", "sibling"]),
       form=st.sampled_from(["plain", "plain", "uri", "uri-localhost", "uri-dots"]),
       chosen=st.lists(st.sampled_from(ROOT_CHOICES), min_size=1, max_size=3, unique=True),
       root_form=st.sampled_from(["str", "path", "uri"]))
@example(tokens=["out-file"], start="relative", form="plain", chosen=["root"], root_form="str")
@example(tokens=["notes", "jump", "..", "DOC"], start="root", form="uri", chosen=["root"], root_form="path")
@example(tokens=["..", "SIBLING", "SECRET"], start="relative", form="plain", chosen=["root"], root_form="str")
@example(tokens=["notes", "DOC"], start="relative", form="plain", chosen=["root", "sibling"], root_form="str")
@example(tokens=["notes", "deep", "."], start="root", form="uri-dots", chosen=["alias"], root_form="uri")
@example(tokens=["..", "OUTSIDE", "SECRET"], start="relative", form="plain", chosen=["root", "deep"], root_form="str")
@example(tokens=["..", "..", "SPACED"], start="relative", form="plain", chosen=["deep", "root"], root_form="path")
def test_matches_model(target: Target, sandbox: Sandbox, tokens: list[str], start: str, form: str,
                       chosen: list[str], root_form: str) -> None:
    box = sandbox
    places = {"root": box.root, "notes": box.notes, "deep": box.deep, "sibling": box.siblings[0],
              "alias": box.alias, "outside": box.outside, "base": box.base}
    roots = [str(places[c]) for c in chosen]
    tail = "/".join(_token(box, t) for t in tokens)
    path = tail if start == "relative" else f"{places[start]}/{tail}"
    expected = model_verdict(path, roots, box.model_links)
    sent: Any = path
    if start != "relative" and form != "plain":
        encoded = quote(path, safe="/")
        if form == "uri-dots":
            encoded = encoded.replace(".", "%2E")
        sent = "file://" + ("localhost" if form == "uri-localhost" else "") + encoded
    root_args: list[Any] = ([Path(r) for r in roots] if root_form == "path"
                            else [_file_uri(r) for r in roots] if root_form == "uri" else roots)
    got = _verdict(target, sent, root_args)
    assert got == expected, (
        f"is_path_allowed({_short(sent)}, roots={[_short(r) for r in root_args]}) returned {got}, expected "
        f"{expected}: {_explain(box, path, roots, expected)}")


@check("`..` cannot climb out of a root", points=2,
       hint="A path is judged after `..` is collapsed, and only after links are followed, the way the kernel "
            "walks it. Resolve first, compare second.")
async def test_dotdot_traversal(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    refused = [
        f"../{box.siblings[0].name}/{box.sibling_secret.name}",
        f"notes/../../{box.outside.name}/{box.secret.name}",
        "notes/deep/../../..",
        "..",
        f"{box.root}/../{box.outside.name}/{box.secret.name}",
        f"./notes/./deep/../../../{box.outside.name}",
    ]
    for path in refused:
        assert not _verdict(target, path, roots), (
            f"is_path_allowed({path!r}) returned True: `..` climbs out of the root; resolve the path before comparing")
    allowed = ["notes/../notes/" + box.doc.name, f"{box.root}/notes/./deep/..", ".", "notes/deep/../../" + box.spaced.name]
    for path in allowed:
        assert _verdict(target, path, roots), (
            f"is_path_allowed({path!r}) returned False, but after collapsing `..` it is still inside the root")


@check("a sibling that shares the root's name is outside (/data/app vs /data/app-secrets)", points=2,
       hint="As text, /data/app is a prefix of /data/app-secrets; as paths, one is not inside the other. "
            "Compare Path objects (is_relative_to), never str.startswith.")
async def test_sibling_prefix(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    for root_arg in (str(box.root), box.root, str(box.root) + "/"):
        for sib in box.siblings:
            for path in (str(sib), str(sib / "secret.md"), str(box.sibling_secret)):
                assert not _verdict(target, path, [root_arg]), (
                    f"is_path_allowed({path!r}, [{str(root_arg)!r}]) returned True: you compared strings, so "
                    f"{sib.name} passed because it starts with {box.root.name}")
        assert _verdict(target, str(box.root), [root_arg]), "the root folder itself must be allowed"
        assert _verdict(target, str(box.doc), [root_arg]), f"{box.doc} is inside the root and must be allowed"


@check("symbolic links are judged by where they lead, not by their names", points=3,
       hint="A link inside a root can point anywhere. Path.resolve() follows links (os.path.normpath does "
            "not), so resolve before comparing; links that point back inside stay allowed.")
async def test_symlink_escape(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    refused = {
        "out-file": "a link to a file outside",
        "out-link": "a link to a folder outside",
        f"out-link/{box.sibling_secret.name}": "a file reached through a folder link that leads outside",
        "dangling": "a link to a file outside that does not exist yet (creating it would write outside)",
        f"notes/jump/../{box.doc.name}": "`jump/..` where jump links outside: the kernel follows the link first",
        str(box.root / "out-file"): "an absolute path through a link that leads outside",
    }
    for path, what in refused.items():
        assert not _verdict(target, path, roots), (
            f"is_path_allowed({path!r}) returned True for {what}: the name looks inside, the target is not; "
            "resolve links before comparing")
    for path in ("in-link", f"in-link/{box.doc.name}", "in-file", str(box.alias / "notes")):
        assert _verdict(target, path, roots), (
            f"is_path_allowed({path!r}) returned False, but that link leads back inside the root: follow it "
            "rather than refusing every link")


@check("relative paths start at the first root, never at the working directory", points=2,
       hint="The client knows nothing of the server's working directory. Join a relative path onto the first "
            "root before resolving it.")
async def test_relative_paths(target: Target, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    box = sandbox
    monkeypatch.chdir(box.outside)   # a working directory outside the roots, as on a real server
    rel = f"notes/{box.doc.name}"
    assert _verdict(target, rel, [str(box.root)]), (
        f"is_path_allowed({rel!r}, [root]) returned False: a relative path starts at the first root, but you "
        "resolved it against the working directory")
    assert _verdict(target, box.secret.name, [str(box.root)]), (
        f"is_path_allowed({box.secret.name!r}, [root]) returned False: it names root/{box.secret.name}, inside "
        "the root (a file of that name in the working directory is irrelevant)")
    assert not _verdict(target, f"../{box.outside.name}/{box.secret.name}", [str(box.root)]), (
        "a relative path with `..` that climbs out of the first root must be refused")
    # Several roots: a relative path starts at the FIRST one, not the last, and not whichever one makes it fit.
    climb = f"../{box.outside.name}/{box.secret.name}"
    assert not _verdict(target, climb, [str(box.root), str(box.deep)]), (
        f"with roots [root, root/notes/deep], is_path_allowed({climb!r}) returned True: it starts at the first root "
        "and leads outside; anchored at the last root (or at whichever root makes it fit) it would look inside")
    down = f"../../{box.spaced.name}"
    assert _verdict(target, down, [str(box.deep), str(box.root)]), (
        f"with roots [root/notes/deep, root], is_path_allowed({down!r}) returned False: it starts at the first root "
        f"(notes/deep) and leads to root/{box.spaced.name}, inside the second root. Anchor at the first root, then "
        "compare with every root")
    resolve_allowed = target.attr("roots", "resolve_allowed")
    got = resolve_allowed(box.doc.name, [box.notes, box.root])
    assert Path(got) == box.doc, (
        f"with roots [notes, root], {box.doc.name!r} should lead to notes/{box.doc.name} (the first root), got {got}")


@check("file:// URIs are decoded exactly once, plain paths never, and both judged like any path", points=2,
       hint="urllib.parse.urlsplit and unquote: a file URI's path is percent-encoded, so %2E%2E is `..` "
            "and %20 a space; decode it once, never twice, and never decode a plain path (100%25.md may be a real "
            "name). Accept only the local host; refuse other schemes, queries and fragments.")
async def test_file_uris(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    spaced_uri = box.spaced.as_uri()
    assert "%20" in spaced_uri
    for uri in (spaced_uri, _file_uri(str(box.spaced), host="localhost"), box.root.as_uri()):
        assert _verdict(target, uri, roots), f"is_path_allowed({uri!r}) returned False: decode the URI's path (%20 is a space)"
    sneaky = {
        _file_uri(str(box.root)) + "/%2E%2E/" + box.outside.name + "/" + box.secret.name: "%2E%2E is `..`",
        _file_uri(str(box.notes)) + "%2F..%2F..%2F" + box.siblings[0].name: "%2F is `/`, so this climbs out",
        _file_uri(str(box.doc), host="evil.example"): "a file URI naming another host",
        "https://example.com" + quote(str(box.doc)): "not a file URI at all",
    }
    for uri, why in sneaky.items():
        assert not _verdict(target, uri, roots), f"is_path_allowed({uri!r}) returned True: {why}"
    for uri in (box.doc.as_uri() + "?download=1", box.doc.as_uri() + "#top"):
        assert not _verdict(target, uri, roots), (
            f"is_path_allowed({uri!r}) returned True: a file:// URI with a query or a fragment is refused, not trimmed")
    # A folder literally named %2E%2E inside the root. Decoded once, the URI below names it; decoded twice it would
    # mean `..`. A plain path is never decoded at all, so `%2E%2E/...` names that folder too.
    trap = box.root / "%2E%2E"
    trap.mkdir()
    (trap / box.secret.name).write_text("inside, in a folder with an odd name\n")
    literal_uri = (trap / box.secret.name).as_uri()           # the % is itself encoded: .../%252E%252E/...
    assert _verdict(target, literal_uri, roots), (
        f"is_path_allowed({literal_uri!r}) returned False: decoded exactly once it names {trap.name}/{box.secret.name} "
        "inside the root; decoding twice turns %252E into a dot and the folder into `..`")
    plain = f"%2E%2E/{box.secret.name}"
    assert _verdict(target, plain, roots), (
        f"is_path_allowed({plain!r}) returned False: a plain path is taken literally (never percent-decoded), so it "
        f"names the folder {trap.name!r} inside the root, not `..`")
    resolve_allowed = target.attr("roots", "resolve_allowed")
    assert Path(resolve_allowed(spaced_uri, [box.root])) == box.spaced, f"{spaced_uri!r} should lead to {box.spaced}"
    assert Path(resolve_allowed(literal_uri, [box.root])) == trap / box.secret.name, (
        f"{literal_uri!r} should lead to {trap / box.secret.name} (decoded once)")
    assert _verdict(target, str(box.doc), [box.root.as_uri()]), "roots may be file:// URIs too: decode them the same way"


@check("paths with NUL bytes are refused with a clear reason", points=2,
       hint="No file name may contain NUL (\\x00 or %00). C code would cut the path at it, Python raises "
            "ValueError: refuse it yourself, early, with a message that says so.")
async def test_nul_bytes(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    for path in (f"notes/{box.doc.name}\x00.png", f"notes/{box.doc.name}\x00/../../{box.outside.name}",
                 box.doc.as_uri() + "%00.txt", "\x00"):
        assert not _verdict(target, path, roots), (
            f"is_path_allowed({path!r}) returned True: a NUL byte must be refused, not cut off or ignored")
    to_path = target.attr("roots", "to_path")
    with pytest.raises(Exception) as caught:
        to_path(f"notes/{box.doc.name}\x00.png")
    assert isinstance(caught.value, ToolError), (
        f"to_path with a NUL byte raised {type(caught.value).__name__}; raise PathRejected (a ToolError) so the "
        "model reads the reason")
    message = str(caught.value).lower()
    assert "nul" in message or "null" in message, f"the refusal should say the path contains a NUL byte, got {caught.value}"


def _sized(total: int, unit: str = "a", per_name: int = 200) -> str:
    """A relative path of exactly `total` bytes in UTF-8: names of `per_name` bytes (of `unit`), then a shorter
    last name. Every name stays well under 255 bytes, so only the total is at stake."""
    width = len(unit.encode())
    names: list[str] = []
    used = 0
    while True:
        room = total - used - (1 if names else 0)
        if room <= per_name:
            tail = unit * (room // width) + "a" * (room % width)
            names.append(tail)
            break
        names.append(unit * (per_name // width))
        used += (1 if len(names) > 1 else 0) + len(names[-1].encode())
    path = "/".join(names)
    assert len(path.encode()) == total, (len(path.encode()), total)
    return path


@check("over-long paths and names are refused with a clear reason", points=2,
       hint="Linux limits a path to 4096 bytes and one name to 255 bytes: longer is refused, exactly that long is "
            "fine. Count bytes, not characters (é is two bytes in UTF-8), and for a file:// URI count the path it "
            "names, once decoded. Refuse before touching the disk, and keep the message short.")
async def test_long_paths(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    rng = random.Random()
    long_path = "/".join(_tag(rng, 200) for _ in range(22))          # ~4420 bytes, every name fine
    cases = [
        (_sized(4096), True, "a path of exactly 4096 bytes is within the limit (refuse only what is longer)"),
        (_sized(4097), False, "it is 4097 bytes long, one more than the 4096-byte limit"),
        (_sized(4096, "é"), True, "it is exactly 4096 bytes in UTF-8 (about 2100 characters)"),
        (_sized(4097, "é"), False, "it is 4097 bytes in UTF-8, though only about 2100 characters: count bytes"),
        (long_path, False, "it is longer than 4096 bytes"),
        ("n" * 252 + ".md", True, "a name of exactly 255 bytes is within the limit"),
        ("n" * 253 + ".md", False, "one name is 256 bytes, one more than the 255-byte limit"),
        ("é" * 126 + ".md", True, "that name is 255 bytes in UTF-8"),
        ("é" * 127 + ".md", False, "that name is 257 bytes in UTF-8, though only 130 characters: count bytes"),
        (f"{box.root.as_uri()}/notes/{quote('é' * 100)}.md", True,
         "that URI's longest name is 203 bytes once decoded (603 characters as sent): judge the decoded path"),
        (box.root.as_uri() + "".join(f"/{quote('é' * 60)}" for _ in range(12)), True,
         "that URI names a path of about 1500 bytes once decoded (over 4096 characters as sent)"),
    ]
    for path, allowed, why in cases:
        assert _verdict(target, path, roots) is allowed, (
            f"is_path_allowed({_short(path)}) returned {not allowed}: {why}")
    to_path = target.attr("roots", "to_path")
    with pytest.raises(Exception) as caught:
        to_path(long_path)
    message = str(caught.value)
    assert isinstance(caught.value, ToolError), (
        f"to_path with a 4400-byte path raised {type(caught.value).__name__}: {message[:120]}; refuse it with "
        "PathRejected")
    assert "long" in message.lower() or "4096" in message, f"the refusal should say the path is too long, got {message[:120]!r}"
    assert len(message) < 400, f"the refusal repeats {len(message)} characters back; keep it short"


@check("letter case and Unicode forms are compared exactly, as Linux stores names", points=2,
       hint="On a case-sensitive file system Notes/ and notes/ are two folders, and so are café in NFC and NFD "
            "forms. Folding case or normalising Unicode would let the other folder in.")
async def test_case_and_unicode(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    tag = _tag(random.Random())
    upper, lower = box.base / f"Notes-{tag}", box.base / f"notes-{tag}"
    nfc, nfd = (box.base / unicodedata.normalize(form, f"Café-{tag}") for form in ("NFC", "NFD"))
    upper.mkdir()
    lower.mkdir(exist_ok=True)
    nfc.mkdir()
    nfd.mkdir(exist_ok=True)
    if os.path.samefile(upper, lower) or os.path.samefile(nfc, nfd):
        pytest.skip("this file system folds case or Unicode forms (macOS, Windows): run the checks on Linux")
    (lower / "secret.md").write_text(box.secret_marker)
    (nfd / "secret.md").write_text(box.secret_marker)
    resume = unicodedata.normalize("NFD", "résumé.md")
    (nfc / resume).write_text("cv")
    assert not _verdict(target, str(lower / "secret.md"), [str(upper)]), (
        f"is_path_allowed({lower.name}/secret.md, [{upper.name}]) returned True: you folded case, but on Linux "
        f"{lower.name} is a different folder")
    assert not _verdict(target, str(nfd / "secret.md"), [str(nfc)]), (
        "a folder named café in NFD form passed for the root café in NFC form: you normalised Unicode, but on "
        "Linux these are two different folders")
    assert not _verdict(target, f"../{nfd.name}/secret.md", [str(nfc)]), "the NFD sibling is outside the NFC root"
    assert _verdict(target, str(nfc / resume), [str(nfc)]), (
        "a file with an NFD name inside the root must be allowed by its exact name")
    assert _verdict(target, str(upper / "x.md"), [str(upper)]), "a path inside the root, in the same case, is allowed"


@check("missing files are judged by where they would be", points=2,
       hint="Resolving must not require the file to exist (Path.resolve() without strict), yet it still follows "
            "every link that does exist, and `..` still climbs after a missing folder.")
async def test_missing_targets(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    tag = _tag(random.Random())
    assert _verdict(target, f"new-{tag}/draft.md", roots), (
        "a path inside the root that does not exist yet is still inside: resolve without strict=True")
    for path, why in ((str(box.siblings[0] / f"ghost-{tag}.md"), "it is outside, existing or not"),
                      ("dangling", "it is a link whose (missing) target is outside"),
                      (f"new-{tag}/../../{box.outside.name}/x.md", "`..` after a missing folder still climbs out")):
        assert not _verdict(target, path, roots), f"is_path_allowed({path!r}) returned True, but {why}"


@check("roots are resolved too: a root given through a link still works", points=2,
       hint="Resolve each root exactly as you resolve the path; otherwise a root like /tmp (a link on macOS) "
            "never matches the real paths beneath it.")
async def test_roots_resolved(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    for root_arg in (str(box.alias), box.alias.as_uri(), box.alias):
        assert _verdict(target, str(box.doc), [root_arg]), (
            f"with the root {str(root_arg)!r} (a link to {box.root.name}), the real path {box.doc} was refused: "
            "resolve the roots as well as the path")
        assert not _verdict(target, str(box.sibling_secret), [root_arg]), "a sibling is outside an aliased root too"
    assert _verdict(target, str(box.alias / "notes" / box.doc.name), [str(box.root)]), (
        "a path through a link that leads into the root is inside")
    for path in (str(box.doc), f"notes/{box.doc.name}"):
        assert not _verdict(target, path, []), (
            f"is_path_allowed({path!r}, []) returned True: with no roots at all, nothing is allowed")


# --- the tools over MCP ---------------------------------------------------------------------------

@check("read_file refuses outside paths without revealing content or existence", points=3,
       hint="Pass every path through the gate (resolve_allowed) before anything touches the disk, so everything "
            "outside gets one refusal whether it exists or not; say 'no such file' (a ToolError) only inside.")
async def test_read_refusal_no_leak(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = target.module("roots")
    server = roots.create_server([box.root])
    ghost = box.siblings[0] / f"{_tag(random.Random())}.md"      # same length as the secret's name
    pairs = [(str(box.sibling_secret), str(ghost)),
             (f"../{box.siblings[0].name}/{box.sibling_secret.name}", f"../{box.siblings[0].name}/{ghost.name}")]
    for mode in MODES:
        async with target.client(server, mode=mode) as client:
            good = await _read(client, f"notes/{box.doc.name}")
            assert not good.is_error and _text(good) == box.doc_text, (
                f"[{mode}] read_file('notes/{box.doc.name}') should return the document, got {_text(good)[:100]!r}")
            for real, fake in pairs:
                exists = _assert_refused(await _read(client, real), box, real)
                missing = _assert_refused(await _read(client, fake), box, fake)
                assert exists.replace(box.sibling_secret.name, "<name>") == missing.replace(ghost.name, "<name>"), (
                    f"[{mode}] an existing outside file and a missing one get different refusals ({exists!r} vs "
                    f"{missing!r}): the difference tells the model what exists outside the roots")
            via_link = _assert_refused(await _read(client, "out-file"), box, "out-file")
            for leak in (box.secret.name, box.outside.name):
                assert leak not in via_link, (
                    f"[{mode}] the refusal for the link 'out-file' names where it points ({leak}); name only what was asked")
            _assert_refused(await _read(client, f"../{box.outside.name}/{box.secret.name}"), box, "../…")
            ghost_inside = f"notes/{ghost.name}"
            missing_inside = await _read(client, ghost_inside)
            assert missing_inside.is_error and _text(missing_inside).strip() != f"{CRASH} read_file", (
                f"[{mode}] read_file({ghost_inside!r}), missing inside the root, should be a ToolError that says so, "
                f"got {_text(missing_inside)!r}")


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
        assert not result.is_error, f"search_files failed: {_text(result)[:150]}"
        hits = (result.structured_content or {}).get("result") or []
        body = _text(result)
        assert box.secret_marker not in body, (
            "search_files returned lines from a file outside the roots, read through a link inside them: "
            "check each file, not only the starting folder")
        found = {Path(h["path"]).name for h in hits}
        assert box.doc.name in found, f"search_files should find {box.needle!r} in {box.doc.name} (case-insensitive), got {sorted(found)}"
        outside = await client.call_tool("search_files", {"query": box.needle, "path": str(box.siblings[0])})
        _assert_refused(outside, box, str(box.siblings[0]), "search_files")


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
            assert not result.is_error, f"search_files in {label} failed: {_text(result)[:150]}"
            found[label] = [h["path"] for h in (result.structured_content or {}).get("result") or []]
        read_back = {}
        for label in found:
            for hit in found[label][:1]:
                answer = await client.call_tool("read_file", {"path": hit})
                read_back[(label, hit)] = (answer.is_error, _text(answer))
    for label in ("the first root", "a linked folder inside it"):
        assert found[label] == [expected_doc], (
            f"search_files in {label} named its hit {found[label]}, expected [{expected_doc!r}]: relative to the first "
            f"root, never the server's absolute path")
    assert found["the second root, named absolutely"] == [f"{second}/secret.md"], (
        f"a hit under the second root, searched as {str(second)!r}, was named {found['the second root, named absolutely']}: "
        f"keep the folder as the client named it, joined with the file's path below it")
    for (label, hit), (failed, text) in read_back.items():
        assert not failed and box.needle in text, f"read_file({hit!r}) (a hit of the search in {label}) failed: {text[:120]!r}"


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
        assert not result.is_error, f"list_files failed: {_text(result)[:150]}"
        names = sorted((result.structured_content or {}).get("result") or [])
        assert names == expected, f"list_files() of the root should list {expected}, got {names}"
        _assert_refused(await client.call_tool("list_files", {"path": str(box.outside)}), box, str(box.outside),
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
        assert _verdict(target, path, [str(box.root)]) is False, (
            f"is_path_allowed({path!r}) returned True for a symbolic-link loop (loop-a -> loop-b -> loop-a): a path that "
            "never resolves is not allowed")
    roots = target.module("roots")
    server = roots.create_server([box.root])
    async with target.client(server) as client:
        folder = await _read(client, "notes")
        body = _text(folder)
        assert folder.is_error and body.strip() != f"{CRASH} read_file", (
            f"read_file('notes'), a folder inside the root, gave {body[:120]!r}: refuse it with a ToolError")
        assert "folder" in body.lower() or "director" in body.lower(), (
            f"read_file('notes') on a folder said {body!r}: say that it is a folder (list_files shows folders), "
            "not that it is missing")
        decoded = await _read(client, bad.name)
        want = raw.decode("utf-8", errors="replace")
        assert not decoded.is_error and _text(decoded) == want, (
            f"read_file({bad.name!r}), a file with bytes that are not UTF-8, gave {_text(decoded)[:120]!r}, expected "
            f"{want!r}: decode as UTF-8, replacing each undecodable byte with U+FFFD and keeping everything else")
        loop = await _read(client, "loop-a")
        assert loop.is_error and _text(loop).strip() != f"{CRASH} read_file", (
            f"read_file('loop-a'), a link loop, gave {_text(loop)[:120]!r}: refuse it with a ToolError")


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
            assert result.is_error and _text(result).strip() != f"{CRASH} search_files", (
                f"search_files({blank!r}) gave {_text(result)[:120]!r}: a blank query matches every line; refuse it "
                "with a ToolError that says why")
        query = needle[:3].upper() + needle[3:]              # mixed case: every line matches, whatever its case
        result = await client.call_tool("search_files", {"query": query, "path": "hits"})
        assert not result.is_error, f"search_files in hits/ failed: {_text(result)[:150]}"
        got = [(h.get("line"), h.get("text")) for h in (result.structured_content or {}).get("result") or []]
        assert got == expected, (
            f"search_files({query!r}) in a file of {len(lines)} lines returned (line, text) {got}, expected {expected}: "
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
        return ListRootsResult(roots=[Root(uri=box.notes.as_uri())])

    for mode, version in MODES.items():
        for callback in (None, offer_notes):
            extra = {"list_roots_callback": callback} if callback else {}
            async with target.client(server, mode=mode, **extra) as client:
                label = f"[{mode} client, {'with' if callback else 'without'} roots]"
                try:
                    top = await _read(client, box.spaced.name)
                except MCPError as exc:
                    pytest.fail(f"{label} read_file raised a protocol error ({exc}): degrade to the configured "
                                "roots when the client cannot be asked")
                if mode == "auto" or callback is None:
                    assert not top.is_error and _text(top) == box.spaced_text, (
                        f"{label} read_file({box.spaced.name!r}) inside the configured root failed: {_text(top)[:120]!r}")
                _assert_refused(await _read(client, str(box.secret)), box, str(box.secret))
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
            return ListRootsResult(roots=[Root(uri=u) for u in uris])
        return offer

    narrow = [box.notes.as_uri(), box.outside.as_uri(), f"file://evil.example{quote(str(box.root))}"]
    random.shuffle(narrow)
    async with target.client(server, mode="legacy", list_roots_callback=offering(narrow)) as client:
        inside = await _read(client, str(box.doc))
        assert not inside.is_error and _text(inside) == box.doc_text, (
            f"the client offered notes/, so {box.doc} there must be readable: {_text(inside)[:120]!r}")
        top = await _read(client, str(box.spaced))
        assert top.is_error and box.spaced_text not in _text(top), (
            f"the client offered only notes/ (and folders outside the configuration), yet {box.spaced.name} in "
            "the root's top level was readable: narrow to the overlap of both lists")
        body = _assert_refused(await _read(client, str(box.secret)), box, str(box.secret))
        assert box.secret_marker not in body, "the secret leaked"
    assert calls, "a legacy client that declared roots was never asked for them"
    async with target.client(server, mode="legacy", list_roots_callback=offering([box.outside.as_uri()])) as client:
        _assert_refused(await _read(client, str(box.secret)), box, str(box.secret))
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
