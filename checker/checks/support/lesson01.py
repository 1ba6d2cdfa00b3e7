"""Lesson 1's plumbing: a workspace of random documents, and the few client calls every check makes.

Shared by `checks/lesson01.py` and `checks/hidden/lesson01_hidden.py`. The workspace is drawn
afresh on every run (so no answer can be memorised), and what the index should hold is computed
here from what was written, never by the code under test.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checker.checks.kit.text import word


@dataclass
class Workspace:
    """A folder of documents and what each holds, as the check wrote them."""

    root: Path
    documents: dict[str, str]  # name -> text, for every file the desk must serve

    @property
    def names(self) -> list[str]:
        return sorted(self.documents)


IGNORED = {".hidden/secret.md": "# Hidden\n\nnot a document", "logo.png": "not text", ".draft.md": "# Draft\n\nno"}
"""Files in every workspace that are not documents: hidden ones and one that is not text."""


# Names a desk must keep exactly as they are: each has a space and a character outside ASCII.
UNUSUAL_NAMES = ["naïve plan", "café notes", "Ünïcode draft", "résumé v2"]


def document(rng: random.Random) -> str:
    """A document's text: a title line and a body with multi-byte characters (UTF-8 on disk)."""
    body = " ".join(word(rng) for _ in range(rng.randint(3, 30)))
    return f"# {word(rng).title()}\n\n{body} — {rng.choice(['é', 'ß', '研究', 'Ω'])}"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A folder of random documents, plus files a desk must ignore (hidden, not text).

    Every workspace, whatever the draw, holds a document two folders deep and one whose name has a
    space and a non-ASCII letter, so keeping only file names or re-encoding them fails every run.
    """
    rng = random.Random()
    root = tmp_path / "workspace"
    documents: dict[str, str] = {
        f"papers/2026/{word(rng)}.md": document(rng),
        f"{rng.choice(UNUSUAL_NAMES)} {rng.randint(1, 99)}.txt": document(rng),
    }
    for _ in range(rng.randint(1, 5)):
        folder = rng.choice(["", "notes/", f"{word(rng)}/", "papers/2026/"])
        documents[f"{folder}{word(rng)}{rng.choice(['.md', '.txt'])}"] = document(rng)
    for name, text in {**documents, **IGNORED}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return Workspace(root, documents)


def expected_row(name: str, text: str) -> tuple[str, str, int]:
    """What the index holds for a document: its name, its title (the first line without its #) and its words."""
    return name, text.splitlines()[0].lstrip("# ").strip(), len(text.split())


def diff(got: list[str], want: list[str]) -> str:
    """How two lists of document names differ, in words a student can act on."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else ""]
    return "; ".join(p for p in parts if p) or f"same names, but got {got!r}, expected sorted {want!r}"


async def desk_info(client: Any) -> dict[str, Any]:
    """Call desk_info and return its DeskInfo as plain data; an error or unstructured answer fails the check."""
    result = await client.call_tool("desk_info", {})
    assert not result.is_error, f"desk_info returned an error: {result.content[0].text if result.content else ''}"
    assert isinstance(result.structured_content, dict), "desk_info must return a DeskInfo (structured output)"
    return result.structured_content
