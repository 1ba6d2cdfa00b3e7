"""Writing new files inside the workspace, the one way every tool that writes does it (given code).

Lesson 4's gate keeps *reads* inside the roots: resolve the path, then compare it with the roots.
A write needs more, because it acts on whatever is on the disk at that moment:

* **No link is followed.** Each folder on the way is opened with `O_NOFOLLOW`, starting from the
  folder the desk owns, so a link planted at `notes/` or at `notes/pwn.md` is refused instead of
  written through to a file outside every root.
* **Nothing is replaced.** The file is written under a temporary name created with `O_EXCL`, then
  given its name with `os.link`, which fails when the name is taken (by a file, a folder, a link).
  The caller decides what to do then: pick another name and say so, or refuse.
* **All or nothing.** Nobody ever sees half a file under the final name: it appears complete.

Everything here blocks on the disk: call it through `anyio.to_thread.run_sync`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path, PurePosixPath

FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class WriteRefused(Exception):
    """A write that would leave the desk's folder (a link on the way) or is not a plain relative path.
    The message names the path as the caller gave it, never where a link points."""


def split_relative(relative: str) -> tuple[str, ...]:
    """The parts of a plain relative path (`notes/a.md`), or WriteRefused for anything else."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or any(part in ("..", ".") for part in parts):
        raise WriteRefused(f"{relative!r} is not a plain path inside the workspace")
    return parts


def open_folder(base: Path, parts: tuple[str, ...], *, create: bool = True) -> int:
    """A descriptor of the folder `base/parts...`, reached without following any link below `base`.

    `base` itself is configuration (a root the operator chose) and may be a link. Missing folders,
    `base` included, are created when `create` is set. Raises WriteRefused when a part is a link or
    not a folder. The caller closes the descriptor.
    """
    if create:
        base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, FOLDER_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                raise WriteRefused(f"{'/'.join(parts)!r}: {part!r} is a link or not a folder, and writes never "
                                   f"go through links") from None
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


class NewFile:
    """A file being written into a folder under a temporary name, until `publish` names it.

    `NewFile(base, "notes/a.md")` opens (creating if needed) the folder `notes` below `base`
    without following links, and creates a hidden temporary file there. `write` appends text;
    `publish` gives the file its name (FileExistsError if the name is taken: nothing is replaced)
    or `publish_as_free_name` picks the first free `a-2.md`, `a-3.md`, ...; `discard` removes it.
    Use it as a context manager to discard whatever was not published.
    """

    def __init__(self, base: Path, relative: str) -> None:
        self.base = Path(base)
        self.parts = split_relative(relative)
        self.folder = open_folder(self.base, self.parts[:-1])
        self.temporary = f".{self.parts[-1]}.{secrets.token_hex(6)}.tmp"
        self.size = 0   # bytes written so far
        try:
            self.fd: int | None = os.open(self.temporary, NEW_FILE_FLAGS, 0o644, dir_fd=self.folder)
        except BaseException:
            os.close(self.folder)
            raise

    def write(self, text: str) -> None:
        """Append `text` (UTF-8) to the file."""
        if self.fd is None:
            raise ValueError("the file was already published or discarded")
        data = text.encode("utf-8")
        self.size += len(data)
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def publish(self, name: str | None = None) -> Path:
        """Give the file its name (`name` replaces the last part, if given); FileExistsError if taken."""
        if self.fd is None:
            raise ValueError("the file was already published or discarded")
        final = name or self.parts[-1]
        os.fsync(self.fd)
        os.link(self.temporary, final, src_dir_fd=self.folder, dst_dir_fd=self.folder, follow_symlinks=False)
        self._close()
        return self.base.joinpath(*self.parts[:-1], final)

    def publish_as_free_name(self, limit: int = 1000) -> Path:
        """Publish under the requested name, or the first free `<stem>-2<suffix>`, `-3`, ... when it is taken."""
        stem, suffix = os.path.splitext(self.parts[-1])
        for number in range(1, limit + 1):
            try:
                return self.publish(self.parts[-1] if number == 1 else f"{stem}-{number}{suffix}")
            except FileExistsError:
                continue
        raise FileExistsError(f"{limit} files named like {self.parts[-1]!r} exist already")

    def discard(self) -> None:
        """Remove the unpublished file (safe to call twice, and after publish)."""
        if self.fd is not None:
            self._close()

    def _close(self) -> None:
        fd, self.fd = self.fd, None
        try:
            if fd is not None:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary, dir_fd=self.folder)
        finally:
            os.close(self.folder)

    def __enter__(self) -> NewFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def write_new_file(base: Path, relative: str, text: str, *, rename_if_taken: bool = False) -> Path:
    """Write `text` to a new file `base/relative` in one piece, following no link and replacing nothing.

    Returns the path written: `relative` itself, or, with `rename_if_taken`, the first free
    `-2`, `-3`, ... variant of it. Raises FileExistsError (name taken) or WriteRefused (a link).
    """
    with NewFile(base, relative) as new:
        new.write(text)
        return new.publish_as_free_name() if rename_if_taken else new.publish()
