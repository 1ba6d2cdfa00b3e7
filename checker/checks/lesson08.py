"""Lesson 8 checks: the desk as a distribution someone else installs and a host starts.

The packaging checks never touch the student's folder: they copy the project that holds the
graded `src/` (its pyproject.toml and everything beside it) into a temporary directory, put a
few files there that a real working folder often has (a `.env`, a notebook, stale bytecode),
build a wheel and an sdist with `uv build --offline --no-build-isolation` (the build backend,
hatchling, is the course's own copy: nothing is downloaded, and it works for the unprivileged
users `course grade` runs checks as, who cannot read the instructor's uv cache), and install
the wheel into a fresh virtual environment. That environment borrows the course's already-installed dependencies
(a `.pth` line), so nothing is downloaded; the package and its command come only from the
wheel. One build serves every check of a lesson run: the first check to need it builds under a
file lock in the run's own temporary folder, keyed by a hash of the project, and the others
reuse it. The build backend runs code of the student's project, so every step runs where
student code runs (`target.command`), and what the build wrote is read back from there too.

The command-line checks run `python -m research_desk` from the graded edition as a real
subprocess, and stop every process they start.
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
import signal
import socket
import string
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from checker.marks import check
from checker.target import Target, free_port

pytestmark = pytest.mark.anyio

MODES = {"auto": "2026-07-28", "legacy": "2025-11-25"}
SCRIPT = "research-desk"
ENTRY = "research_desk.__main__:main"
SKIPPED_DIRS = {"__pycache__", ".venv", "venv", "dist", "build", ".pytest_cache", ".mypy_cache", ".ruff_cache",
                ".git", ".course", ".ipynb_checkpoints"}
COPY_IGNORE = shutil.ignore_patterns(*SKIPPED_DIRS, "*.pyc", "*.egg-info")


def _word(rng: random.Random, low: int = 4, high: int = 9) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(low, high)))


@pytest.fixture
def workspace(tmp_path: Path) -> tuple[Path, list[str]]:
    """A folder of random documents the server under test is pointed at."""
    rng = random.Random()
    root = tmp_path / f"ws-{_word(rng)}"
    names = sorted({f"{rng.choice(['', 'notes/'])}{_word(rng)}{rng.choice(['.md', '.txt'])}" for _ in range(rng.randint(2, 6))})
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {_word(rng).title()}\n\n{_word(rng)} {_word(rng)}\n")
    return root, names


# -- the project and its one shared build --------------------------------------------------------

def _project(target: Target) -> Path:
    project = target.edition.parent
    if not (project / "pyproject.toml").is_file():
        pytest.fail(f"no pyproject.toml in {project}: the packaging checks build the project folder that holds "
                    f"src/{target.package}")
    return project


def _edition_version(target: Target) -> str:
    text = (target.edition / target.package / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.MULTILINE)
    if not match:
        pytest.fail(f"{target.package}/__init__.py has no __version__ = \"...\" line")
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
    problem: str          # why the build or install failed ("" when ok)
    skip: str             # why the build could not be tried here (no uv): not the student's fault
    wheel: Path | None
    sdist: Path | None
    venv: Path | None
    strays: list[str]     # files the check planted in the copy, which must not ship

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


def _plain_env(target: Target) -> dict[str, str]:
    """For a build step or the installed command: nothing of the grader's, and no graded source on the path."""
    env = target.env()
    env.pop("PYTHONPATH", None)
    return env


