"""Every server, replica, nginx and Redis process a check starts is gone when the lesson ends,
whether its checks passed or failed (issue: lessons 5–6). Traffic-serving processes are found
by their command lines in /proc, before and after running the lessons that start them."""

from __future__ import annotations

from pathlib import Path

import pytest

from checker.runner.lesson import run_lesson
from tests.conftest import COURSE, pristine_starter

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

SERVICE_WORDS = ("nginx", "redis-server", "uvicorn", "research_desk")


def _service_processes() -> set[tuple[int, str]]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if any(word in cmdline for word in SERVICE_WORDS) and "pytest" not in cmdline:
            found.add((int(entry.name), cmdline.strip()[:160]))
    return found


@pytest.mark.parametrize("lesson_id", ["lesson-5", "lesson-6", "lesson-9"])
@pytest.mark.parametrize("against", ["starter", "solutions"])
def test_no_process_outlives_its_lesson(lesson_id: str, against: str) -> None:
    lesson = COURSE.lesson(lesson_id)
    if not lesson.available:
        pytest.skip(f"{lesson_id} is not built yet")
    before = _service_processes()
    result = run_lesson(COURSE, lesson, str(pristine_starter()) if against == "starter" else against)
    assert not result.error, result.error
    left = sorted(_service_processes() - before)
    assert not left, f"{lesson_id} on the {against} left processes running: {left}"
