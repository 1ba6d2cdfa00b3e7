"""The `@check` decorator that turns a pytest test into a graded check.

Keep its arguments literal (strings, numbers): `catalog` reads them from the source so that
`course list` and `course hint` never import the checks.
"""

from __future__ import annotations

import shutil

import pytest

from checker.registry import CourseError, load_course


def check(title: str, *, points: int = 1, hint: str = "") -> pytest.MarkDecorator:
    """Mark a graded check: a title a student understands, its points, and a hint that teaches."""
    return pytest.mark.check(title=title, points=points, hint=hint)


def installed_or_skip(program: str) -> str:
    """Where `program` is installed; skips the calling check, with course.toml's install advice, when
    it is not.

    The program must be one of its lesson's `needs` (tests/test_registry.py holds the checks to
    that), so the grader's preflight has already reported it, and `course doctor` names it.
    """
    found = shutil.which(program)
    if found is not None:
        return found
    try:
        described = load_course().programs.get(program)
    except CourseError:  # a copy of the checks without the course around them
        described = None
    pytest.skip(described.skip_message() if described else f"needs {program}: install it and check again")
