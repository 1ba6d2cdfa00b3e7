"""Shared fixtures for the course's own tests: the registry, and cached lesson runs.

Running a lesson's checks costs seconds, so each (lesson, edition) run happens once per test
session and every test that needs it reads the same result.
"""

from __future__ import annotations

import pytest

from checker.runner.lesson import run_lesson
from checker.registry import Course, Lesson, load_course
from checker.runner.results import LessonResult

COURSE = load_course()
CODE_LESSONS = [lesson for lesson in COURSE.lessons if lesson.available and lesson.kind == "code"]


@pytest.fixture(scope="session")
def course() -> Course:
    return COURSE


_runs: dict[tuple[str, str], LessonResult] = {}


def lesson_run(lesson: Lesson, against: str) -> LessonResult:
    key = (lesson.id, against)
    if key not in _runs:
        _runs[key] = run_lesson(COURSE, lesson, against, hidden=True)
    return _runs[key]
