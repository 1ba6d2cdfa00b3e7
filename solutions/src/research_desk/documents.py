"""The documents a desk serves: plain-text and Markdown files under a workspace folder.

Given code (no exercise here): every lesson reads documents the same way.

These functions touch the disk and block while they do: a tool calls them through
`anyio.to_thread.run_sync`, so a slow disk stalls one worker thread, never the event loop
that serves every other client.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

DOCUMENT_SUFFIXES = (".md", ".txt")


@dataclass(frozen=True)
class Document:
    name: str    # path relative to the workspace root, with forward slashes
    title: str   # the first non-empty line, without Markdown heading marks
    words: int


def _is_document_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in DOCUMENT_SUFFIXES


def scan_documents(root: Path) -> list[Path]:
    """Every document file under `root`, sorted, skipping hidden folders and files.

    Folders reached through a symbolic link are not entered, and a linked file counts only when
    its target lies inside `root`: otherwise a link planted in the workspace would let every tool
    that serves documents read any file on the machine. Only links are resolved (one system call
    per file otherwise), since a scan runs on every search and index.
    """
    real_root = root.resolve()
    found: list[Path] = []
    folders = [root]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError:
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            path = folder / entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(path)
                elif (_is_document_name(entry.name) and entry.is_file()
                      and (not entry.is_symlink() or path.resolve().is_relative_to(real_root))):
                    found.append(path)
            except (OSError, RuntimeError):   # vanished meanwhile, unreadable, or a link loop
                continue
    return sorted(found)


def document_path(root: Path, name: str) -> Path | None:
    """The file behind the document `name` (as `scan_documents` names it), or None if it is not one.

    Answers the same as looking `name` up in a fresh scan, but looks only at the folders on its
    path: a name with `..`, `.`, empty or hidden parts is never a document, no folder on the way
    may be a link, and a linked file must lead to a place inside `root`.
    """
    parts = name.split("/")
    if not name or any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    if not _is_document_name(parts[-1]) or "\x00" in name:
        return None
    path = root
    try:
        for part in parts[:-1]:
            path = path / part
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                return None
        path = path / parts[-1]
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):
            return path if path.is_file() and path.resolve().is_relative_to(root.resolve()) else None
        return path if stat.S_ISREG(mode) else None
    except (OSError, RuntimeError, ValueError):
        return None


def load_document(root: Path, path: Path) -> Document:
    """Read one document's name, title and word count."""
    text = path.read_text(encoding="utf-8", errors="replace")
    first = next((line.strip() for line in text.splitlines() if line.strip()), path.stem)
    return Document(name=path.relative_to(root).as_posix(), title=first.lstrip("# ").strip() or path.stem,
                    words=len(text.split()))
