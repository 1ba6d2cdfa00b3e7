"""`course next`: the first lesson not passed, its notebook, and the failing check with its hint."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from checker.runner.catalog import lesson_catalog
from tests.conftest import CODE_LESSONS, COURSE
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env


def course(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COURSE_SCRIPT, *args], capture_output=True, text=True, cwd=root, env=course_env(root),
                          timeout=60)


def _progress(root: Path, records: dict[str, dict[str, object]]) -> None:
    (root / ".course").mkdir(exist_ok=True)
    (root / ".course" / "progress.json").write_text(json.dumps(records))


def test_a_new_student_is_sent_to_the_first_notebook(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    proc = course(root, "next")
    first = CODE_LESSONS[0]
    assert proc.returncode == 0 and first.id in proc.stdout and first.notebook in proc.stdout
    assert "not started" in proc.stdout and f"course open {first.number}" in proc.stdout


def test_in_progress_names_the_failing_check_and_its_hint(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    first, second = CODE_LESSONS[0], CODE_LESSONS[1]
    failing = lesson_catalog(COURSE, second)[1]
    _progress(root, {first.id: {"status": "passed", "passed_once": True},
                     second.id: {"status": "in progress", "failing": [failing.id]}})
    data = json.loads(course(root, "next", "--json").stdout)
    assert data["lesson"] == second.id and data["failing"] == failing.id and data["hint"] == failing.hint
    text = course(root, "next").stdout
    assert failing.title in text and failing.hint[:40] in text and f"course check {second.number}" in text


def test_everything_passed(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    _progress(root, {l.id: {"status": "passed", "passed_once": True} for l in COURSE.lessons if l.available})
    proc = course(root, "next", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["lesson"] is None
    assert "Every available lesson passes" in course(root, "next").stdout


def test_a_broken_progress_file_is_recovered_from_its_backup(tmp_path: Path) -> None:
    """Passed lessons are not forgotten when progress.json is damaged, and the damaged file is kept."""
    from checker.registry import load_course
    from checker.runner.results import CheckResult, LessonResult
    from checker.student.progress import BACKUP, FILE, load_progress, record

    root = copy_course(tmp_path / "course")
    state = load_course(root).state_dir
    first = CODE_LESSONS[0]
    passed = LessonResult(first.id, first.title, "starter", checks=[CheckResult("a", "a", 1, "passed")])
    record(state, passed)
    assert load_progress(state)[first.id]["status"] == "passed"
    (state / FILE).write_text('{"lesson-1": {"status": "pass')  # an editor crash, a full disk
    assert load_progress(state)[first.id]["passed_once"], "the backup still knows"
    shown = course(root, "next")
    assert shown.returncode == 0 and CODE_LESSONS[1].id in shown.stdout, "lesson 1 still counts as passed"
    assert "could not be read" in shown.stderr and BACKUP in shown.stderr

    record(state, LessonResult(CODE_LESSONS[1].id, "t", "starter", checks=[CheckResult("b", "b", 1, "failed")]))
    kept = list(state.glob("progress.broken-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == '{"lesson-1": {"status": "pass'
    assert set(load_progress(state)) == {first.id, CODE_LESSONS[1].id}
    assert course(root, "next").stderr == "", "repaired: nothing more to say"

