"""Lesson 8's one build of the student's project: copy, build, install, record; standard library only.

The packaging checks (`support/lesson08.py`) and lesson 9's stdio check share one build per run,
made under a file lock in the run's temporary folder and keyed by a hash of the project. Nothing
here imports pytest or the SDK, so a self-check can start the build while its worker is still
importing them (`checker.runner.start`), on the core that would otherwise wait:

    python -m checker.checks.support.lesson08_build BUILDS_FOLDER PROJECT_FOLDER

Every step runs through the `run` it is given: the checks pass one that runs it where student
code runs (`target.command`); the early build of a self-check runs it directly, as the student.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from checker.checks.kit.text import word
from checker.host.environment import plain_environment
from checker.host.programs import find_program

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
RECORD = "build.json"
# A self-check whose build was started early names its folder here (checks use their run's own
# temporary folder, or when grading the submission's scratch folder, otherwise).
BUILDS_VARIABLE = "COURSE_BUILDS"

# One build step: (argv, working folder, timeout in seconds) -> its completed process.
Run = Callable[[list[str], Path, float], "subprocess.CompletedProcess[str]"]


def fingerprint(project: Path) -> str:
    """A hash of what a build would copy (and of this Python), so a changed project is rebuilt."""
    digest = hashlib.sha256(f"{sys.executable}\n".encode())
    for folder, dirs, files in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info"))
        for name in sorted(files):
            if not name.endswith(".pyc"):
                path = Path(folder) / name
                digest.update(path.relative_to(project).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:24]


def write_new(path: Path, text: str) -> None:
    """Create `path` with `text`; never through a link planted there, never over an existing file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


def real_folder(path: Path) -> Path:
    """`path` as a real folder (made if missing); a link or a file in its place is refused."""
    path.mkdir(exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise NotADirectoryError(f"{path} is no longer a folder: something replaced the checks' build folder "
                                 "with a link")
    return path


def build_once(cache: Path, project: Path, uv: str, run: Run, recorded: Callable[[Path], bool]) -> Path:
    """The folder of this project's build in `cache`, built now unless `recorded(folder)` says it
    already is. One builder at a time (a file lock, released if its holder is killed): a second
    caller waits for the first and then finds its record."""
    key = fingerprint(project)
    home = cache / key
    lock = os.open(cache / f"{key}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.isdir(home) and not os.path.islink(home) and recorded(home):
            return home
        # never built, a builder died half-way, or its record is unusable
        if os.path.islink(home):
            os.unlink(home)
        shutil.rmtree(home, ignore_errors=True)
        real_folder(home)
        try:
            data = make_build(run, uv, project, home)
        except subprocess.TimeoutExpired as exc:
            data = {"ok": False, "problem": f"`uv {exc.cmd[1]}` took more than {exc.timeout:g} s"}
        tmp = home / f"{RECORD}.{os.getpid()}"
        write_new(tmp, json.dumps(data))
        os.replace(tmp, home / RECORD)
        return home
    finally:
        os.close(lock)


def make_build(run: Run, uv: str, project: Path, home: Path) -> dict[str, Any]:
    """Copy, plant strays, build, install. Returns the build's record, as JSON-able data."""
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

    def failed(problem: str) -> dict[str, Any]:
        return {"ok": False, "strays": strays, "problem": problem}

    with ThreadPoolExecutor(max_workers=1) as pool:  # the environment needs nothing from the build: both at once
        creating = pool.submit(run, [uv, "venv", "--offline", "--quiet", "--python", sys.executable, str(venv)],
                               home, 15)
        built = run([uv, "build", "--offline", "--no-build-isolation", "--color", "never", "--python", sys.executable,
                     "--out-dir", str(dist), str(copy)], home, 15)
        if built.returncode != 0:
            log = (built.stdout + built.stderr).strip()
            return failed("`uv build` failed on a copy of your project:\n" + log[-1500:])
        made = sorted(p.name for p in dist.iterdir()) if dist.is_dir() and not dist.is_symlink() else []
        wheels, sdists = [n for n in made if n.endswith(".whl")], [n for n in made if n.endswith(".tar.gz")]
        if len(wheels) != 1 or len(sdists) != 1:
            return failed(f"`uv build` should make one wheel and one sdist, it made {made}")
        created = creating.result()
        if created.returncode != 0:
            return failed("could not create a virtual environment to install your wheel in: "
                          + last_line(created.stdout + created.stderr)[:300])
        site = next((p for p in venv.glob("lib/python*/site-packages") if not p.is_symlink()), None)
        if site is None:
            return failed(f"`uv venv` made no site-packages folder in {venv}")
        course_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        write_new(site / "_course_dependencies.pth", "".join(f"{p}\n" for p in sorted(course_site)))
        installed = run([uv, "pip", "install", "--offline", "--no-deps", "--quiet", "--python",
                         str(venv / "bin" / "python"), str(dist / wheels[0])], home, 15)
        if installed.returncode != 0:
            return failed("installing your wheel failed: " + (installed.stdout + installed.stderr)[-1500:])
        return {"ok": True, "problem": "", "strays": strays, "wheel": wheels[0], "sdist": sdists[0]}


def run_here(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """A build step of a self-check's early build: run as it is, as the student."""
    return subprocess.run(argv, cwd=cwd, env=plain_environment(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def start_early(builds: Path, project: Path) -> subprocess.Popen[bytes] | None:
    """Start this project's build in `builds`, in its own process group (None: nothing to build it
    with). Checks then find it there when `BUILDS_VARIABLE` names that folder."""
    if find_program("uv") is None or not (project / "pyproject.toml").is_file():
        return None  # the checks say why, each in its own words
    return subprocess.Popen([sys.executable, "-m", __name__, str(builds), str(project)], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str]) -> None:
    builds, project = Path(argv[0]), Path(argv[1])
    uv = find_program("uv")
    if uv is not None:
        build_once(real_folder(builds), project, uv, run_here, lambda home: (home / RECORD).is_file())


if __name__ == "__main__":
    main(sys.argv[1:])
