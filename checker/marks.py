"""The `@check` decorator that turns a pytest test into a graded check.

Keep its arguments literal (strings, numbers): `catalog` reads them from the source so that
`course list` and `course hint` never import the checks.
"""

from __future__ import annotations

import pytest


def check(title: str, *, points: int = 1, hint: str = "") -> pytest.MarkDecorator:
    """Mark a graded check: a title a student understands, its points, and a hint that teaches."""
    return pytest.mark.check(title=title, points=points, hint=hint)
