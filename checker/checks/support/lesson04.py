"""Lesson 4's plumbing: a sandbox of folders and links around a root, and a model of where paths lead.

Shared by the lesson's visible checks (`lesson04.py`, `lesson04_tools.py`) and its hidden checks.
Every sandbox is laid out under `tmp_path` with random names: a root with nested folders,
siblings that share the root's name as a prefix, a folder outside, and links that point inward,
outward and nowhere. The model resolves paths from the sandbox's own map of folders and links,
never with `os.path.realpath`, so an expected verdict never comes from the code under test.
"""

from __future__ import annotations

import os
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from checker.checks.kit.text import text_of
from checker.target import Target

CRASH = "Error executing tool"  # all the model sees when a tool raises something other than ToolError


def random_tag(rng: random.Random, k: int = 6) -> str:
    """A random name of `k` lower-case letters and digits."""
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


def path_parts(path: Path | str) -> tuple[str, ...]:
    """A path's names, without empty ones (so leading, doubled and trailing slashes vanish)."""
    return tuple(p for p in str(path).split("/") if p)


def build_sandbox(tmp_path: Path) -> Sandbox:
    """Lay out the sandbox; record every link so the model can resolve paths on its own."""
    rng = random.Random()
    tag = random_tag(rng)
    # Three random levels between tmp_path and the sandbox: generated paths may climb at most
    # three `..` above it and still land in folders made here.
    base = Path(os.path.realpath(tmp_path)) / random_tag(rng) / random_tag(rng) / random_tag(rng)
    root = base / f"app-{tag}"
    notes, deep = root / "notes", root / "notes" / "deep"
    deep.mkdir(parents=True)
    needle = f"needle{random_tag(rng, 5)}"
    marker = f"SECRET-{random_tag(rng, 10)}"
    doc = notes / f"{random_tag(rng)}.md"
    doc_text = f"# Notes {tag}\n\nthe {needle} is here\n"
    doc.write_text(doc_text)
    (deep / f"{random_tag(rng)}.txt").write_text(f"deep {random_tag(rng)}\n")
    spaced = root / f"my notes {random_tag(rng, 4)}.md"
    spaced_text = f"spaced {random_tag(rng)}\n"
    spaced.write_text(spaced_text)
    siblings = [base / f"app-{tag}-secrets", base / f"app-{tag}2", base / f"app-{tag}.bak"]
    for sib in siblings:
        sib.mkdir()
    outside = base / f"outside-{tag}"
    outside.mkdir()
    secret = outside / f"{random_tag(rng)}.md"
    sibling_secret = siblings[0] / f"{random_tag(rng)}.md"
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
        box.model_links[path_parts(root / name)] = path_parts(real)
    box.model_links[path_parts(alias)] = path_parts(root)
    return box


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    """A fresh sandbox for each check."""
    return build_sandbox(tmp_path)


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


def verdict_of(target: Target, path: Any, roots: Sequence[Any]) -> bool:
    """is_path_allowed(path, roots) from student code; a raise or a non-bool fails the check."""
    fn = target.attr("roots", "is_path_allowed")
    try:
        got = fn(path, roots)
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"is_path_allowed({short(path)}, ...) raised {type(exc).__name__}: {exc}; it must "
                    "return False for anything it cannot judge, never raise")
    assert isinstance(got, bool), f"is_path_allowed must return True or False, got {got!r}"
    return got


def short(value: Any) -> str:
    """A path for a failure message: its repr, cut in the middle when long."""
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text if len(text) <= 90 else text[:70] + "…" + text[-15:]


async def call_read(client: Any, path: str) -> Any:
    """Call the read_file tool with `path`."""
    return await client.call_tool("read_file", {"path": path})


def assert_refused(result: Any, box: Sandbox, asked: str, tool: str = "read_file") -> str:
    """A tool result is a readable refusal that leaks nothing of the secret files; returns its text."""
    body = text_of(result)
    assert result.is_error, f"{tool}({asked!r}) succeeded although it leads outside the roots"
    assert box.secret_marker not in body, (
        f"{tool}({asked!r}) was refused, but the error shows the secret file's content")
    assert body.strip() != f"{CRASH} {tool}", (
        f"{tool}({asked!r}) crashed (the model only sees {body!r}): refuse with a ToolError (PathRejected) "
        "whose message says why")
    return body


def file_uri(path: str, *, host: str = "") -> str:
    """A file:// URI for `path` (percent-encoded), with `host` when given."""
    return f"file://{host}{quote(path, safe='/')}"


LINKS = ["in-link", "in-file", "out-link", "out-file", "dangling", "jump"]


TOKENS = [".", "..", "..", "notes", "deep", "DOC", *LINKS, *LINKS, "ROOT", "SIBLING", "OUTSIDE", "SECRET", "ALIAS",
          "missing", "SPACED"]


ROOT_CHOICES = ["root", "notes", "deep", "sibling", "alias", "outside"]


def token_text(box: Sandbox, token: str) -> str:
    """The sandbox name a path token stands for (DOC, ROOT, ...), or the token itself."""
    names = {"DOC": box.doc.name, "ROOT": box.root.name, "SIBLING": box.siblings[0].name,
             "OUTSIDE": box.outside.name, "SECRET": box.secret.name, "ALIAS": box.alias.name,
             "SPACED": box.spaced.name}
    return names.get(token, token)


def sized_path(total: int, unit: str = "a", per_name: int = 200) -> str:
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
