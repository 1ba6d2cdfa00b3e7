"""The file system as the checks see it while they grade: the runtime reachable, the answers gone.

Checks (the judges) run as each submission's unprivileged user, outside its sandbox. Two things
about the real file system do not suit them, and both are fixed in a mount namespace private to
the batch worker, so nothing changes for anyone else on the machine and it all ends with the batch:

- A Python in root's home (pyenv, uv-managed) is out of an unprivileged user's reach, so a check
  could not even import a module it has not loaded yet. The folder in the way is replaced by an
  empty, readable one holding only the runtime's own folders.
- The instructor's answers (`solutions/`, the plain quiz key, the hidden checks, the submissions
  and the grades folder) are covered with empty ones. A check that was tricked into following a
  link a submission planted finds nothing there to leak.
- Without bubblewrap (the "users" fallback), student code shares this view, so the shared temp
  folders (/tmp, /var/tmp, /dev/shm) are replaced by empty ones private to the batch: whatever
  other programs leave there is out of its sight, and what it leaves goes with the batch. The
  batch's own folder is put back where it was.

Needs root (the only case where checks change user). Mounts are made with util-linux `mount`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

CLONE_NEWNS = 0x00020000
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def _blocked_by(path: Path, uid: int) -> Path | None:
    """The highest folder above `path` that `uid` may not pass through (None: nothing blocks it)."""
    for parent in reversed(path.parents):
        info = parent.stat()
        if info.st_mode & 0o001 == 0 and not (info.st_uid == uid and info.st_mode & 0o100):
            return parent
    return None


def enter(runtime: list[Path], private: list[Path], uid: int, stash: Path, keep: Path | None = None) -> None:
    """Make this (single-threaded, root) process's file system the judges' view, for good.

    `stash` is an empty folder of the grader's, kept private, where the covered folders stay
    reachable. With `keep` (the batch's folder), the shared temp folders become private too.
    """
    if _libc.unshare(CLONE_NEWNS) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"cannot make the checks' view of the file system: {os.strerror(errno)}")
    _mount("--make-rprivate", "/")
    stash.mkdir(mode=0o700, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=0700", "tmpfs", str(stash))
    blocked: dict[Path, list[Path]] = {}
    for path in runtime:
        top = _blocked_by(path, uid)
        if top is not None:
            blocked.setdefault(top, []).append(path)
    for index, (top, inside) in enumerate(blocked.items()):
        kept = stash / str(index)
        kept.mkdir()
        _mount("--bind", str(top), str(kept))  # keep a way to the real folder before covering it
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(top))
        for path in inside:
            (top / path.relative_to(top)).mkdir(parents=True, exist_ok=True)
            for folder in [top / path.relative_to(top), *(top / path.relative_to(top)).parents]:
                if folder == top:
                    break
                folder.chmod(0o755)
            _mount("--bind", str(kept / path.relative_to(top)), str(top / path.relative_to(top)))
    for path in private:
        if path.is_dir():
            _mount("-t", "tmpfs", "-o", "mode=0755,size=4k", "tmpfs", str(path))
        elif path.is_file():
            _mount("--bind", os.devnull, str(path))
    if keep is not None:
        _private_temp(keep)


TEMP_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
_MS_BIND = 4096


def _private_temp(keep: Path) -> None:
    """Fresh temp folders for this namespace, with `keep` (under one of them) where it was."""
    held = os.open(keep, os.O_PATH | os.O_DIRECTORY)  # the real folder, reachable once its path is covered
    try:
        for folder in TEMP_DIRS:
            if os.path.isdir(folder):
                _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", folder)
        keep.mkdir(parents=True, exist_ok=True)
        # By the descriptor, not the path (mount(8) would resolve the path into the new, empty /tmp).
        if _libc.mount(f"/proc/self/fd/{held}".encode(), str(keep).encode(), None, _MS_BIND, None) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"cannot keep the batch's folder: {os.strerror(errno)}")
    finally:
        os.close(held)
