"""Lesson 8's plumbing: the one shared build of the student's project, and the desk's command run as a process.

The packaging checks never touch the student's folder: `build` copies the project that holds the
graded `src/` (its pyproject.toml and everything beside it) into a temporary directory, puts a
few files there that a real working folder often has (a `.env`, a notebook, stale bytecode),
builds a wheel and an sdist with `uv build --offline --no-build-isolation` (the build backend,
hatchling, is the course's own copy: nothing is downloaded, and it works for the unprivileged
users `course grade` runs checks as, who cannot read the instructor's uv cache), and installs
the wheel into a fresh virtual environment. That environment borrows the course's
already-installed dependencies (a `.pth` line), so nothing is downloaded; the package and its
command come only from the wheel. One build serves every check of a lesson run (and lesson 9's
stdio check): the first check to need it builds under a file lock in the run's own temporary
folder, keyed by a hash of the project, and the others reuse it. The build backend runs code of
the student's project, so every step runs where student code runs (`target.command`), and what
the build wrote is read back from there too.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checker.checks.kit.text import word
from checker.target import Target

SCRIPT = "research-desk"
SKIPPED_DIRS = {
    ".course",
    ".git",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".venv",
    "__pycache__",
    "build",
    "dist",
    "venv",
}
COPY_IGNORE = shutil.ignore_patterns(*SKIPPED_DIRS, "*.pyc", "*.egg-info")


def make_workspace(folder: Path, rng: random.Random) -> tuple[Path, list[str]]:
    """A folder (in `folder`) of random documents for the server under test: its path, and the
    documents' names, sorted."""
    root = folder / f"ws-{word(rng)}"
    names = sorted(
        {f"{rng.choice(['', 'notes/'])}{word(rng)}{rng.choice(['.md', '.txt'])}" for _ in range(rng.randint(2, 6))}
    )
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {word(rng).title()}\n\n{word(rng)} {word(rng)}\n")
    return root, names


# -- the project and its one shared build --------------------------------------------------------


def project_folder(target: Target) -> Path:
    project = target.edition.parent
    if not (project / "pyproject.toml").is_file():
        pytest.fail(
            f"no pyproject.toml in {project}: the packaging checks build the project folder that holds "
            f"src/{target.package}"
        )
    return project


