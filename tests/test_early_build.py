"""A self-check of a lesson that builds the student's project starts that build early, while its
worker is still importing, and the checks use that one build: nothing is built twice, nothing of
it outlives the run (`checker.runner.start`, `checker.checks.support.lesson08_build`).

Each test puts a `uv` first on PATH that notes every `uv build` in a log, then runs the real uv.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from checker.host.programs import find_program
from checker.runner.lesson import run_lesson
from tests.conftest import COURSE, process_alive

UV = find_program("uv")
pytestmark = pytest.mark.skipif(UV is None or os.name != "posix", reason="needs uv, and fork (Linux or macOS)")
LESSON = COURSE.lesson("lesson-8")


def _uv_that_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    log = tmp_path / "uv.log"
    (folder / "real-uv").symlink_to(UV)  # named beside it, so the wrapper reads like no version manager's shim
    wrapper = folder / "uv"
    wrapper.write_text(f'#!/bin/sh\n[ "$1" = build ] && echo "$$" >> {log}\nexec "$(dirname "$0")/real-uv" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return log


def _early_folders() -> set[str]:
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("course-builds-")}


def test_the_checks_use_the_build_started_early(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _uv_that_logs(tmp_path, monkeypatch)
    before = _early_folders()
    result = run_lesson(COURSE, LESSON, "solutions")
    assert not result.error, result.error
    assert all(check.outcome == "passed" for check in result.checks), [c.message for c in result.checks]
    assert len(log.read_text().split()) == 1, "one build for the whole run, however many checks need it"
    assert _early_folders() == before, "the early build's folder is removed with the run"


def test_an_early_build_no_check_waits_for_is_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _uv_that_logs(tmp_path, monkeypatch)
    before = _early_folders()
    result = run_lesson(COURSE, LESSON, "solutions", select=["mcp_upper_bound"])  # needs no build
    assert [check.outcome for check in result.checks] == ["passed"]
    builders = [int(pid) for pid in log.read_text().split()] if log.exists() else []
    assert not any(process_alive(pid) for pid in builders), "an unfinished build ends with the run"
    assert _early_folders() == before
