"""`course doctor`: is this machine ready for the course, and if not, exactly what to type.

Each item is checked without network access and in well under a second. Required items
(Python, uv, the pinned SDK, Jupyter and its kernel, a writable course folder) decide the exit
code; optional ones (Node for `course verify`'s judges, and the system programs lessons' checks
start, their `needs` in course.toml) only warn, because the checks that need them are skipped
with the same advice, never failed.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from checker.registry import Course, Program

MCP_RANGE = (">=2.3", "<3")
NODE_MAJOR = 22
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin")  # servers live here, often off a student's PATH


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool
    required: bool
    detail: str    # what was found
    fix: str = ""  # the command (or step) that fixes it, when not ok

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _system_install(package: str, brew: str | None = None) -> str:
    """The install command for a system package on this kind of machine."""
    if sys.platform == "darwin":
        return f"brew install {brew or package}"
    if shutil.which("apt-get"):
        return f"sudo apt-get install -y {package}"
    if shutil.which("dnf"):
        return f"sudo dnf install -y {package}"
    return f"install {package} with your system's package manager"


def _run(cmd: list[str]) -> str:
    """First line a tool prints about itself (stdout or stderr), or "" if it cannot run."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (proc.stdout.strip() or proc.stderr.strip()).splitlines()[0] if proc.returncode == 0 else ""


def _version(text: str) -> tuple[int, ...]:
    match = re.search(r"(\d+(?:\.\d+)*)", text)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def check_python() -> Finding:
    version = platform.python_version()
    ok = sys.version_info >= (3, 11)
    return Finding("Python ≥ 3.11", ok, True, f"Python {version} ({sys.executable})",
                   "" if ok else "uv python install 3.11, then run `uv sync` in the course folder")


def check_uv() -> Finding:
    found = shutil.which("uv")
    version = _run([found, "--version"]) if found else ""
    return Finding("uv", bool(version), True, version or "uv is not on PATH",
                   "" if version else f"{Path(sys.executable).name} -m pip install uv   (or see https://docs.astral.sh/uv/)")


def check_mcp() -> Finding:
    try:
        version = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return Finding("mcp SDK (>=2.3,<3)", False, True, "mcp is not installed", "uv sync   (in the course folder)")
    parts = _version(version)
    ok = parts[:2] >= (2, 3) and parts[0] < 3
    return Finding("mcp SDK (>=2.3,<3)", ok, True, f"mcp {version}",
                   "" if ok else "uv sync   (installs the pinned mcp>=2.3,<3 from uv.lock)")


def check_jupyter() -> Finding:
    try:
        version = importlib.metadata.version("jupyterlab")
    except importlib.metadata.PackageNotFoundError:
        return Finding("JupyterLab", False, True, "jupyterlab is not installed", "uv sync   (in the course folder)")
    return Finding("JupyterLab", True, True, f"jupyterlab {version}")


def check_kernel() -> Finding:
    """The notebooks need a Python kernel that runs *this* environment (where mcp and the checker are)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
    except ImportError:
        return Finding("Jupyter kernel", False, True, "ipykernel / jupyter_client is not installed", "uv sync")
    except NoSuchKernel:
        return Finding("Jupyter kernel", False, True, "no python3 kernel is installed",
                       f"{sys.executable} -m ipykernel install --user")
    argv0 = spec.argv[0] if spec.argv else ""
    same = argv0 in ("python", "python3", "{python}") or Path(argv0).resolve() == Path(sys.executable).resolve()
    if not same:
        return Finding("Jupyter kernel", False, True,
                       f"the python3 kernel runs {argv0}, not this environment ({sys.executable})",
                       "start Jupyter with `uv run course open` (it uses the course's environment)")
    return Finding("Jupyter kernel", True, True, f"python3 kernel → {sys.executable}")


def check_writable(course: Course) -> Finding:
    """Progress, backups and timings go to .course/; students edit capstone/."""
    problems = []
    for folder in (course.root, course.starter / course.package):
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".course-doctor-"):
                pass
        except OSError:
            problems.append(str(folder))
    if problems:
        return Finding("course folder writable", False, True, f"cannot write in {', '.join(problems)}",
                       f"sudo chown -R $USER {course.root}   (or clone the course into your home folder)")
    return Finding("course folder writable", True, True, str(course.root))


def _node_package() -> str:
    system = {"linux": "linux", "darwin": "darwin", "win32": "win"}.get(sys.platform, sys.platform)
    arches = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
    machine = arches.get(platform.machine().lower(), "x64")
    return f"node-{system}-{machine}@{NODE_MAJOR}"


def check_node() -> Finding:
    name = f"Node ≥ {NODE_MAJOR} (lesson 9: MCP Inspector)"
    found = shutil.which("node")
    version = _run([found, "--version"]) if found else ""
    ok = bool(version) and _version(version)[:1] >= (NODE_MAJOR,)
    fix = ""
    if not ok:
        prefix = "~/.local/node22"
        fix = (f"npm install --prefix {prefix} {_node_package()} && export PATH={prefix}/node_modules/.bin:$PATH"
               if shutil.which("npm") else f"install Node.js {NODE_MAJOR} LTS from https://nodejs.org/")
    return Finding(name, ok, False, f"node {version}" if version else "node is not on PATH", fix)


def check_service(program: Program, lessons: str) -> Finding:
    """A system program some lessons' checks start (course.toml's `needs`): optional, since those
    checks skip with the same install advice when it is missing."""
    binary = program.name
    found = shutil.which(binary) or next((str(p) for p in (Path(d) / binary for d in SBIN_DIRS)
                                          if p.is_file() and os.access(p, os.X_OK)), None)
    version = _run([found, "-v"]) if found else ""
    return Finding(f"{binary} ({lessons})", bool(found), False,
                   (version or found) if found else f"{binary} is not installed",
                   "" if found else _system_install(program.apt or binary, program.brew or None))


def _service_checks(course: Course) -> list[Callable[[], Finding]]:
    """One check per system program the lessons need (uv, from PyPI, is checked as required above)."""
    checks: list[Callable[[], Finding]] = []
    for program in course.needed_programs:
        if program.pip:
            continue
        numbers = [str(lesson.number) for lesson in course.lessons_needing(program.name)]
        label = f"lesson{'s' if len(numbers) > 1 else ''} {', '.join(numbers)}"
        checks.append(functools.partial(check_service, program, label))
    return checks


def run_doctor(course: Course) -> list[Finding]:
    checks: list[Callable[[], Finding]] = [
        check_python, check_uv, check_mcp, check_jupyter, check_kernel, lambda: check_writable(course),
        check_node, *_service_checks(course),
    ]
    return [check() for check in checks]
