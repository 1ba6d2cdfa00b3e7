"""The `course` command as a student meets it: exit codes, one-line errors, JSON, hints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import COURSE, pristine_starter


def course(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COURSE_ROOT=str(COURSE.root), COLUMNS="120")
    return subprocess.run([sys.executable, "-m", "checker.cli.app", *args], capture_output=True, text=True,
                          cwd=cwd or COURSE.root, env=env, timeout=300)


def test_list_shows_every_lesson_and_what_is_coming() -> None:
    proc = course("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)["lessons"]
    assert [r["id"] for r in rows] == [f"lesson-{n}" for n in range(1, 11)]
    for row, lesson in zip(rows, COURSE.lessons):
        assert (row["status"] == "coming soon") == (not lesson.available)


def test_bare_course_prints_the_table() -> None:
    proc = course()
    assert proc.returncode == 0, proc.stderr
    first, last = COURSE.lessons[0], COURSE.lessons[-1]
    assert first.title in proc.stdout and last.title in proc.stdout and f"course open {first.number}" in proc.stdout


@pytest.mark.parametrize("ref", ["lesson-99", "99", "banana", "lesson-"])
def test_unknown_lesson_is_one_line_and_exit_2(ref: str) -> None:
    proc = course("check", ref)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "unknown lesson" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_package_is_bad_usage(tmp_path: Path) -> None:
    proc = course("check", "1", "--against", str(tmp_path))
    assert proc.returncode == 2 and "no research_desk package" in proc.stderr


def test_unknown_check_id_is_bad_usage() -> None:
    proc = course("check", "1", "--only", "no_such_check")
    assert proc.returncode == 2 and "no check 'no_such_check'" in proc.stderr


@pytest.mark.parametrize("ref", ["lesson-1", "1", "01"])
def test_lesson_ids_students_type_all_work(ref: str) -> None:
    assert COURSE.lesson(ref).id == "lesson-1"


def test_hint_for_one_check_and_for_an_unknown_one() -> None:
    proc = course("hint", "1", "index_matches_workspace")
    assert proc.returncode == 0 and "scan_documents" in proc.stdout
    assert course("hint", "1", "nope").returncode == 2


def test_check_on_solutions_exits_0_with_json() -> None:
    proc = course("check", "lesson-1", "--against", "solutions", "--json")
    assert proc.returncode == 0, proc.stdout[-2000:]
    data = json.loads(proc.stdout)
    assert data["ok"] and data["failed"] == 0 and data["passed"] == len(data["checks"]) >= 6


def test_check_on_starter_exits_1_and_explains_each_failure() -> None:
    proc = course("check", "lesson-1", "--against", str(pristine_starter()))
    assert proc.returncode == 1
    assert proc.stdout.count("✗") >= 6 and "hint:" in proc.stdout and "0 passed" in proc.stdout


def test_uv_run_prints_no_bytecode_compilation_each_time() -> None:
    """`compile-bytecode` in [tool.uv] makes every `uv run` recompile the environment and say so
    (astral-sh/uv#12202); compiling once at install (.ci/run, Dockerfile) is enough."""
    import shutil
    import tomllib

    settings = tomllib.loads((COURSE.root / "pyproject.toml").read_text()).get("tool", {}).get("uv", {})
    assert "compile-bytecode" not in settings
    assert "--compile-bytecode" in (COURSE.root / ".ci" / "run").read_text()
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    env = {k: v for k, v in os.environ.items() if k not in ("UV_COMPILE_BYTECODE", "VIRTUAL_ENV")}
    for _ in range(2):  # the first may still install something; the second must be quiet
        proc = subprocess.run([uv, "run", "--frozen", "python", "-c", "pass"], cwd=COURSE.root, env=env,
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "Bytecode compiled" not in proc.stderr, proc.stderr
