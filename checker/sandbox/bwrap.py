"""The command line that starts a submission's sandbox with bubblewrap.

The sandbox's file system is built from nothing (an empty tmpfs), then filled with only what
student code needs, read-only: the system's programs and libraries (/usr, /etc), the Python that
runs the course and its virtual environment, the course's runner (without the hidden checks),
and `uv`. Then the submission's own copy (read-only) and its scratch folder (writable). Nothing
else of the grading machine exists inside: no other submission, no `solutions/`, no quiz key, no
results. /tmp, /proc and /dev are private.

Because bwrap builds the tree itself, it creates the folders leading to a Python in root's home
(pyenv, uv-managed Pythons) without the real /root ever being opened to anyone. That needs bwrap
to run as root, who then becomes the submission's own unprivileged user (setpriv, from
util-linux) before anything of the student's runs. Without root, bwrap makes a user namespace,
and student code runs as the grader's user inside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SYSTEM_DIRS = ("/usr", "/etc")
MERGED_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")  # links into /usr on most systems
# The only variables student code inherits: the grader's own environment may hold secrets.
PASSED_ENV = ("LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED")


@dataclass
class View:
    """What one submission's sandbox contains (every path is mounted at its own path)."""

    runtime: list[Path]               # read-only: interpreter, virtual environment, uv, ...
    checker: Path                     # read-only: the course's runner package
    hidden: Path | None               # hidden inside it (an empty folder takes its place)
    edition: Path                     # read-only: the submission's copy
    scratch: Path                     # writable: where its checks and servers may write
    path_dirs: list[Path] = field(default_factory=list)  # searched for commands, first to last


def _in_system_dirs(path: Path) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in SYSTEM_DIRS)


def _parents(path: Path, done: set[Path]) -> list[str]:
    """bwrap arguments that create every folder above `path` readable by anyone (bwrap's own are 0700)."""
    args: list[str] = []
    for parent in reversed(path.parents):
        if parent == Path("/") or parent in done or _in_system_dirs(parent):
            continue
        done.add(parent)
        args += ["--perms", "0755", "--dir", str(parent)]
    return args


def command(view: View, argv: list[str], *, uid: int | None) -> list[str]:
    """`argv` run in the sandbox `view` describes, as `uid` (None: as the caller, unprivileged)."""
    args = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--tmpfs", "/"]
    for folder in SYSTEM_DIRS:
        if os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    for link in MERGED_DIRS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
    created: set[Path] = set()
    for path in dict.fromkeys([*view.runtime, view.checker]):
        if _in_system_dirs(path):
            continue  # already there with /usr
        args += [*_parents(path, created), "--ro-bind", str(path), str(path)]
        created.add(path)
    if view.hidden is not None and view.hidden.is_dir():
        args += ["--tmpfs", str(view.hidden)]
    for path, mode in ((view.edition, "--ro-bind"), (view.scratch, "--bind")):
        args += [*_parents(path, created), mode, str(path), str(path)]
        created.add(path)
    search = ":".join([*map(str, view.path_dirs), "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"])
    args += ["--clearenv", "--setenv", "PATH", search, "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
    for name in PASSED_ENV:
        if name in os.environ:
            args += ["--setenv", name, os.environ[name]]
    args += ["--chdir", "/", "--"]
    if uid is not None:
        args += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
                 "--bounding-set=-all", "--no-new-privs", "--"]
    return args + argv
