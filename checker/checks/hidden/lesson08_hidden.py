"""Lesson 8, instructor-only checks: the visible checks' settings and logging rules, with other inputs.

Left out of the student release and run by `course grade`. Each re-tests a requirement a visible
check already enforces (the port range, roots that are folders with unusual names, logging that
replaces its handlers) with values the student never saw. They call `load_settings` and
`configure_logging` directly (no build, no subprocess), so they take well under a second.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from checker.checks.kit.text import word
from checker.checks.support.lesson08_process import LEVELS, command_line, logging_probe, settings_outcome
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check(
    "ports 1 and 65535 are accepted, 0 and above 65535 refused, from a flag or a variable",
    points=1,
    hint="A TCP port is a number from 1 to 65535. Check the range after you know the port, wherever it came "
    "from (flag or RESEARCH_DESK_PORT), and refuse the rest with parser.error (exit code 2).",
)
async def test_port_range_boundaries(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    root = ["--root", str(tmp_path)]
    good = [1, 65535, rng.randint(2, 65534)]
    bad = [0, 65536, rng.randint(65537, 999999)]
    for port in good:
        for argv, env in ((root + ["--port", str(port)], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = settings_outcome(main, argv, env, advice="")
            assert code is None, (
                f"`{command_line(argv, env)}` exited with code {code}, but {port} is a valid port (1-65535 are)"
            )
            assert settings.port == port, f"`{command_line(argv, env)}` gave port {settings.port!r}, expected {port}"
    for port in bad:
        for argv, env in ((root + ["--port", str(port)], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = settings_outcome(main, argv, env, advice="")
            assert code == 2, (
                f"`{command_line(argv, env)}` was accepted (port {getattr(settings, 'port', None)!r}): {port} is not a "
                f"TCP port (1-65535), so it should be refused with exit code 2"
                if code is None
                else f"`{command_line(argv, env)}` exited with code {code}; a bad port is a usage error, exit code 2"
            )
    negative = -rng.randint(1, 9999)
    argv = root + [f"--port={negative}"]
    settings, code = settings_outcome(main, argv, {}, advice="")
    assert code == 2, (
        f"`{command_line(argv, {})}` should be refused with exit code 2, "
        f"got {'acceptance' if code is None else f'exit code {code}'}"
    )


@check(
    "roots keep unusual folder names intact, and a file is not a root",
    points=1,
    hint="RESEARCH_DESK_ROOTS is split on os.pathsep only (folder names may hold spaces, commas, non-ASCII "
    "letters). A root must be a folder: a path that exists but is a file is a bad setting too.",
)
async def test_roots_names_and_files(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    picked = [rng.choice(["q&a, drafts", "semi;colon", "a,b;c"])]
    picked += rng.sample(["my notes", "café", "研究 data", "Ünïcode name", "two  spaces"], k=rng.randint(1, 3))
    rng.shuffle(picked)
    folders = [tmp_path / f"{stem} {rng.randint(1, 99)}" for stem in picked]
    for folder in folders:
        folder.mkdir()
    env = {"RESEARCH_DESK_ROOTS": os.pathsep.join(str(f) for f in folders)}
    settings, code = settings_outcome(main, [], env, advice="")
    assert code is None, (
        f"RESEARCH_DESK_ROOTS naming {len(folders)} existing folders {[f.name for f in folders]} (joined with "
        f"{os.pathsep!r}) was refused with exit code {code}: split the variable on os.pathsep only"
    )
    got = [Path(r) for r in settings.roots]
    assert got == folders, (
        f"RESEARCH_DESK_ROOTS held {len(folders)} folders {[f.name for f in folders]} joined with {os.pathsep!r}; "
        f"the roots came out as {[str(r) for r in settings.roots]} (split on os.pathsep, nothing else)"
    )
    afile = rng.choice(folders) / f"{word(rng, 4, 8)}.md"
    afile.write_text("# a document, not a folder\n")
    for argv, bad_env in (
        (["--root", str(afile)], {}),
        ([], {"RESEARCH_DESK_ROOTS": str(afile)}),
        ([], {"RESEARCH_DESK_ROOTS": os.pathsep.join([str(folders[0]), str(afile)])}),
    ):
        settings, code = settings_outcome(main, argv, bad_env, advice="")
        assert code == 2, (
            f"{afile.name} exists but is a file, not a folder, so it cannot be a root: expected exit code 2, got "
            f"{'acceptance' if code is None else f'exit code {code}'} for `{command_line(argv, bad_env)}` "
            f"(does your check only ask whether the path exists?)"
        )


@check(
    "configure_logging replaces old handlers, and calling it twice logs each record once",
    points=1,
    hint="Set the root logger's handlers to exactly one stderr handler (replace the list, do not append), so "
    "a stale handler writing elsewhere stops, and a second call does not double every line.",
)
async def test_logging_replaces_handlers(target: Target) -> None:
    main = target.module("__main__")
    rng = random.Random()
    level = rng.choice(LEVELS[:-1])
    names = [f"research_desk.{word(rng, 4, 8)}", f"{word(rng, 4, 8)}.{word(rng, 4, 8)}"]
    records = [
        [rng.choice(names), record_level, f"{record_level.lower()}-{word(rng, 8, 12)}-{rng.randint(100, 999)}"]
        for record_level in rng.sample(LEVELS, k=len(LEVELS))
    ]
    seen = logging_probe(target, main, level, records)
    assert not seen["error"], f"configure_logging({level!r}) raised {seen['error']}"
    assert not seen["stdout"], (
        f"logging wrote to stdout ({seen['stdout'].strip()[:120]!r}): on stdio that is the protocol stream"
    )
    assert not seen["stale"], (
        "a handler that was on the root logger before configure_logging still received records: configure_logging "
        "should replace the root's handlers, not add one beside them"
    )
    lines = seen["stderr"].splitlines()
    threshold = LEVELS.index(level)
    for name, record_level, message in records:
        shown = [line for line in lines if message in line]
        if LEVELS.index(record_level) < threshold:
            assert not shown, f"at level {level}, a {record_level} record still reached stderr: {shown[0][:160]!r}"
            continue
        assert shown, (
            f"at level {level}, a {record_level} record from logger {name!r} never reached stderr "
            f"(stderr held {len(lines)} lines): records at or above the level must be shown"
        )
        assert len(shown) == 1, (
            f"after configure_logging was called twice, one {record_level} record appeared {len(shown)} times on "
            f"stderr: each call added a handler instead of replacing them (root has {seen['handlers']} handlers)"
        )
        assert record_level in shown[0] and name in shown[0], (
            f"a log line should show the level and the logger's name; got {shown[0][:160]!r} for a record "
            f"at {record_level} from {name!r}"
        )