def edition_version(target: Target) -> str:
    text = (target.edition / target.package / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if not match:
        pytest.fail(f'{target.package}/__init__.py has no __version__ = "..." line')
    return match.group(1)


def _fingerprint(project: Path) -> str:
    """A hash of what a build would copy (and of this Python), so a changed project is rebuilt."""
    digest = hashlib.sha256(f"{sys.executable}\n".encode())
    for folder, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if not name.endswith(".pyc"):
                path = Path(folder) / name
                digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


@dataclass
class Build:
    ok: bool
    problem: str  # why the build or install failed ("" when ok)
    skip: str  # why the build could not be tried here (no uv): not the student's fault
    wheel: Path | None
    sdist: Path | None
    venv: Path | None
    strays: list[str]  # files the check planted in the copy, which must not ship

    @property
    def command(self) -> Path:
        assert self.venv is not None
        return self.venv / "bin" / SCRIPT

    def require(self) -> Build:
        if self.skip:
            pytest.skip(self.skip)
        if not self.ok:
            pytest.fail(self.problem)
        return self


def plain_env(target: Target) -> dict[str, str]:
    """For a build step or the installed command: nothing of the grader's, and no graded source on the path."""
    env = target.env()
    env.pop("PYTHONPATH", None)
    return env


def _run(target: Target, cmd: list[str], cwd: Path, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """One build step, run where student code runs (the build backend runs the project's own code)."""
    try:
        return subprocess.run(
            target.command(cmd),
            cwd=cwd,
            env=plain_env(target),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise subprocess.TimeoutExpired(cmd, timeout) from None  # named as the step, not as its relay


def _write_new(path: Path, text: str) -> None:
    """Create `path` with `text`; never through a link planted there, never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _make_build(target: Target, uv: str, project: Path, home: Path) -> dict[str, Any]:
    """Copy, plant strays, build, install. Returns what `Build` needs, as JSON-able data."""
    rng = random.Random()
    copy = home / "project"
    shutil.copytree(project, copy, ignore=COPY_IGNORE, symlinks=False)
    strays = [".env", f"{word(rng)}-scratch.ipynb", f"src/research_desk/__pycache__/{word(rng)}.cpython-311.pyc"]
    (copy / strays[0]).write_text(f"API_KEY={word(rng, 20, 30)}\n")
    (copy / strays[1]).write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    (copy / strays[2]).parent.mkdir(parents=True, exist_ok=True)
    (copy / strays[2]).write_bytes(b"\x00stale bytecode")
    dist = home / "dist"
    venv = home / "venv"
    with ThreadPoolExecutor(max_workers=1) as pool:  # the environment needs nothing from the build: both at once
        creating = pool.submit(
            _run, target, [uv, "venv", "--offline", "--quiet", "--python", sys.executable, str(venv)], home
        )
        built = _run(
            target,
            [
                uv,
                "build",
                "--offline",
                "--no-build-isolation",
                "--color",
                "never",
                "--python",
                sys.executable,
                "--out-dir",
                str(dist),
                str(copy),
            ],
            cwd=home,
        )
        log = (built.stdout + built.stderr).strip()
        if built.returncode != 0:
            return {
                "ok": False,
                "strays": strays,
                "problem": "`uv build` failed on a copy of your project:\n" + log[-1500:],
            }
        made = sorted(p.name for p in dist.iterdir()) if dist.is_dir() and not dist.is_symlink() else []
        wheels, sdists = [n for n in made if n.endswith(".whl")], [n for n in made if n.endswith(".tar.gz")]
        if len(wheels) != 1 or len(sdists) != 1:
            return {
                "ok": False,
                "strays": strays,
                "problem": f"`uv build` should make one wheel and one sdist, it made {made}",
            }
        created = creating.result()
        if created.returncode != 0:
            return {
                "ok": False,
                "strays": strays,
                "problem": "could not create a virtual environment to install your "
                "wheel in: " + last_line(created.stdout + created.stderr)[:300],
            }
        site = next((p for p in venv.glob("lib/python*/site-packages") if not p.is_symlink()), None)
        if site is None:
            return {"ok": False, "strays": strays, "problem": f"`uv venv` made no site-packages folder in {venv}"}
        course_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        _write_new(site / "_course_dependencies.pth", "".join(f"{p}\n" for p in sorted(course_site)))
        installed = _run(
            target,
            [
                uv,
                "pip",
                "install",
                "--offline",
                "--no-deps",
                "--quiet",
                "--python",
                str(venv / "bin" / "python"),
                str(dist / wheels[0]),
            ],
            cwd=home,
        )
        if installed.returncode != 0:
            return {
                "ok": False,
                "strays": strays,
                "problem": "installing your wheel failed: " + (installed.stdout + installed.stderr)[-1500:],
            }
        return {"ok": True, "problem": "", "strays": strays, "wheel": wheels[0], "sdist": sdists[0]}


def _folder(path: Path) -> Path:
    """`path` as a real folder of this run (made if missing); a link in its place fails the check."""
    path.mkdir(exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        pytest.fail(f"{path} is no longer a folder: something replaced the checks' build folder with a link")
    return path


def _recorded(target: Target, home: Path) -> Build | None:
    """The finished build recorded in `home`, if its record is sound and its files are still there.

    The record lies where student code may write, so it is read where student code runs and
    trusted only for names: every path is rebuilt here, inside `home`.
    """
    done = home / "build.json"
    if not os.path.lexists(done):
        return None
    try:
        data = json.loads(target.read_text(done))
    except Exception:  # noqa: BLE001 - an unreadable or garbled record: build again
        return None
    if type(data) is not dict or type(data.get("ok")) is not bool:
        return None
    strays = data.get("strays")
    strays = [str(s) for s in strays] if type(strays) is list else []
    if not data["ok"]:
        return Build(
            ok=False, problem=str(data.get("problem", "")), skip="", wheel=None, sdist=None, venv=None, strays=strays
        )
    names = [data.get("wheel"), data.get("sdist")]
    if not all(type(n) is str and n and "/" not in n and n not in (".", "..") for n in names):
        return None
    wheel, sdist, venv = home / "dist" / str(names[0]), home / "dist" / str(names[1]), home / "venv"
    if not all(os.path.lexists(p) for p in (wheel, sdist, venv)):
        return None
    return Build(ok=True, problem="", skip="", wheel=wheel, sdist=sdist, venv=venv, strays=strays)


def build(target: Target, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """The one build of this project, made now or reused from an earlier check.

    It lives in the lesson run's own temporary folder, or when grading in the submission's scratch
    folder inside its sandbox (so lesson 9 reuses lesson 8's build), shared with nothing else.
    """
    uv = shutil.which("uv")
    if uv is None:
        return Build(
            ok=False,
            problem="",
            skip="needs the `uv` command to build the project: install uv (https://docs.astral.sh/uv/) and check again",
            wheel=None,
            sdist=None,
            venv=None,
            strays=[],
        )
    project = project_folder(target)
    key = _fingerprint(project)
    cache = _folder(Path(target.scratch or tmp_path_factory.getbasetemp()) / "lesson08-builds")
    home = cache / key
    lock = os.open(cache / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; a killed builder releases it
        found = _recorded(target, home) if os.path.isdir(home) and not os.path.islink(home) else None
        if found is None:  # never built, a builder died half-way, or its record is unusable
            if os.path.islink(home):
                os.unlink(home)
            shutil.rmtree(home, ignore_errors=True)
            _folder(home)
            try:
                data = _make_build(target, uv, project, home)
            except subprocess.TimeoutExpired as exc:
                data = {"ok": False, "problem": f"`uv {exc.cmd[1]}` took more than {exc.timeout:g} s"}
            tmp = home / f"build.json.{os.getpid()}"
            _write_new(tmp, json.dumps(data))
            os.replace(tmp, home / "build.json")
            found = _recorded(target, home)
        if found is None:
            pytest.fail("the build's record vanished or was changed while the checks ran")
        return found
    finally:
        os.close(lock)


def archive(target: Target, path: Path) -> io.BytesIO:
    """A file the build made, read where it was made (a link in its place never leads out)."""
    try:
        return io.BytesIO(target.read_bytes(path))
    except Exception as exc:  # noqa: BLE001 - gone, or replaced by something unreadable
        pytest.fail(f"{path.name}, which `uv build` made, could not be read back: {exc}")


def last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


def mcp_requirement(project: Path) -> str | None:
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    from packaging.requirements import Requirement

    for spec in data.get("project", {}).get("dependencies", []):
        if Requirement(spec).name.lower() == "mcp":
            return spec
    return None


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder of random documents the server under test is pointed at (checks files import it for pytest)."""
    return make_workspace(tmp_path, random.Random())
