"""The honesty invariant (DESIGN.md decision 5): every graded check fails on the starter and
passes on the reference solutions. A check that passes on the starter cannot tell a student
anything; one that fails on the solutions is wrong."""

from __future__ import annotations

import pytest

from checker.catalog import read_catalog
from tests.conftest import CODE_LESSONS, COURSE, lesson_run

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
def test_registry_points_match_the_checks(lesson) -> None:
    checks = read_catalog(COURSE.checks_file(lesson))
    assert len(checks) >= 6, f"{lesson.id} has only {len(checks)} checks"
    assert len({c.id for c in checks}) == len(checks), f"{lesson.id} has duplicate check ids"
    assert sum(c.points for c in checks) == lesson.points, (
        f"course.toml says {lesson.id} is worth {lesson.points} points, its checks add up to {sum(c.points for c in checks)}")
    assert all(c.hint for c in checks), f"{lesson.id}: every check needs a hint"
