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
folder, keyed by a hash of the project, and the others reuse it (`support/lesson08_build.py`;
a self-check starts it early, while its worker imports the SDK). The build backend runs code of
the student's project, so every step runs where student code runs (`target.command`), and what
the build wrote is read back from there too.
"""

from __future__ import annotations

import functools
import io
import json
import os
import random
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from checker.checks.kit.text import word
from checker.checks.support.lesson08_build import BUILDS_VARIABLE, RECORD, build_once, real_folder
from checker.host.programs import find_program
from checker.target import Target

SCRIPT = "research-desk"


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


def _recorded(target: Target, home: Path) -> Build | None:
    """The finished build recorded in `home`, if its record is sound and its files are still there.

    The record lies where student code may write, so it is read where student code runs and
    trusted only for names: every path is rebuilt here, inside `home`.
    """
    done = home / RECORD
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

    It lives in the lesson run's own temporary folder (a self-check's early build: the folder
    `BUILDS_VARIABLE` names), or when grading in the submission's scratch folder inside its
    sandbox (so lesson 9 reuses lesson 8's build), shared with nothing else.
    """
    uv = find_program("uv")
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
    base = Path(os.environ.get(BUILDS_VARIABLE) or target.scratch or tmp_path_factory.getbasetemp())
    run = functools.partial(_run, target)
    try:
        home = build_once(real_folder(base / "lesson08-builds"), project, uv, run,
                          lambda home: _recorded(target, home) is not None)
    except NotADirectoryError as exc:  # a link planted where the build lives
        pytest.fail(str(exc))
    found = _recorded(target, home)
    if found is None:
        pytest.fail("the build's record vanished or was changed while the checks ran")
    return found


def archive(target: Target, path: Path) -> io.BytesIO:
    """A file the build made, read where it was made (a link in its place never leads out)."""
    try:
        return io.BytesIO(target.read_bytes(path))
    except Exception as exc:  # noqa: BLE001 - gone, or replaced by something unreadable
        pytest.fail(f"{path.name}, which `uv build` made, could not be read back: {exc}")


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
