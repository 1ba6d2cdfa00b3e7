"""`course solution`: the reference code only after the lesson passed (exit 1 before), never in a student edition."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from checker.starter import reference_text
from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env


def course(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COURSE_SCRIPT, *args], capture_output=True, text=True, cwd=root, env=course_env(root),
                          timeout=60)


def _passed(root: Path, lesson: str) -> None:
    (root / ".course").mkdir(exist_ok=True)
    record = {lesson: {"status": "in progress", "passed_once": True}}
    (root / ".course" / "progress.json").write_text(json.dumps(record))


def test_refused_kindly_before_the_lesson_passes(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    proc = course(root, "solution", "1")
    assert proc.returncode == 1
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "course check 1" in proc.stderr
    assert "BEGIN SOLUTION" not in proc.stdout + proc.stderr


def test_shown_once_passed_even_after_a_later_regression(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    _passed(root, "lesson-1")
    proc = course(root, "solution", "lesson-1")
    assert proc.returncode == 0, proc.stderr
    reference = (COURSE.solutions / COURSE.package / "context.py").read_text()
    assert reference_text(reference) in proc.stdout
    assert "open_desk" in proc.stdout and "yield" in proc.stdout
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "# STUB", "raise NotImplementedError"):
        assert marker not in proc.stdout, f"authoring marker {marker!r} shown to the student"


def test_a_student_edition_has_no_solutions_to_show(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    shutil.rmtree(root / "solutions")
    _passed(root, "lesson-1")
    proc = course(root, "solution", "1")
    assert proc.returncode == 2 and "student edition" in proc.stderr and proc.stderr.count("\n") == 1


def test_unknown_lesson_and_quiz_are_bad_usage(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    assert course(root, "solution", "99").returncode == 2
    quiz = next(l for l in COURSE.lessons if l.kind == "quiz")
    proc = course(root, "solution", quiz.id)
    assert proc.returncode == 2 and "no code solution" in proc.stderr
