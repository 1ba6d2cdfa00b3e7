"""Before any student code runs: can this machine grade safely, and does it have what the lessons need?

`course grade` calls `preflight` once and prints its table. It decides how submissions will be
isolated (`Mode`), finds the resource groups, and looks for every program the chosen lessons'
checks start. What the grading machine lacks is the instructor's to fix: a check that needs it is
reported "not graded" and left out of the student's possible points, never counted against them.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import checker
from checker.host.programs import find_program
from checker.registry import Course, Lesson
from checker.sandbox import bwrap
from checker.sandbox.cgroups import GroupsUnavailable, batch_groups
from checker.sandbox.submission import Mode

PROBE_SECONDS = 60


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Preflight:
    """What grading on this machine will be like; `refusal` is set when it must not start."""

    mode: Mode | None
    findings: list[Finding] = field(default_factory=list)
    refusal: str = ""
    missing: list[str] = field(default_factory=list)  # programs the checks need that this machine lacks
    runtime: list[str] = field(default_factory=list)
    path_dirs: list[str] = field(default_factory=list)
    private: list[Path] = field(default_factory=list)  # the instructor's: hidden from checks and student code
    view: bool = False  # checks get their own view of the file system (`checker.sandbox.judgeview`)

    def lacks(self, program: str) -> bool:
        return program in self.missing


def runtime_paths(uv: str | None) -> list[str]:
    """What student code needs read-only: the interpreter's installation, the venv, the uv binary."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent]
    if uv:
        paths.append(Path(uv).resolve())
    kept: list[Path] = []
    for path in dict.fromkeys(paths):
        if not any(other in path.parents for other in paths if other != path):
            kept.append(path)
    return [str(p) for p in kept]


def hidden_folder(course: Course) -> Path:
    return course.checks_dir / "hidden"


def probe_view(course: Course, runtime: list[str], path_dirs: list[str], scratch: Path) -> bwrap.View:
    return bwrap.View(runtime=[Path(p) for p in runtime], checker=Path(checker.__file__).resolve().parent,
                      hidden=hidden_folder(course), edition=scratch, scratch=scratch,
                      path_dirs=[Path(p) for p in path_dirs])


def _probe(argv: list[str], uid: int | None) -> tuple[bool, str]:
    """Run `argv` (as `uid`) and say whether it worked, with its last words if not."""
    def become() -> None:
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_SECONDS, stdin=subprocess.DEVNULL,
                              cwd="/", preexec_fn=become if uid is not None else None)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or [""]
    return done.returncode == 0, last[0][:300]


def can_read(uid: int, path: str) -> bool:
    """Whether `uid` may read (and enter) `path`, asked in a child that becomes that user."""
    ok, _ = _probe([sys.executable, "-I", "-S", "-c", f"import os,sys; sys.exit(0 if os.access({path!r}, "
                    "os.R_OK | os.X_OK) else 1)"], uid)
    return ok


def private_paths(course: Course, extra: list[Path]) -> list[Path]:
    """What student code must never read: the answers and everything of the instructor's."""
    paths = [course.solutions.parent, hidden_folder(course), course.root / "quiz" / "key.toml", *extra]
    return [p for p in paths if p.exists()]


