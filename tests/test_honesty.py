"""The honesty invariant (DESIGN.md decision 5): every graded check fails on the starter and
passes on the reference solutions. A check that passes on the starter cannot tell a student
anything; one that fails on the solutions is wrong."""

from __future__ import annotations

import shutil

import pytest

from checker.runner.catalog import lesson_catalog
from checker.grading.batch import grade_all, sandbox_check
from checker.grading.submissions import discover
from checker.runner.results import LessonResult
from tests.conftest import CODE_LESSONS, COURSE, lesson_run, pristine_project

ids = [lesson.id for lesson in CODE_LESSONS]


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=ids)
def test_every_check_fails_on_the_starter(lesson) -> None:
    result = lesson_run(lesson, "starter")
    assert not result.error, result.error
    passing = [c.id for c in result.checks if c.outcome == "passed"]
    assert not passing, f"{lesson.id}: these checks pass on the untouched starter, so they prove nothing: {passing}"
    skipped = [c.id for c in result.checks if c.outcome == "skipped"]
    if skipped:
        pytest.skip(f"{lesson.id}: not proven to fail, service missing for {skipped}")


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=ids)
def test_every_check_passes_on_the_solutions(lesson) -> None:
    result = lesson_run(lesson, "solutions")
    assert not result.error, result.error
    failing = {c.id: c.message for c in result.checks if c.outcome == "failed"}
    assert not failing, f"{lesson.id}: the reference solution fails {failing}"
    skipped = [c.id for c in result.checks if c.outcome == "skipped"]
    if skipped:
        pytest.skip(f"{lesson.id}: skipped (service missing), so not proven: {skipped}")


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=ids)
def test_every_lesson_has_enough_distinct_checks_with_hints(lesson) -> None:
    checks = lesson_catalog(COURSE, lesson)
    assert len(checks) >= 6, f"{lesson.id} has only {len(checks)} checks"
    assert len({c.id for c in checks}) == len(checks), f"{lesson.id} has duplicate check ids"
    assert all(c.hint for c in checks), f"{lesson.id}: every check needs a hint"


ISOLATED = CODE_LESSONS  # `course grade` runs every code lesson's student code in a sandboxed host


@pytest.fixture(scope="module")
def isolated_grades(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, LessonResult]]:
    """`course grade`'s isolated runs (student code in a host process) of the starter and the solutions."""
    root = tmp_path_factory.mktemp("editions")
    # The whole project, as a student submits it: pyproject.toml, deploy files.
    for name, project in (("starter", pristine_project()), ("solutions", COURSE.solutions.parent)):
        shutil.copytree(project, root / name / "capstone", ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    checked = sandbox_check(COURSE, ISOLATED)
    if checked.refusal:
        pytest.skip(f"no sandbox for `course grade` on this machine: {checked.refusal}")
    results = grade_all(COURSE, discover(root), ISOLATED, jobs=2, hidden=True, checked=checked)
    return {r.id: {lesson.lesson: lesson for lesson in r.lessons} for r in results}


@pytest.mark.full
@pytest.mark.parametrize("lesson", ISOLATED, ids=[lesson.id for lesson in ISOLATED])
def test_isolated_grading_is_honest_too(lesson, isolated_grades) -> None:
    """The same checks, reading student code through a host process, still tell the editions apart."""
    solved, starter = isolated_grades["solutions"][lesson.id], isolated_grades["starter"][lesson.id]
    assert not solved.error and not starter.error, solved.error or starter.error
    failing = {c.id: c.message for c in solved.checks if c.outcome != "passed"}
    assert not failing, f"{lesson.id}, graded isolated: the reference solution does not pass {failing}"
    passing = [c.id for c in starter.checks if c.outcome == "passed"]
    assert not passing, f"{lesson.id}, graded isolated: these pass on the starter: {passing}"
    assert len(solved.checks) == len(lesson_run(lesson, "solutions").checks)
