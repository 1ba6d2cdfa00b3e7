"""The course runner and its check engine. In a notebook: `from checker import check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checker.notebook import CheckReport


def check(lesson: str) -> CheckReport:
    """Check a lesson from a notebook cell (imported lazily: `import checker` stays cheap)."""
    from checker.notebook import check as run

    return run(lesson)
