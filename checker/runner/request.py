"""What the engine asks of the worker: one lesson, one edition, the limits. Plain data, cheap to import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """Everything the worker needs, passed as one JSON file (nothing else crosses over)."""

    lesson: str
    title: str
    checks_file: str
    edition: str        # the src/ folder whose package is graded
    edition_name: str   # "starter", "solutions", or a path, for display
    package: str
    modules: list[str]
    out: str
    check_timeout: float
    lesson_timeout: float
    memory_mb: int
    output_mb: int
    jobs: int
    select: list[str]
    expected: dict[str, float]  # check id -> seconds it took last time; the longest start first
    busy: dict[str, float] = field(default_factory=dict)  # check id -> its CPU time over its wall time, last time
    extra_checks: list[str] = field(default_factory=list)  # instructor-only (hidden) check files
    owners: dict[str, int] = field(default_factory=dict)  # module -> the lesson whose starter holds it
    builds_package: bool = False  # the checks share one build of the project (`support/lesson08_build.py`)
    # Grading: the submission's running sandbox (`checker.sandbox.submission.Running`, as a dict).
    # Student code then runs only in it, in host processes, never in a check's own process.
    sandbox: dict[str, Any] | None = None