def preflight(course: Course, lessons: list[Lesson], *, no_sandbox: bool, probe_uid: int | None,
              scratch: Path, private: list[Path], without_bubblewrap: bool = False) -> Preflight:
    """Decide how to grade here; `probe_uid` is the first sandbox user (None when not root).

    `without_bubblewrap` skips straight to the fallback (as where bubblewrap cannot make namespaces).
    """
    uv = find_program("uv")
    runtime = runtime_paths(uv)
    path_dirs = list(dict.fromkeys(str(Path(p).parent) for p in (sys.executable, uv) if p))
    result = Preflight(mode=None, runtime=runtime, path_dirs=path_dirs, private=private)
    if no_sandbox:
        result.mode = Mode.NONE
        result.findings.append(Finding("sandbox", False, "off (--no-sandbox): student code runs as you, unconfined",
                                       "grade untrusted work without --no-sandbox"))
    else:
        if not without_bubblewrap and _bubblewrap(course, result, probe_uid, scratch):
            result.mode = Mode.BUBBLEWRAP
        else:
            _users(result, probe_uid, private)
        if result.mode is not None and probe_uid is not None:
            result.view = mount_namespaces()
            result.findings.append(_groups_finding())
        elif result.mode is not None:
            result.findings.append(Finding("limits", False, "per process only: resource groups need root"))
    for name in sorted({need for lesson in lessons for need in lesson.needs}):
        found = find_program(name)
        if found:
            result.findings.append(Finding(name, True, found))
        else:
            result.missing.append(name)
            result.findings.append(Finding(name, False, "not found: its checks will be reported as not graded",
                                           course.programs[name].install_advice()))
    return result


def _bubblewrap(course: Course, result: Preflight, uid: int | None, scratch: Path) -> bool:
    """Whether bubblewrap makes a working sandbox here: the course's Python and runner run inside it."""
    if not shutil.which("bwrap"):
        result.findings.append(Finding("bubblewrap", False, "not installed", "apt-get install bubblewrap"))
        return False
    view = probe_view(course, result.runtime, result.path_dirs, scratch)
    # The course's Python, its packages and the runner must work in there, and `uv` be found, as its user.
    probe = [sys.executable, "-c", "import shutil, sys, mcp, checker.host.zygote\n"
             "sys.exit(0 if shutil.which('uv') else 'uv cannot be found inside the sandbox')"]
    ok, why = _probe(bwrap.command(view, probe, uid=uid), None)
    if not ok:
        result.findings.append(Finding("bubblewrap", False, f"cannot make a sandbox here: {why}",
                                       "allow user namespaces, or run the grader's container with "
                                       "--security-opt seccomp=unconfined"))
        return False
    who = f"as its own unprivileged user (from uid {uid})" if uid is not None else "as your user, in a user namespace"
    result.findings.append(Finding("sandbox", True, f"bubblewrap: a namespace of its own per submission, {who}"))
    return True


def _users(result: Preflight, uid: int | None, private: list[Path]) -> None:
    """The fallback: each submission as its own user, no namespaces. Refuse when it would not hold."""
    if uid is None:
        result.refusal = ("no sandbox is possible here: bubblewrap cannot run and the grader is not root (needed "
                          "for the fallback that runs student code as its own user). Fix the line above, grade "
                          "as root in a container, or pass --no-sandbox for trusted code only")
        return
    if not mount_namespaces():  # no view to hide the instructor's files or open the runtime: files must do it
        unreadable = [p for p in result.runtime if not can_read(uid, p)]
        if unreadable:
            result.refusal = (
                f"the fallback sandbox runs student code as uid {uid}, which cannot read {unreadable[0]}: "
                "install Python and uv where other users can read them (not in /root), or make "
                "bubblewrap work here"
            )
            return
        exposed = [str(p) for p in private if can_read(uid, str(p))]
        if exposed:
            result.refusal = (f"the fallback sandbox runs student code as uid {uid}, which could read {exposed[0]}: "
                              f"`chmod -R o-rwx {' '.join(exposed)}` first")
            return
    result.mode = Mode.USERS
    result.findings.append(Finding("sandbox", True, f"users: each submission as its own unprivileged user (from uid "
                                                    f"{uid}); no namespaces, no private network"))


def mount_namespaces() -> bool:
    """Whether this process may make a mount namespace (root, and not forbidden by a container)."""
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(0x00020000) == 0 else 1)
    return os.waitpid(pid, 0)[1] == 0


def _groups_finding() -> Finding:
    try:
        groups = batch_groups(f"course-preflight-{os.getpid()}")
    except GroupsUnavailable as exc:
        return Finding("limits", False, f"per process only: {exc}")
    groups.remove()
    return Finding("limits", True, f"memory and processes per check, all its processes together "
                                   f"(cgroup {'v2' if groups.v2 else 'v1'})")
