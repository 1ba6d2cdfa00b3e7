"""The documents a desk serves: plain-text and Markdown files under a workspace folder.

Given code (no exercise here): every lesson reads documents the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DOCUMENT_SUFFIXES = (".md", ".txt")


@dataclass(frozen=True)
class Document:
    name: str    # path relative to the workspace root, with forward slashes
    title: str   # the first non-empty line, without Markdown heading marks
    words: int


def scan_documents(root: Path) -> list[Path]:
    """Every document file under `root`, sorted, skipping hidden folders and files.

    A symbolic link whose target lies outside `root` is skipped too: otherwise a link planted in
    the workspace would let every tool that serves documents read any file on the machine.
    """
    real_root = root.resolve()
    return sorted(
        path for path in root.rglob("*")
        if path.is_file() and path.suffix.lower() in DOCUMENT_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
        and path.resolve().is_relative_to(real_root)
    )


def load_document(root: Path, path: Path) -> Document:
    """Read one document's name, title and word count."""
    text = path.read_text(encoding="utf-8", errors="replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)
    return Document(name=path.relative_to(root).as_posix(), title=first.lstrip("# ").strip() or path.stem,
                    words=len(text.split()))
