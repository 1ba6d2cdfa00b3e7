"""Find the real executable behind a program's name, past version-manager shims.

A pyenv or asdf shim is a shell script that works out which real program to run, every time:
useless inside a sandbox (which has neither the shim's manager nor its settings) and ~50 ms of
CPU per call outside one, which a lesson run that calls `uv` six times pays six times over.
Standard library only: the early build imports it before anything else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def find_program(name: str) -> str | None:
    """The real executable for `name`: on PATH or in the sbin folders, past version-manager shims."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    if found and _is_shim(found):
        beside = Path(sys.base_prefix) / "bin" / name  # `pip install uv` into the interpreter pyenv manages
        found = str(beside) if beside.is_file() else _through_pyenv(name) or found
    return found


def _is_shim(path: str) -> bool:
    """A pyenv or asdf shim: a script that finds the real program, useless inside a sandbox."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return False
    return head.startswith(b"#!") and (b"pyenv" in head or b"asdf" in head or b"shim" in head)


def _through_pyenv(name: str) -> str | None:
    try:
        done = subprocess.run(["pyenv", "which", name], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
