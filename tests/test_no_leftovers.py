"""Every server, replica, nginx and Redis process a check starts is gone when the lesson ends,
whether its checks passed or failed (issue: lessons 5–6).

Only this test's own processes count, whatever else runs on the machine (another checkout, another
grader): the test makes itself the subreaper of everything it starts, so a process that escapes
its parent by daemonising still ends up below the test, where it is looked for afterwards."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from checker.runner.lesson import run_lesson
from checker.runner.warm import descendants
from tests.conftest import COURSE, pristine_starter

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

SERVICE_WORDS = ("nginx", "redis-server", "uvicorn", "research_desk")
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


@pytest.fixture
def unrelated_uvicorn() -> Iterator[int]:
    """A process named like a server that this test did not start: daemonised before the test becomes
    a subreaper, so it belongs to the machine (another checkout, another grader), not to us."""
    launcher = ("import subprocess, sys\n"
                "argv = [sys.executable, '-c', 'import time; time.sleep(120)', 'uvicorn', 'other:app']\n"
                "child = subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL,"
                " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
                "print(child.pid)\n")
    pid = int(subprocess.run([sys.executable, "-c", launcher], capture_output=True, text=True, check=True).stdout)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_an_unrelated_server_on_the_machine_is_not_a_leftover(unrelated_uvicorn: int, subreaper: None) -> None:
    lesson = COURSE.lesson("lesson-5")
    result = run_lesson(COURSE, lesson, "solutions")
    assert not result.error, result.error
    assert Path(f"/proc/{unrelated_uvicorn}").exists(), "the unrelated server should still run"
    assert not _service_processes(), f"left running: {_service_processes()}"
