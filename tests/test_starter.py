"""The starter is generated from the solutions (DESIGN.md decision 4) and must not drift."""

from __future__ import annotations

import pytest

from checker.starter import MarkerError, drift, strip_solutions, write_starter
from tests.conftest import COURSE


def test_committed_starter_matches_the_generator() -> None:
    changed = drift(COURSE.solutions.parent, COURSE.starter.parent, COURSE.solutions_only)
    assert not changed, f"capstone/ drifted from solutions/ in {changed}: run `uv run course dev sync-starter`"


def test_solutions_only_files_never_reach_the_starter() -> None:
    assert COURSE.solutions_only, "course.toml lists the reference quiz answers as solutions-only"
    for rel in COURSE.solutions_only:
        assert (COURSE.solutions.parent / rel).exists(), f"{rel} is listed but missing from solutions/"
        assert not (COURSE.starter.parent / rel).exists(), f"{rel} leaked into the starter"


def test_region_becomes_todo_and_raise() -> None:
    source = (
        "def f(x):\n"
        "    # BEGIN SOLUTION lesson-3: double it\n"
        "    return 2 * x\n"
        "    # END SOLUTION\n"
    )
    starter = strip_solutions(source)
    assert "return 2 * x" not in starter
    assert "# TODO(lesson-3): double it" in starter
    assert 'raise NotImplementedError("TODO(lesson-3): write f")' in starter


def test_stub_lines_are_comments_in_the_solution_and_code_in_the_starter() -> None:
    source = (
        "async def g():\n"
        "    # BEGIN SOLUTION lesson-1: yield the state\n"
        "    yield 1\n"
        "    # STUB\n"
        "    # raise NotImplementedError('no')\n"
        "    # yield\n"
        "    # END SOLUTION\n"
    )
    starter = strip_solutions(source)
    assert "    raise NotImplementedError('no')\n    yield\n" in starter
    assert "yield 1" not in starter


@pytest.mark.parametrize("source", [
    "# BEGIN SOLUTION lesson-1: x\ncode\n",                  # never closed
    "code\n# END SOLUTION\n",                               # never opened
    "# BEGIN SOLUTION lesson-1: x\n# STUB\nlive code\n# END SOLUTION\n",  # stub that would run in the solution
])
def test_broken_markers_are_reported(source: str) -> None:
    with pytest.raises(MarkerError):
        strip_solutions(source, "example.py")


def test_sync_keeps_a_backup_of_what_it_replaces(tmp_path) -> None:
    solutions = tmp_path / "solutions"
    starter = tmp_path / "starter"
    (solutions / "pkg").mkdir(parents=True)
    (solutions / "pkg" / "m.py").write_text("def f():\n    # BEGIN SOLUTION lesson-1: do it\n    return 1\n    # END SOLUTION\n")
    (starter / "pkg").mkdir(parents=True)
    (starter / "pkg" / "m.py").write_text("def f():\n    return 'my own work'\n")
    changed, backup = write_starter(solutions, starter, tmp_path / ".course")
    assert changed == ["pkg/m.py"]
    assert backup is not None and (backup / "pkg" / "m.py").read_text() == "def f():\n    return 'my own work'\n"
    assert "NotImplementedError" in (starter / "pkg" / "m.py").read_text()