def _run(target: Target, cmd: list[str], cwd: Path, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    """One build step, run where student code runs (the build backend runs the project's own code)."""
    try:
        return subprocess.run(target.command(cmd), cwd=cwd, env=_plain_env(target), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
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
    strays = [".env", f"{_word(rng)}-scratch.ipynb", f"src/research_desk/__pycache__/{_word(rng)}.cpython-311.pyc"]
    (copy / strays[0]).write_text(f"API_KEY={_word(rng, 20, 30)}\n")
    (copy / strays[1]).write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n')
    (copy / strays[2]).parent.mkdir(parents=True, exist_ok=True)
    (copy / strays[2]).write_bytes(b"\x00stale bytecode")
    dist = home / "dist"
    built = _run(target, [uv, "build", "--offline", "--no-build-isolation", "--color", "never", "--python",
                          sys.executable, "--out-dir", str(dist), str(copy)], cwd=home)
    log = (built.stdout + built.stderr).strip()
    if built.returncode != 0:
        return {"ok": False, "strays": strays, "problem": "`uv build` failed on a copy of your project:\n" + log[-1500:]}
    made = sorted(p.name for p in dist.iterdir()) if dist.is_dir() and not dist.is_symlink() else []
    wheels, sdists = [n for n in made if n.endswith(".whl")], [n for n in made if n.endswith(".tar.gz")]
    if len(wheels) != 1 or len(sdists) != 1:
        return {"ok": False, "strays": strays,
                "problem": f"`uv build` should make one wheel and one sdist, it made {made}"}
    venv = home / "venv"
    created = _run(target, [uv, "venv", "--offline", "--quiet", "--python", sys.executable, str(venv)], cwd=home)
    if created.returncode != 0:
        return {"ok": False, "strays": strays, "problem": "could not create a virtual environment to install your "
                "wheel in: " + _last_line(created.stdout + created.stderr)[:300]}
    site = next((p for p in venv.glob("lib/python*/site-packages") if not p.is_symlink()), None)
    if site is None:
        return {"ok": False, "strays": strays, "problem": f"`uv venv` made no site-packages folder in {venv}"}
    course_site = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    _write_new(site / "_course_dependencies.pth", "".join(f"{p}\n" for p in sorted(course_site)))
    installed = _run(target, [uv, "pip", "install", "--offline", "--no-deps", "--quiet", "--python",
                              str(venv / "bin" / "python"), str(dist / wheels[0])], cwd=home)
    if installed.returncode != 0:
        return {"ok": False, "strays": strays,
                "problem": "installing your wheel failed: " + (installed.stdout + installed.stderr)[-1500:]}
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
        return Build(ok=False, problem=str(data.get("problem", "")), skip="", wheel=None, sdist=None, venv=None,
                     strays=strays)
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
        return Build(ok=False, problem="", skip="needs the `uv` command to build the project: install uv "
                     "(https://docs.astral.sh/uv/) and check again", wheel=None, sdist=None, venv=None, strays=[])
    project = _project(target)
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


def _archive(target: Target, path: Path) -> io.BytesIO:
    """A file the build made, read where it was made (a link in its place never leads out)."""
    try:
        return io.BytesIO(target.read_bytes(path))
    except Exception as exc:  # noqa: BLE001 - gone, or replaced by something unreadable
        pytest.fail(f"{path.name}, which `uv build` made, could not be read back: {exc}")


# -- subprocess helpers ----------------------------------------------------------------------------

def _stderr_tail(stderr: str, lines: int = 6) -> str:
    """The last lines the server wrote to stderr (where a traceback ends with the error itself)."""
    kept = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return ("\nThe server's stderr ends with:\n" + "\n".join(line[:200] for line in kept)) if kept else ""


def _errlog(folder: Path) -> IO[str]:
    """A nameless file for a server's stderr: read back through this handle, nothing can swap it."""
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=folder)


def _tail(errlog: IO[str]) -> str:
    errlog.flush()
    errlog.seek(0)
    return _stderr_tail(errlog.read())


def _module(target: Target, *args: str, env: dict[str, str] | None = None, cwd: Path,
            timeout: float = 10) -> subprocess.CompletedProcess[str]:
    """`python -m research_desk ARGS` from the graded edition, with a clean environment."""
    try:
        return subprocess.run(target.command([sys.executable, "-m", target.package, *args]), cwd=cwd,
                              env=target.env(env),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`python -m {target.package} {' '.join(args)}` did not exit within {timeout:g} s: it should "
                    f"answer and exit without starting a server")


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def _last_line(text: str) -> str:
    return next((line for line in reversed(text.splitlines()) if line.strip()), "")


def _mcp_requirement(project: Path) -> str | None:
    data = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    from packaging.requirements import Requirement

    for spec in data.get("project", {}).get("dependencies", []):
        if Requirement(spec).name.lower() == "mcp":
            return spec
    return None


# -- the checks -------------------------------------------------------------------------------------

@check("uv build makes a wheel and an sdist, and the sdist ships only the project", points=2,
       hint="`uv build` packs everything in the project folder into the sdist unless you say otherwise: tell "
            "hatchling what belongs there ([tool.hatch.build.targets.sdist]), so a .env or a notebook never ships.")
async def test_builds_wheel_and_sdist(target: Target, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = build(target, tmp_path_factory).require()
    assert built.wheel and built.sdist
    version = _edition_version(target)
    assert built.wheel.name == f"research_desk-{version}-py3-none-any.whl", (
        f"the wheel is {built.wheel.name}; expected research_desk-{version}-py3-none-any.whl (the distribution "
        f"is research-desk and its version should match research_desk.__version__ = {version!r})")
    try:
        with tarfile.open(fileobj=_archive(target, built.sdist)) as sdist:
            names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    except tarfile.TarError as exc:
        pytest.fail(f"the sdist {built.sdist.name} is not a readable tar.gz archive: {exc}")
    for needed in ("pyproject.toml", "src/research_desk/__init__.py", "src/research_desk/__main__.py"):
        assert needed in names, f"the sdist lacks {needed}: a wheel built from it would be incomplete"
    shipped = [n for n in names if n in built.strays or n.rsplit("/", 1)[-1] == ".env"
               or n.endswith((".pyc", ".ipynb")) or "__pycache__" in n]
    assert not shipped, (
        f"the sdist ships {shipped}: files that merely sit in your project folder (we put them there, as your "
        f"real folder may have a .env with keys in it). Publish only src/, pyproject.toml and docs")


@check("the wheel holds the package and its console script, and nothing stray", points=2,
       hint="[project.scripts] maps a command name to `package.module:function`; the wheel's "
            "entry_points.txt is where installers read it. Only the package and its .dist-info belong in a wheel.")
async def test_wheel_contents(target: Target, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = build(target, tmp_path_factory).require()
    assert built.wheel
    try:
        with zipfile.ZipFile(_archive(target, built.wheel)) as wheel:
            names = wheel.namelist()
            points = next((wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        pytest.fail(f"the wheel {built.wheel.name} is not a readable zip archive: {exc}")
    sources = sorted(p.relative_to(target.edition).as_posix() for p in (target.edition / target.package).rglob("*.py")
                     if "__pycache__" not in p.parts)
    missing = [s for s in sources if s not in names]
    assert not missing, f"the wheel lacks {missing}: an installed desk would fail to import them"
    stray = [n for n in names if not (n.startswith(f"{target.package}/") or ".dist-info/" in n)
             or n.endswith((".pyc", ".ipynb", ".env")) or "__pycache__" in n]
    assert not stray, f"the wheel ships files that are not part of the package: {stray[:5]}"
    scripts = {}
    section = ""
    for line in points.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif "=" in line and section == "[console_scripts]":
            name, _, value = line.partition("=")
            scripts[name.strip()] = value.strip()
    assert SCRIPT in scripts, (
        f"the wheel declares no `{SCRIPT}` command (console scripts: {sorted(scripts) or 'none'}): add it under "
        f"[project.scripts] in pyproject.toml")
    assert scripts[SCRIPT] == ENTRY, f"`{SCRIPT}` should run {ENTRY}, it runs {scripts[SCRIPT]}"


@check("the installed research-desk command serves tools over stdio in both eras", points=3,
       hint="Test what users install, not your source tree: the wheel in a fresh environment, started through "
            "its console script, spoken to by a real stdio client. main() must run the server and return.")
async def test_installed_command_serves_stdio(target: Target, workspace: tuple[Path, list[str]], tmp_path: Path,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    built = build(target, tmp_path_factory).require()
    assert target.library("os.path").isfile(str(built.command)), (
        f"installing the wheel made no `{SCRIPT}` command: declare it in [project.scripts]")
    root, names = workspace
    version = _edition_version(target)
    seen: dict[str, Any] = {}

    async def connect(mode: str) -> None:
        command, *args = target.command([str(built.command), "--root", str(root)])
        params = StdioServerParameters(command=command, args=args, env=_plain_env(target), cwd=str(tmp_path))
        with _errlog(tmp_path) as err:
            try:
                with anyio.fail_after(16):
                    async with Client(stdio_client(params, errlog=err), mode=mode) as client:
                        tools = [t.name for t in (await client.list_tools()).tools]
                        listed = await client.call_tool("list_documents", {}) if "list_documents" in tools else None
                        seen[mode] = (client.protocol_version, client.server_info, tools, listed)
            except Exception as exc:  # noqa: BLE001 - the student's server died or never answered
                err.flush()
                while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
                    exc = exc.exceptions[0]
                seen[mode] = f"({type(exc).__name__}: {exc}){_tail(err)}"

    async with anyio.create_task_group() as tg:  # one server process per era, started side by side
        for mode in MODES:
            tg.start_soon(connect, mode)
    for mode, protocol in MODES.items():
        if isinstance(seen[mode], str):
            pytest.fail(f"[{mode}] the installed `{SCRIPT} --root ...` did not answer over stdio {seen[mode]}")
        era, info, tools, listed = seen[mode]
        assert era == protocol, f"[{mode}] expected protocol {protocol}, the installed server spoke {era}"
        assert "list_documents" in tools, f"[{mode}] the installed server lists no list_documents tool: {tools}"
        assert listed is not None and not listed.is_error, f"[{mode}] list_documents failed on the installed server"
        got = (listed.structured_content or {}).get("result")
        assert got == names, f"[{mode}] the installed server listed {got} for --root {root.name}, expected {names}"
        assert info is not None and info.version == version, (
            f"[{mode}] the installed server reports version {getattr(info, 'version', None)!r}, expected {version!r}")


@check("the mcp requirement has an upper bound (and a lower one)", points=2,
       hint="An unbounded `mcp>=2.3` lets a future major release install under your users and break the server "
            "(it happened with 1.x -> 2.x). Give the requirement a ceiling below the next major version, and a "
            "floor at the version you tested: `mcp<3` alone would install a 1.x that lacks MCPServer.")
async def test_mcp_upper_bound(target: Target) -> None:
    from importlib.metadata import version as installed_version

    from packaging.requirements import Requirement

    spec = _mcp_requirement(_project(target))
    assert spec, "pyproject.toml does not list `mcp` in [project] dependencies: the server imports it"
    requirement = Requirement(spec)
    current = installed_version("mcp")
    assert requirement.specifier.contains(current, prereleases=True), (
        f"{spec!r} excludes mcp {current}, the version this course runs on")
    rng = random.Random()
    futures = ["3.0.0", f"3.{rng.randint(0, 20)}.{rng.randint(0, 9)}", f"{rng.randint(4, 9)}.0.0"]
    allowed = [v for v in futures if requirement.specifier.contains(v, prereleases=False)]
    assert not allowed, (
        f"{spec!r} would install mcp {allowed[0]}, a future major version that may break the server; "
        f"add an upper bound")
    pasts = ["1.0.0", f"1.{rng.randint(1, 26)}.{rng.randint(0, 9)}", "0.9.0"]
    older = [v for v in pasts if requirement.specifier.contains(v, prereleases=False)]
    assert not older, (
        f"{spec!r} would install mcp {older[0]}, a 1.x release without the MCPServer API this server imports; "
        f"add a lower bound at the version you tested (2.3)")


@check("--help and --version answer without starting a server", points=2,
       hint="argparse gives you both: a parser with a help text per option (name its RESEARCH_DESK_* variable too), "
            "and action='version'. Neither may start serving or write anything but their answer.")
async def test_help_and_version(target: Target, tmp_path: Path) -> None:
    version = _edition_version(target)
    shown = _module(target, "--version", cwd=tmp_path)
    assert shown.returncode == 0, f"--version exited with {shown.returncode}: {_last_line(shown.stderr)}"
    assert shown.stdout.strip() == f"{SCRIPT} {version}", (
        f"--version should print `{SCRIPT} {version}`, it printed {shown.stdout.strip()!r}")
    helped = _module(target, "--help", cwd=tmp_path)
    assert helped.returncode == 0, f"--help exited with {helped.returncode}: {_last_line(helped.stderr)}"
    text = helped.stdout
    assert SCRIPT in _first_line(text), (
        f"the usage line should name the command `{SCRIPT}` (ArgumentParser(prog=...)), got {_first_line(text)!r}")
    for option, variable in (("--transport", "RESEARCH_DESK_TRANSPORT"), ("--host", "RESEARCH_DESK_HOST"),
                             ("--port", "RESEARCH_DESK_PORT"), ("--root", "RESEARCH_DESK_ROOTS"),
                             ("--log-level", "RESEARCH_DESK_LOG_LEVEL"), ("--version", "")):
        assert option in text, f"--help does not mention {option}"
        assert variable in text, f"--help does not say that {variable} sets {option}: users of a host config need it"


@check("settings come from defaults, then RESEARCH_DESK_* variables, then flags", points=3,
       hint="Read os.environ-style variables first and let a flag given on the command line win; leave argparse "
            "defaults at None so you can tell 'not given' from 'given'. Several roots are split with os.pathsep.")
async def test_settings_precedence(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    folders = [tmp_path / _word(rng) for _ in range(4)]
    for folder in folders:
        folder.mkdir(exist_ok=True)

    def load(argv: list[str], env: dict[str, str]) -> Any:
        try:
            return main.load_settings(argv, env)
        except SystemExit as exc:
            pytest.fail(f"load_settings({argv}, {env}) exited ({exc.code}) on valid settings")

    defaults = load(["--root", str(folders[0])], {})
    assert (defaults.transport, defaults.host, defaults.port, defaults.log_level) == ("stdio", "127.0.0.1", 8000, "WARNING"), (
        f"with no variables and no flags, expect stdio on 127.0.0.1:8000 at WARNING, got {defaults}")
    env_port, flag_port = rng.randint(1024, 30000), rng.randint(30001, 65000)
    env_host = f"127.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    level = rng.choice(["debug", "info", "error"])
    mixed = level[0].upper() + level[1:]   # neither all lower nor all upper case: any case is allowed
    env = {"RESEARCH_DESK_TRANSPORT": "http", "RESEARCH_DESK_HOST": env_host, "RESEARCH_DESK_PORT": str(env_port),
           "RESEARCH_DESK_ROOTS": os.pathsep.join(str(f) for f in folders[:2]),
           "RESEARCH_DESK_LOG_LEVEL": mixed, "UNRELATED_PORT": "1"}
    from_env = load([], env)
    assert from_env.transport == "http" and from_env.host == env_host and from_env.port == env_port, (
        f"the RESEARCH_DESK_* variables were not applied: got {from_env}")
    assert [Path(r) for r in from_env.roots] == folders[:2], (
        f"RESEARCH_DESK_ROOTS holds two folders separated by {os.pathsep!r}; got roots {from_env.roots}")
    assert from_env.log_level == env["RESEARCH_DESK_LOG_LEVEL"].upper(), (
        f"RESEARCH_DESK_LOG_LEVEL={env['RESEARCH_DESK_LOG_LEVEL']} should give {env['RESEARCH_DESK_LOG_LEVEL'].upper()}")
    flags = ["--transport", "stdio", "--port", str(flag_port), "--root", str(folders[2]), "--root", str(folders[3]),
             "--log-level", "critical"]
    from_flags = load(flags, env)
    assert from_flags.transport == "stdio" and from_flags.port == flag_port and from_flags.log_level == "CRITICAL", (
        f"a flag must win over its variable: got {from_flags}")
    assert [Path(r) for r in from_flags.roots] == folders[2:], (
        f"--root flags replace RESEARCH_DESK_ROOTS, got {from_flags.roots}")
    assert from_flags.host == env_host, "a variable still applies when its flag is not given (host)"
    flag_host = f"127.1.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    with_host = load(["--host", flag_host], env)
    assert with_host.host == flag_host and with_host.port == env_port, (
        f"--host {flag_host} must win over RESEARCH_DESK_HOST={env_host} (and the port still come from its "
        f"variable): got host {with_host.host!r}, port {with_host.port!r}")
    missing = tmp_path / f"missing-{rng.randint(1000, 9999)}"
    for argv, bad_env in (([], {**env, "RESEARCH_DESK_PORT": _word(rng)}), (["--root", str(missing)], {}),
                          ([], {"RESEARCH_DESK_ROOTS": str(missing)}), ([], {**env, "RESEARCH_DESK_TRANSPORT": "carrier-pigeon"})):
        try:
            main.load_settings(argv, bad_env)
        except SystemExit as exc:
            assert exc.code == 2, f"a bad setting should exit with code 2 (usage error), got {exc.code}"
        else:
            pytest.fail(f"load_settings accepted a bad setting (argv={argv}, "
                        f"{ {k: v for k, v in bad_env.items() if k.startswith('RESEARCH_DESK_')} })")


def _outcome(main: Any, argv: list[str], env: dict[str, str]) -> tuple[Any, int | None]:
    """(settings, None) when load_settings accepts, (None, exit code) when it exits; other errors fail."""
    try:
        return main.load_settings(argv, env), None
    except SystemExit as exc:
        return None, exc.code
    except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
        shown = " ".join([*(f"{k}={v}" for k, v in env.items()), SCRIPT, *argv])
        pytest.fail(f"`{shown}`: load_settings raised {type(exc).__name__}: {str(exc)[:200]} (a bad setting is "
                    f"parser.error, exit code 2)")


@check("load_settings draws the lines exactly: ports 1-65535, roots that are folders, folder names kept whole",
       points=2,
       hint="A TCP port is 1 to 65535, both ends included, wherever it came from (flag or variable). A root must be "
            "an existing folder: a file is refused too. RESEARCH_DESK_ROOTS is split on os.pathsep only, so folder "
            "names keep their spaces, commas and accents.")
async def test_settings_boundaries(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    root = ["--root", str(tmp_path)]
    for port in (1, 65535):
        for argv, env in ((root + ["--port", str(port)], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = _outcome(main, argv, env)
            assert code is None and settings.port == port, (
                f"port {port} ({'--port' if env == {} else 'RESEARCH_DESK_PORT'}) should be accepted: 1-65535 are "
                f"all ports; got {'exit code ' + str(code) if code is not None else 'port ' + repr(settings.port)}")
    for port in (0, 65536, -rng.randint(1, 999)):
        for argv, env in ((root + [f"--port={port}"], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = _outcome(main, argv, env)
            assert code == 2, (
                f"port {port} ({'--port' if env == {} else 'RESEARCH_DESK_PORT'}) is not a TCP port (1-65535): "
                f"expected exit code 2, got {'acceptance' if code is None else f'exit code {code}'}")
    folders = [tmp_path / name for name in ("my notes", "q&a, drafts", "semi;colon", "caf\u00e9 \u7814\u7a76")]
    for folder in folders:
        folder.mkdir()
    env = {"RESEARCH_DESK_ROOTS": os.pathsep.join(str(f) for f in folders)}
    settings, code = _outcome(main, [], env)
    assert code is None and [Path(r) for r in settings.roots] == folders, (
        f"RESEARCH_DESK_ROOTS named the folders {[f.name for f in folders]}, joined with {os.pathsep!r}; got "
        f"{'exit code ' + str(code) if code is not None else [str(r) for r in settings.roots]}: split on os.pathsep only")
    document = folders[0] / "a-document.md"
    document.write_text("# not a folder\n")
    for argv, bad in ((["--root", str(document)], {}), ([], {"RESEARCH_DESK_ROOTS": str(document)}),
                      ([], {"RESEARCH_DESK_ROOTS": os.pathsep.join([str(folders[1]), str(document)])})):
        settings, code = _outcome(main, argv, bad)
        assert code == 2, (
            f"{document.name} exists but is a file, so it cannot be a root (`{' '.join(argv) or bad}`): expected "
            f"exit code 2, got {'acceptance' if code is None else f'exit code {code}'}")


def _logging_probe(target: Target, main: Any, level: str, records: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Call configure_logging twice over a stale root handler, log `records`; report what went where.

    Everything is done where student code runs, with objects of the standard library made
    there (three StringIO streams, a StreamHandler); what they caught is read back here.
    """
    io, logs, sys_ = target.library("io"), target.library("logging"), target.library("sys")
    root = logs.getLogger()
    saved = (root.handlers, root.level, sys_.stdout, sys_.stderr, sys_.__stdout__, sys_.__stderr__)
    out, err, stale = io.StringIO(), io.StringIO(), io.StringIO()
    try:
        sys_.stdout = out
        sys_.__stdout__ = out
        sys_.stderr = err
        sys_.__stderr__ = err
        root.handlers = [logs.StreamHandler(stale)]  # left by a library or an earlier basicConfig
        try:
            main.configure_logging(level)
            main.configure_logging(level)
        except Exception as exc:  # noqa: BLE001 - reported as an observation
            return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        for name, record_level, message in records:
            logs.getLogger(name).log(getattr(logs, record_level), "%s", message)
        handlers = root.handlers
        for handler in handlers:
            handler.flush()
        return {"error": "", "stdout": out.getvalue(), "stderr": err.getvalue(), "stale": stale.getvalue(),
                "handlers": len(handlers)}
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
        sys_.stdout, sys_.stderr, sys_.__stdout__, sys_.__stderr__ = saved[2:]


LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@check("configure_logging sends records at or above the level to stderr, once each, with level and logger", points=2,
       hint="Give the root logger exactly one handler, a StreamHandler on sys.stderr (replace the list, do not "
            "append: a second call must not double every line, and an old handler must stop), set the root's level, "
            "and format lines with the level name and the logger's name.")
async def test_logging_to_stderr(target: Target) -> None:
    main = target.module("__main__")
    rng = random.Random()
    for level in ("INFO", "ERROR"):   # one below the logging module's default (WARNING), one above it
        names = [f"research_desk.{_word(rng)}", f"{_word(rng)}.client"]
        records = [(names[i % 2], lvl, f"{lvl.lower()}-{_word(rng, 8, 12)}") for i, lvl in enumerate(LEVELS)]
        seen = _logging_probe(target, main, level, records)
        assert not seen["error"], f"configure_logging({level!r}) raised {seen['error']}"
        assert not seen["stdout"], (
            f"logging wrote to stdout ({seen['stdout'].strip()[:120]!r}): on stdio that is the protocol stream")
        lines = seen["stderr"].splitlines()
        for name, record_level, message in records:
            shown = [line for line in lines if message in line]
            if LEVELS.index(record_level) < LEVELS.index(level):
                assert not shown, (f"after configure_logging({level!r}), a {record_level} record still reached "
                                   f"stderr: {shown[0][:160]!r}")
                continue
            assert shown, (f"after configure_logging({level!r}), a {record_level} record from logger {name!r} never "
                           f"reached stderr: records at or above the level must be shown (set the root's level)")
            assert len(shown) == 1, (
                f"after configure_logging was called twice, one {record_level} record appeared {len(shown)} times: "
                f"each call added a handler instead of replacing them (the root logger has {seen['handlers']} "
                f"handlers)")
            assert record_level in shown[0] and name in shown[0], (
                f"a log line should show the level and the logger's name; got {shown[0][:160]!r}")
        assert not seen["stale"], (
            "a handler that was on the root logger before configure_logging still received records: replace the "
            "root logger's handlers, do not add one beside them")


@check("on stdio, stdout carries only protocol messages and logs go to stderr", points=3,
       hint="stdout is the JSON-RPC stream: one print() (at import, or before serving) is a line the client cannot "
            "parse, and hosts may drop the connection. Log with the logging module to stderr instead.")
async def test_stdout_is_protocol_only(target: Target, workspace: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, names = workspace
    rng = random.Random()
    args = ["--root", str(root)]                           # a flag ...
    env = target.env({"RESEARCH_DESK_LOG_LEVEL": "info"})  # ... and a variable, as a host config sets both
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize",
         "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": {"name": f"probe-{_word(rng)}", "version": "1.0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_documents", "arguments": {}}},
    ]
    out, err = bytearray(), bytearray()
    process = await anyio.open_process(target.command([sys.executable, "-m", target.package, *args]), env=env,
                                       cwd=str(tmp_path))
    try:
        async def drain(stream: Any, into: bytearray) -> None:
            async for chunk in stream:
                into.extend(chunk)

        async def send(message: dict[str, Any]) -> None:
            assert process.stdin is not None
            try:
                await process.stdin.send(json.dumps(message).encode() + b"\n")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError):
                pass  # the server already exited: reported below with its stderr

        async def until(marker: bytes, seconds: float) -> None:
            with anyio.move_on_after(seconds):
                while marker not in out.replace(b" ", b"") and process.returncode is None:
                    await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, process.stdout, out)
            tg.start_soon(drain, process.stderr, err)
            await send(requests[0])
            await until(b'"id":1', 12)
            for message in requests[1:]:
                await send(message)
            await until(b'"id":2', 5)
            assert process.stdin is not None
            await process.stdin.aclose()  # end of input: a stdio server shuts down
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    lines = [line for line in out.decode(errors="replace").splitlines() if line.strip()]
    junk = []
    for line in lines:
        try:
            ok = json.loads(line).get("jsonrpc") == "2.0"
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            junk.append(line)
    stderr = err.decode(errors="replace")
    assert not junk, (
        f"the server wrote {junk[0][:80]!r} to stdout. On stdio, stdout carries JSON-RPC messages only: the client "
        f"tries to parse that line as a message and fails (many hosts then drop the server). Use logging, which "
        f"writes to stderr, and never print().")
    replies = {m.get("id"): m for m in map(json.loads, lines)}
    assert 1 in replies, (f"the server never answered initialize over stdio (exit code {process.returncode})"
                          f"{_stderr_tail(stderr)}")
    assert 2 in replies and "result" in replies[2], f"tools/call list_documents got no result{_stderr_tail(stderr)}"
    result = replies[2]["result"]
    assert (result.get("structuredContent") or {}).get("result") == names, (
        f"list_documents over stdio returned {result.get('structuredContent')}, expected {names}")
    assert str(root) in stderr or "research-desk" in stderr.lower() or "INFO" in stderr, (
        "at log level INFO the server logged nothing to stderr: log one line saying what it serves (with the logging "
        "module, configured to write to stderr)")




@check("--transport http serves Streamable HTTP on the configured host and port", points=2,
       hint="For http, run the server with transport='streamable-http' and pass host and port from the settings; "
            "the endpoint is /mcp. The same settings may come from RESEARCH_DESK_* variables.")
async def test_http_transport(target: Target, workspace: tuple[Path, list[str]], tmp_path: Path) -> None:
    from mcp import Client

    root, names = workspace
    port, elsewhere = free_port(), free_port()
    # Settings from both places a host passes them: the transport and the roots in variables, the address in
    # flags, and a variable naming another port, which the flag overrides.
    args = ["--port", str(port), "--host", "127.0.0.1"]
    extra = {"RESEARCH_DESK_TRANSPORT": "http", "RESEARCH_DESK_ROOTS": str(root), "RESEARCH_DESK_PORT": str(elsewhere)}
    errlog = _errlog(tmp_path)
    process = subprocess.Popen(target.command([sys.executable, "-m", target.package, *args]), cwd=tmp_path,
                               env=target.env(extra), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog)
    try:
        deadline = time.monotonic() + 12
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited (code {process.returncode}) instead of serving HTTP on port {port} "
                            f"(--port {port}, RESEARCH_DESK_TRANSPORT=http){_tail(errlog)}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"nothing listened on 127.0.0.1:{port} after 12 s, although `--port {port}` was given "
                                f"(and RESEARCH_DESK_PORT={elsewhere}, which the flag overrides; "
                                f"RESEARCH_DESK_TRANSPORT=http){_tail(errlog)}")
                await anyio.sleep(0.1)
        for mode, protocol in MODES.items():
            with anyio.fail_after(10):
                async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
                    listed = await client.call_tool("list_documents", {})
                    era = client.protocol_version
            assert era == protocol, f"[{mode}] expected protocol {protocol} over HTTP, got {era}"
            assert (listed.structured_content or {}).get("result") == names, (
                f"[{mode}] list_documents over HTTP returned {listed.structured_content}, expected {names}")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        errlog.close()


@check("a bad setting stops the command with exit code 2 and one clear line on stderr", points=2,
       hint="Validate every setting before serving; report a problem the argparse way (parser.error: usage plus "
            "one line on stderr, exit code 2) and name the flag or variable to fix. Nothing on stdout.")
async def test_bad_settings_exit_2(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    missing = tmp_path / f"no-such-folder-{rng.randint(1000, 9999)}"
    bad_port = _word(rng)
    cases = [(["--root", str(missing)], {}, str(missing)),
             ([], {"RESEARCH_DESK_ROOTS": str(missing)}, str(missing)),
             (["--root", str(tmp_path)], {"RESEARCH_DESK_PORT": bad_port}, "RESEARCH_DESK_PORT"),
             (["--root", str(tmp_path), "--transport", "carrier-pigeon"], {}, "--transport")]
    for args, env, named in cases:
        done = _module(target, *args, env=env, cwd=tmp_path, timeout=10)
        shown = " ".join(args + [f"{k}={v}" for k, v in env.items()])
        assert done.returncode == 2, (
            f"`research-desk {shown}` should stop with exit code 2 (a usage error), it exited with {done.returncode}"
            f"{': ' + _last_line(done.stderr) if done.stderr.strip() else ''}")
        assert not done.stdout.strip(), f"`research-desk {shown}` wrote to stdout: {done.stdout.strip()[:80]!r}"
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        assert named in last, (
            f"`research-desk {shown}`: the last line on stderr should name {named!r} so the user knows what to fix; "
            f"got {last[:200]!r}")
        assert "Traceback" not in done.stderr, f"`research-desk {shown}` crashed with a traceback instead of a clear line"
