"""Shared fixtures for the course's own tests: the registry, the pristine starter, cached lesson runs,
and the two suites.

Two suites, one marker (README, "For course developers"):
- `uv run pytest`: the fast suite, what a student or contributor runs (a few minutes on 2 cores);
- `uv run pytest -m full`: every test, the slow ones (marked `full`) included; what CI runs.
Naming test files or node ids runs what they name, slow or not.

Tests never read the student's own `capstone/`: a student who has solved lessons must still pass
the suite. What a test calls "the starter" is the generator's output (`checker.starter`), written
once per session to a temporary folder; `tests/test_starter.py` proves it is what git holds.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from functools import cache
from pathlib import Path

import pytest

from checker.runner.lesson import run_lesson
from checker.registry import Course, Lesson, load_course
from checker.runner.results import LessonResult
from checker.starter import expected_starter

COURSE = load_course()
CODE_LESSONS = [lesson for lesson in COURSE.lessons if lesson.available and lesson.kind == "code"]
FULL = "full"  # the marker of tests that only the full suite runs


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{FULL}: slow; run by `uv run pytest -m full` (CI), not by `uv run pytest`")
    # `-m full` means "the full suite": every test, not only the ones carrying the marker.
    config.stash[_RUN_ALL] = config.option.markexpr.strip() == FULL
    if config.stash[_RUN_ALL]:
        config.option.markexpr = ""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast suite: leave out the `full` tests unless asked for them (by `-m` or by naming them)."""
    named = config.args_source is not pytest.Config.ArgsSource.TESTPATHS
    if config.stash[_RUN_ALL] or config.option.markexpr or named:
        return
    slow = [item for item in items if item.get_closest_marker(FULL)]
    if slow:
        items[:] = [item for item in items if not item.get_closest_marker(FULL)]
        config.hook.pytest_deselected(items=slow)


_RUN_ALL = pytest.StashKey[bool]()


@cache
def pristine_project() -> Path:
    """The starter project (`capstone/` as the course ships it), generated from `solutions/`."""
    root = Path(tempfile.mkdtemp(prefix="course-pristine-")) / COURSE.starter.parent.name
    atexit.register(shutil.rmtree, root.parent, True)
    for rel, data in expected_starter(COURSE.solutions.parent, COURSE.solutions_only).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def pristine_starter() -> Path:
    """The starter edition's src/ folder (what `--against` takes), never the student's own."""
    return pristine_project() / COURSE.starter.relative_to(COURSE.starter.parent)


@pytest.fixture(scope="session")
def course() -> Course:
    return COURSE


_runs: dict[tuple[str, str], LessonResult] = {}


def lesson_run(lesson: Lesson, against: str) -> LessonResult:
    """`against`: "starter" (the pristine one) or "solutions"; each run once per session."""
    key = (lesson.id, against)
    if key not in _runs:
        edition = str(pristine_starter()) if against == "starter" else against
        _runs[key] = run_lesson(COURSE, lesson, edition, hidden=True)
    return _runs[key]


def solutions_with_spy(folder: Path, spy: str) -> Path:
    """A copy of the solutions edition in `folder`/src whose lesson 1 module runs `spy` (Python
    lines) when imported: where, and how, student code gets imported and run."""
    edition = folder / "src"
    shutil.copytree(COURSE.solutions, edition, ignore=shutil.ignore_patterns("__pycache__"))
    module = edition / COURSE.package / "context.py"
    future = "from __future__ import annotations\n"
    module.write_text(module.read_text().replace(future, future + spy, 1))
    return edition


def process_alive(pid: int) -> bool:
    """Whether `pid` is a running process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"
