"""Every server, replica, nginx and Redis process a check starts is gone when the lesson ends,
whether its checks passed or failed (issue: lessons 5–6).

Only this test's own processes count, whatever else runs on the machine (another checkout, another
grader): the test makes itself the subreaper of everything it starts, so a process that escapes
its parent by daemonising still ends up below the test, where it is looked for afterwards."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from checker.runner.lesson import run_lesson
from checker.runner.warm import descendants
from tests.conftest import COURSE, pristine_starter

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

# lesson06_zygote: lesson 6's zygote, and the replicas it forks (which keep its command line)
SERVICE_WORDS = ("nginx", "redis-server", "uvicorn", "research_desk", "lesson06_zygote")
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[None]:
    """While the test runs, orphans of its descendants are re-parented to it, not to init."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def _service_processes() -> set[tuple[int, str]]:
    """This test's descendants that serve traffic (zombies have ended: only their reaping is due)."""
    found = set()
    for pid in descendants(os.getpid()):
        entry = Path(f"/proc/{pid}")
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline and any(word in cmdline for word in SERVICE_WORDS) and "pytest" not in cmdline:
            found.add((pid, cmdline.strip()[:160]))
    return found


@pytest.mark.parametrize("lesson_id", ["lesson-5", "lesson-6", "lesson-9"])
@pytest.mark.parametrize("against", ["starter", "solutions"])
def test_no_process_outlives_its_lesson(lesson_id: str, against: str, subreaper: None) -> None:
    lesson = COURSE.lesson(lesson_id)
    if not lesson.available:
        pytest.skip(f"{lesson_id} is not built yet")
    before = _service_processes()
    result = run_lesson(COURSE, lesson, str(pristine_starter()) if against == "starter" else against)
    assert not result.error, result.error
    left = sorted(_service_processes() - before)
    assert not left, f"{lesson_id} on the {against} left processes running: {left}"
