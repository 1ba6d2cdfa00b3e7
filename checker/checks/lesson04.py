"""Lesson 4 checks, the gate: `is_path_allowed` judges where a path really leads, whatever it is handed.

Every check builds its own sandbox (`support/lesson04.py`) with random names and compares the
verdicts with a small model of the file system. The file tools that rely on the gate, and the
roots a legacy client offers, are checked in `lesson04_tools.py`.
"""

from __future__ import annotations

import os
import random
import unicodedata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mcp.server.mcpserver.exceptions import ToolError

from checker.checks.support.lesson04 import (
    ROOT_CHOICES,
    TOKENS,
    Sandbox,
    file_uri,
    model_resolve,
    model_verdict,
    random_tag,
    short,
    sized_path,
    token_text,
    verdict_of,
)
from checker.checks.support.lesson04 import sandbox as sandbox  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


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
    tail = "/".join(token_text(box, t) for t in tokens)
    path = tail if start == "relative" else f"{places[start]}/{tail}"
    expected = model_verdict(path, roots, box.model_links)
    sent: Any = path
    if start != "relative" and form != "plain":
        encoded = quote(path, safe="/")
        if form == "uri-dots":
            encoded = encoded.replace(".", "%2E")
        sent = "file://" + ("localhost" if form == "uri-localhost" else "") + encoded
    root_args: list[Any] = ([Path(r) for r in roots] if root_form == "path"
                            else [file_uri(r) for r in roots] if root_form == "uri" else roots)
    got = verdict_of(target, sent, root_args)
    assert got == expected, (
        f"is_path_allowed({short(sent)}, roots={[short(r) for r in root_args]}) returned {got}, expected "
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
        assert not verdict_of(target, path, roots), (
            f"is_path_allowed({path!r}) returned True: `..` climbs out of the root; resolve the path before comparing")
    allowed = ["notes/../notes/" + box.doc.name, f"{box.root}/notes/./deep/..", ".",
               "notes/deep/../../" + box.spaced.name]
    for path in allowed:
        assert verdict_of(target, path, roots), (
            f"is_path_allowed({path!r}) returned False, but after collapsing `..` it is still inside the root")


@check("a sibling that shares the root's name is outside (/data/app vs /data/app-secrets)", points=2,
       hint="As text, /data/app is a prefix of /data/app-secrets; as paths, one is not inside the other. "
            "Compare Path objects (is_relative_to), never str.startswith.")
async def test_sibling_prefix(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    for root_arg in (str(box.root), box.root, str(box.root) + "/"):
        for sib in box.siblings:
            for path in (str(sib), str(sib / "secret.md"), str(box.sibling_secret)):
                assert not verdict_of(target, path, [root_arg]), (
                    f"is_path_allowed({path!r}, [{str(root_arg)!r}]) returned True: you compared strings, so "
                    f"{sib.name} passed because it starts with {box.root.name}")
        assert verdict_of(target, str(box.root), [root_arg]), "the root folder itself must be allowed"
        assert verdict_of(target, str(box.doc), [root_arg]), f"{box.doc} is inside the root and must be allowed"


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
        assert not verdict_of(target, path, roots), (
            f"is_path_allowed({path!r}) returned True for {what}: the name looks inside, the target is not; "
            "resolve links before comparing")
    for path in ("in-link", f"in-link/{box.doc.name}", "in-file", str(box.alias / "notes")):
        assert verdict_of(target, path, roots), (
            f"is_path_allowed({path!r}) returned False, but that link leads back inside the root: follow it "
            "rather than refusing every link")


@check("relative paths start at the first root, never at the working directory", points=2,
       hint="The client knows nothing of the server's working directory. Join a relative path onto the first "
            "root before resolving it.")
async def test_relative_paths(target: Target, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    box = sandbox
    monkeypatch.chdir(box.outside)   # a working directory outside the roots, as on a real server
    rel = f"notes/{box.doc.name}"
    assert verdict_of(target, rel, [str(box.root)]), (
        f"is_path_allowed({rel!r}, [root]) returned False: a relative path starts at the first root, but you "
        "resolved it against the working directory")
    assert verdict_of(target, box.secret.name, [str(box.root)]), (
        f"is_path_allowed({box.secret.name!r}, [root]) returned False: it names root/{box.secret.name}, inside "
        "the root (a file of that name in the working directory is irrelevant)")
    assert not verdict_of(target, f"../{box.outside.name}/{box.secret.name}", [str(box.root)]), (
        "a relative path with `..` that climbs out of the first root must be refused")
    # Several roots: a relative path starts at the FIRST one, not the last, and not whichever one makes it fit.
    climb = f"../{box.outside.name}/{box.secret.name}"
    assert not verdict_of(target, climb, [str(box.root), str(box.deep)]), (
        f"with roots [root, root/notes/deep], is_path_allowed({climb!r}) returned True: it starts at the first root "
        "and leads outside; anchored at the last root (or at whichever root makes it fit) it would look inside")
    down = f"../../{box.spaced.name}"
    assert verdict_of(target, down, [str(box.deep), str(box.root)]), (
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
    for uri in (spaced_uri, file_uri(str(box.spaced), host="localhost"), box.root.as_uri()):
        assert verdict_of(target, uri, roots), (
            f"is_path_allowed({uri!r}) returned False: decode the URI's path (%20 is a space)")
    sneaky = {
        file_uri(str(box.root)) + "/%2E%2E/" + box.outside.name + "/" + box.secret.name: "%2E%2E is `..`",
        file_uri(str(box.notes)) + "%2F..%2F..%2F" + box.siblings[0].name: "%2F is `/`, so this climbs out",
        file_uri(str(box.doc), host="evil.example"): "a file URI naming another host",
        "https://example.com" + quote(str(box.doc)): "not a file URI at all",
    }
    for uri, why in sneaky.items():
        assert not verdict_of(target, uri, roots), f"is_path_allowed({uri!r}) returned True: {why}"
    for uri in (box.doc.as_uri() + "?download=1", box.doc.as_uri() + "#top"):
        assert not verdict_of(target, uri, roots), (
            f"is_path_allowed({uri!r}) returned True: a file:// URI with a query or a fragment is refused, not trimmed")
    # A folder literally named %2E%2E inside the root. Decoded once, the URI below names it; decoded twice it would
    # mean `..`. A plain path is never decoded at all, so `%2E%2E/...` names that folder too.
    trap = box.root / "%2E%2E"
    trap.mkdir()
    (trap / box.secret.name).write_text("inside, in a folder with an odd name\n")
    literal_uri = (trap / box.secret.name).as_uri()           # the % is itself encoded: .../%252E%252E/...
    assert verdict_of(target, literal_uri, roots), (
        f"is_path_allowed({literal_uri!r}) returned False: decoded exactly once it names {trap.name}/{box.secret.name} "
        "inside the root; decoding twice turns %252E into a dot and the folder into `..`")
    plain = f"%2E%2E/{box.secret.name}"
    assert verdict_of(target, plain, roots), (
        f"is_path_allowed({plain!r}) returned False: a plain path is taken literally (never percent-decoded), so it "
        f"names the folder {trap.name!r} inside the root, not `..`")
    resolve_allowed = target.attr("roots", "resolve_allowed")
    assert Path(resolve_allowed(spaced_uri, [box.root])) == box.spaced, f"{spaced_uri!r} should lead to {box.spaced}"
    assert Path(resolve_allowed(literal_uri, [box.root])) == trap / box.secret.name, (
        f"{literal_uri!r} should lead to {trap / box.secret.name} (decoded once)")
    assert verdict_of(target, str(box.doc), [box.root.as_uri()]), (
        "roots may be file:// URIs too: decode them the same way")


@check("paths with NUL bytes are refused with a clear reason", points=2,
       hint="No file name may contain NUL (\\x00 or %00). C code would cut the path at it, Python raises "
            "ValueError: refuse it yourself, early, with a message that says so.")
async def test_nul_bytes(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    for path in (f"notes/{box.doc.name}\x00.png", f"notes/{box.doc.name}\x00/../../{box.outside.name}",
                 box.doc.as_uri() + "%00.txt", "\x00"):
        assert not verdict_of(target, path, roots), (
            f"is_path_allowed({path!r}) returned True: a NUL byte must be refused, not cut off or ignored")
    to_path = target.attr("roots", "to_path")
    with pytest.raises(Exception) as caught:
        to_path(f"notes/{box.doc.name}\x00.png")
    assert isinstance(caught.value, ToolError), (
        f"to_path with a NUL byte raised {type(caught.value).__name__}; raise PathRejected (a ToolError) so the "
        "model reads the reason")
    message = str(caught.value).lower()
    assert "nul" in message or "null" in message, (
        f"the refusal should say the path contains a NUL byte, got {caught.value}")


@check("over-long paths and names are refused with a clear reason", points=2,
       hint="Linux limits a path to 4096 bytes and one name to 255 bytes: longer is refused, exactly that long is "
            "fine. Count bytes, not characters (é is two bytes in UTF-8), and for a file:// URI count the path it "
            "names, once decoded. Refuse before touching the disk, and keep the message short.")
async def test_long_paths(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    rng = random.Random()
    long_path = "/".join(random_tag(rng, 200) for _ in range(22))          # ~4420 bytes, every name fine
    cases = [
        (sized_path(4096), True, "a path of exactly 4096 bytes is within the limit (refuse only what is longer)"),
        (sized_path(4097), False, "it is 4097 bytes long, one more than the 4096-byte limit"),
        (sized_path(4096, "é"), True, "it is exactly 4096 bytes in UTF-8 (about 2100 characters)"),
        (sized_path(4097, "é"), False, "it is 4097 bytes in UTF-8, though only about 2100 characters: count bytes"),
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
        assert verdict_of(target, path, roots) is allowed, (
            f"is_path_allowed({short(path)}) returned {not allowed}: {why}")
    to_path = target.attr("roots", "to_path")
    with pytest.raises(Exception) as caught:
        to_path(long_path)
    message = str(caught.value)
    assert isinstance(caught.value, ToolError), (
        f"to_path with a 4400-byte path raised {type(caught.value).__name__}: {message[:120]}; refuse it with "
        "PathRejected")
    assert "long" in message.lower() or "4096" in message, (
        f"the refusal should say the path is too long, got {message[:120]!r}")
    assert len(message) < 400, f"the refusal repeats {len(message)} characters back; keep it short"


@check("letter case and Unicode forms are compared exactly, as Linux stores names", points=2,
       hint="On a case-sensitive file system Notes/ and notes/ are two folders, and so are café in NFC and NFD "
            "forms. Folding case or normalising Unicode would let the other folder in.")
async def test_case_and_unicode(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    tag = random_tag(random.Random())
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
    assert not verdict_of(target, str(lower / "secret.md"), [str(upper)]), (
        f"is_path_allowed({lower.name}/secret.md, [{upper.name}]) returned True: you folded case, but on Linux "
        f"{lower.name} is a different folder")
    assert not verdict_of(target, str(nfd / "secret.md"), [str(nfc)]), (
        "a folder named café in NFD form passed for the root café in NFC form: you normalised Unicode, but on "
        "Linux these are two different folders")
    assert not verdict_of(target, f"../{nfd.name}/secret.md", [str(nfc)]), "the NFD sibling is outside the NFC root"
    assert verdict_of(target, str(nfc / resume), [str(nfc)]), (
        "a file with an NFD name inside the root must be allowed by its exact name")
    assert verdict_of(target, str(upper / "x.md"), [str(upper)]), "a path inside the root, in the same case, is allowed"


@check("missing files are judged by where they would be", points=2,
       hint="Resolving must not require the file to exist (Path.resolve() without strict), yet it still follows "
            "every link that does exist, and `..` still climbs after a missing folder.")
async def test_missing_targets(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    roots = [str(box.root)]
    tag = random_tag(random.Random())
    assert verdict_of(target, f"new-{tag}/draft.md", roots), (
        "a path inside the root that does not exist yet is still inside: resolve without strict=True")
    for path, why in ((str(box.siblings[0] / f"ghost-{tag}.md"), "it is outside, existing or not"),
                      ("dangling", "it is a link whose (missing) target is outside"),
                      (f"new-{tag}/../../{box.outside.name}/x.md", "`..` after a missing folder still climbs out")):
        assert not verdict_of(target, path, roots), f"is_path_allowed({path!r}) returned True, but {why}"


@check("roots are resolved too: a root given through a link still works", points=2,
       hint="Resolve each root exactly as you resolve the path; otherwise a root like /tmp (a link on macOS) "
            "never matches the real paths beneath it.")
async def test_roots_resolved(target: Target, sandbox: Sandbox) -> None:
    box = sandbox
    for root_arg in (str(box.alias), box.alias.as_uri(), box.alias):
        assert verdict_of(target, str(box.doc), [root_arg]), (
            f"with the root {str(root_arg)!r} (a link to {box.root.name}), the real path {box.doc} was refused: "
            "resolve the roots as well as the path")
        assert not verdict_of(target, str(box.sibling_secret), [root_arg]), "a sibling is outside an aliased root too"
    assert verdict_of(target, str(box.alias / "notes" / box.doc.name), [str(box.root)]), (
        "a path through a link that leads into the root is inside")
    for path in (str(box.doc), f"notes/{box.doc.name}"):
        assert not verdict_of(target, path, []), (
            f"is_path_allowed({path!r}, []) returned True: with no roots at all, nothing is allowed")
