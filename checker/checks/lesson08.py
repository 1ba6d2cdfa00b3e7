"""Lesson 8 checks: the desk as a distribution someone else installs and a host starts.

These are the packaging checks: they build the student's project once per run, from a copy with a
few stray files planted in it, and install the wheel into a fresh virtual environment (`build` in
support/lesson08.py says how, and why it is safe). The command's settings, logging and transports
are checked in lesson08_command.py.
"""

from __future__ import annotations

import random
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import anyio
import pytest

from checker.checks.kit.eras import MODES
from checker.checks.kit.processes import log_file
from checker.checks.support.lesson08 import (
    SCRIPT,
    archive,
    build,
    edition_version,
    mcp_requirement,
    plain_env,
    project_folder,
)
from checker.checks.support.lesson08 import workspace as workspace  # the fixture, for pytest
from checker.checks.support.lesson08_process import (
    log_tail,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

ENTRY = "research_desk.__main__:main"



@check(
    "uv build makes a wheel and an sdist, and the sdist ships only the project",
    points=2,
    hint="`uv build` packs everything in the project folder into the sdist unless you say otherwise: tell "
    "hatchling what belongs there ([tool.hatch.build.targets.sdist]), so a .env or a notebook never ships.",
)
async def test_builds_wheel_and_sdist(target: Target, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = build(target, tmp_path_factory).require()
    assert built.wheel and built.sdist
    version = edition_version(target)
    assert built.wheel.name == f"research_desk-{version}-py3-none-any.whl", (
        f"the wheel is {built.wheel.name}; expected research_desk-{version}-py3-none-any.whl (the distribution "
        f"is research-desk and its version should match research_desk.__version__ = {version!r})"
    )
    try:
        with tarfile.open(fileobj=archive(target, built.sdist)) as sdist:
            names = [name.split("/", 1)[1] for name in sdist.getnames() if "/" in name]
    except tarfile.TarError as exc:
        pytest.fail(f"the sdist {built.sdist.name} is not a readable tar.gz archive: {exc}")
    for needed in ("pyproject.toml", "src/research_desk/__init__.py", "src/research_desk/__main__.py"):
        assert needed in names, f"the sdist lacks {needed}: a wheel built from it would be incomplete"
    shipped = [
        n
        for n in names
        if n in built.strays or n.rsplit("/", 1)[-1] == ".env" or n.endswith((".pyc", ".ipynb")) or "__pycache__" in n
    ]
    assert not shipped, (
        f"the sdist ships {shipped}: files that merely sit in your project folder (we put them there, as your "
        f"real folder may have a .env with keys in it). Publish only src/, pyproject.toml and docs"
    )


@check(
    "the wheel holds the package and its console script, and nothing stray",
    points=2,
    hint="[project.scripts] maps a command name to `package.module:function`; the wheel's "
    "entry_points.txt is where installers read it. Only the package and its .dist-info belong in a wheel.",
)
async def test_wheel_contents(target: Target, tmp_path_factory: pytest.TempPathFactory) -> None:
    built = build(target, tmp_path_factory).require()
    assert built.wheel
    try:
        with zipfile.ZipFile(archive(target, built.wheel)) as wheel:
            names = wheel.namelist()
            points = next((wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    except (zipfile.BadZipFile, UnicodeDecodeError) as exc:
        pytest.fail(f"the wheel {built.wheel.name} is not a readable zip archive: {exc}")
    sources = sorted(
        p.relative_to(target.edition).as_posix()
        for p in (target.edition / target.package).rglob("*.py")
        if "__pycache__" not in p.parts
    )
    missing = [s for s in sources if s not in names]
    assert not missing, f"the wheel lacks {missing}: an installed desk would fail to import them"
    stray = [
        n
        for n in names
        if not (n.startswith(f"{target.package}/") or ".dist-info/" in n)
        or n.endswith((".pyc", ".ipynb", ".env"))
        or "__pycache__" in n
    ]
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
        f"[project.scripts] in pyproject.toml"
    )
    assert scripts[SCRIPT] == ENTRY, f"`{SCRIPT}` should run {ENTRY}, it runs {scripts[SCRIPT]}"


@check(
    "the installed research-desk command serves tools over stdio in both eras",
    points=3,
    hint="Test what users install, not your source tree: the wheel in a fresh environment, started through "
    "its console script, spoken to by a real stdio client. main() must run the server and return.",
)
async def test_installed_command_serves_stdio(
    target: Target, workspace: tuple[Path, list[str]], tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    built = build(target, tmp_path_factory).require()
    assert target.library("os.path").isfile(str(built.command)), (
        f"installing the wheel made no `{SCRIPT}` command: declare it in [project.scripts]"
    )
    root, names = workspace
    version = edition_version(target)
    seen: dict[str, Any] = {}

    async def connect(mode: str) -> None:
        command, *args = target.command([str(built.command), "--root", str(root)])
        params = StdioServerParameters(command=command, args=args, env=plain_env(target), cwd=str(tmp_path))
        with log_file(tmp_path) as err:
            try:
                with anyio.fail_after(16):
                    async with Client(stdio_client(params, errlog=err), mode=mode) as client:
                        tools = [t.name for t in (await client.list_tools()).tools]
                        listed = await client.call_tool("list_documents", {}) if "list_documents" in tools else None
                        seen[mode] = (client.protocol_version, client.server_info, tools, listed)
            except Exception as exc:  # noqa: BLE001 - the student's server died or never answered
                err.flush()
                error: BaseException = exc
                while isinstance(error, BaseExceptionGroup) and error.exceptions:
                    error = error.exceptions[0]
                seen[mode] = f"({type(error).__name__}: {error}){log_tail(err)}"

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
            f"[{mode}] the installed server reports version {getattr(info, 'version', None)!r}, expected {version!r}"
        )


@check(
    "the mcp requirement has an upper bound (and a lower one)",
    points=2,
    hint="An unbounded `mcp>=2.3` lets a future major release install under your users and break the server "
    "(it happened with 1.x -> 2.x). Give the requirement a ceiling below the next major version, and a "
    "floor at the version you tested: `mcp<3` alone would install a 1.x that lacks MCPServer.",
)
async def test_mcp_upper_bound(target: Target) -> None:
    from importlib.metadata import version as installed_version

    from packaging.requirements import Requirement

    spec = mcp_requirement(project_folder(target))
    assert spec, "pyproject.toml does not list `mcp` in [project] dependencies: the server imports it"
    requirement = Requirement(spec)
    current = installed_version("mcp")
    assert requirement.specifier.contains(current, prereleases=True), (
        f"{spec!r} excludes mcp {current}, the version this course runs on"
    )
    rng = random.Random()
    futures = ["3.0.0", f"3.{rng.randint(0, 20)}.{rng.randint(0, 9)}", f"{rng.randint(4, 9)}.0.0"]
    allowed = [v for v in futures if requirement.specifier.contains(v, prereleases=False)]
    assert not allowed, (
        f"{spec!r} would install mcp {allowed[0]}, a future major version that may break the server; add an upper bound"
    )
    pasts = ["1.0.0", f"1.{rng.randint(1, 26)}.{rng.randint(0, 9)}", "0.9.0"]
    older = [v for v in pasts if requirement.specifier.contains(v, prereleases=False)]
    assert not older, (
        f"{spec!r} would install mcp {older[0]}, a 1.x release without the MCPServer API this server imports; "
        f"add a lower bound at the version you tested (2.3)"
    )
