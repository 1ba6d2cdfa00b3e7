"""Before any student code runs: can this machine grade safely, and does it have what the lessons need?

`course grade` calls `preflight` once and prints its table. It decides how submissions will be
isolated (`Mode`), finds the resource groups, and looks for every program the chosen lessons'
checks start. What the grading machine lacks is the instructor's to fix: a check that needs it is
reported "not graded" and left out of the student's possible points, never counted against them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import checker
from checker.registry import Course, Lesson
from checker.sandbox import bwrap
from checker.sandbox.submission import Mode

SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
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

    def lacks(self, program: str) -> bool:
        return program in self.missing


def find_program(name: str) -> str | None:
    """The real executable for `name`: on PATH or in the sbin folders, past version-manager shims."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))
    if found and _is_shim(found):
        beside = Path(sys.base_prefix) / "bin" / name  # `pip install uv` into the interpreter pyenv manages
        found = str(beside) if beside.is_file() else _through_pyenv(name) or found
    return str(Path(found).resolve()) if found else None


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


def runtime_paths(uv: str | None) -> list[str]:
    """What student code needs read-only: the interpreter's installation, the venv, the uv binary."""
    paths = [Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), Path(sys.executable).resolve().parent]
    if uv:
        paths.append(Path(uv))
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
              scratch: Path, private: list[Path]) -> Preflight:
    """Decide how to grade here; `probe_uid` is the first sandbox user (None when not root)."""
    uv = find_program("uv")
    runtime = runtime_paths(uv)
    path_dirs = list(dict.fromkeys(str(Path(p).parent) for p in (sys.executable, uv) if p))
    result = Preflight(mode=None, runtime=runtime, path_dirs=path_dirs, private=private)
    if no_sandbox:
        result.mode = Mode.NONE
        result.findings.append(Finding("sandbox", False, "off (--no-sandbox): student code runs as you, unconfined",
                                       "grade untrusted work without --no-sandbox"))
    else:
        _choose_sandbox(course, result, probe_uid, scratch, private)
    for program in sorted({need for lesson in lessons for need in lesson.needs}):
        found = find_program(program)
        if found:
            result.findings.append(Finding(program, True, found))
        else:
            result.missing.append(program)
            result.findings.append(Finding(program, False, "not found: its checks will be reported as not graded",
                                           f"apt-get install {'redis-server' if program == 'redis-server' else program}"
                                           if program != "uv" else "python3 -m pip install uv"))
    return result


def _choose_sandbox(course: Course, result: Preflight, uid: int | None, scratch: Path, private: list[Path]) -> None:
    if shutil.which("bwrap"):
        view = probe_view(course, result.runtime, result.path_dirs, scratch)
        probe = [sys.executable, "-c", "import mcp, checker.host.zygote"]
        ok, why = _probe(bwrap.command(view, probe, uid=uid), None)
        if ok:
            result.mode = Mode.BUBBLEWRAP
            who = f"as sandbox users from uid {uid}" if uid is not None else "as your user, in a user namespace"
            result.findings.append(Finding("sandbox", True, f"bubblewrap: a namespace per submission, {who}"))
            return
        result.findings.append(Finding("bubblewrap", False, f"cannot make a sandbox here: {why}",
                                       "allow user namespaces, or run the grader's container with "
                                       "--security-opt seccomp=unconfined"))
    else:
        result.findings.append(Finding("bubblewrap", False, "not installed", "apt-get install bubblewrap"))
    if uid is None:
        result.refusal = ("no sandbox is possible here: bubblewrap cannot run and the grader is not root (needed "
                          "for the fallback that runs student code as its own user). Fix the line above, grade "
                          "as root in a container, or pass --no-sandbox for trusted code only")
        return
    unreadable = [p for p in result.runtime if not can_read(uid, p)]
    if unreadable:
        result.refusal = (f"the fallback sandbox runs student code as uid {uid}, which cannot read {unreadable[0]}: "
                          "install Python and uv where other users can read them (not in /root), or make "
                          "bubblewrap work here")
        return
    exposed = [str(p) for p in private if can_read(uid, str(p))]
    if exposed:
        result.refusal = (f"the fallback sandbox runs student code as uid {uid}, which could read {exposed[0]}: "
                          f"`chmod -R o-rwx {' '.join(exposed)}` first")
        return
    result.mode = Mode.USERS
    result.findings.append(Finding("sandbox", True, f"users: each submission as its own uid from {uid}, no "
                                                    "namespaces (bubblewrap cannot make them here)"))
