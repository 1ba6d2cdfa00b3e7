"""One student's grade as the grade store keeps it: their lessons' results and where each came from.

A record outlives the run that made it. A regrade of one lesson replaces that lesson and keeps the
others, so each lesson carries a stamp saying which run graded it and in which sandbox mode.
Records are plain data that round-trip through JSON (the store, shard merges, results.json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from checker.runner.results import CheckResult, LessonResult

NOT_GRADED = "not graded: the grading machine lacks "  # how a check the grader could not run starts its message


def not_graded_message(program: str) -> str:
    return f"{NOT_GRADED}{program} (your instructor's to install; these points are left out of your total)"


def missing_program(check: CheckResult) -> str | None:
    """The program the grading machine lacked, when that is why `check` was not graded (else None)."""
    if check.outcome != "skipped" or not check.message.startswith(NOT_GRADED):
        return None
    found = re.match(r"\S+", check.message[len(NOT_GRADED):])
    return found.group(0) if found else "?"


@dataclass
class SubmissionResult:
    id: str
    lessons: list[LessonResult] = field(default_factory=list)
    error: str = ""  # the submission could not be graded at all (unreadable zip, no package, ...)
    duration: float = 0.0
    source: str = ""  # the submission's file or folder name, e.g. "ada.zip": says which one a record came from
    graded: dict[str, dict[str, str]] = field(default_factory=dict)  # lesson id -> {"run": id, "sandbox": mode}

    @property
    def earned(self) -> float:
        return sum(lesson.earned for lesson in self.lessons)

    @property
    def available(self) -> float:
        return sum(lesson.available for lesson in self.lessons)

    def lesson(self, lesson_id: str) -> LessonResult | None:
        return next((lesson for lesson in self.lessons if lesson.lesson == lesson_id), None)

    def has(self, lesson_id: str, run: str | None = None) -> bool:
        """Whether this record holds `lesson_id`, graded by `run` when one is named (--resume)."""
        if self.lesson(lesson_id) is None:
            return False
        return run is None or self.graded.get(lesson_id, {}).get("run") == run

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "source": self.source, "error": self.error, "duration": self.duration,
                "earned": self.earned, "available": self.available, "graded": self.graded,
                "lessons": [lesson.to_json() for lesson in self.lessons]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SubmissionResult:  # parsed JSON
        lessons = [LessonResult.from_json(item) for item in data.get("lessons", [])]
        graded = {str(k): {str(a): str(b) for a, b in dict(v).items()}
                  for k, v in dict(data.get("graded") or {}).items()}
        return cls(str(data["id"]), lessons, str(data.get("error", "")), float(data.get("duration", 0.0)),
                   str(data.get("source", "")), graded)


def merged(previous: SubmissionResult | None, new: SubmissionResult, asked: list[str],
           order: list[str]) -> SubmissionResult:
    """`new` (what this run graded of the lessons `asked`) over `previous` (the stored record).

    Lessons not asked are kept as they were. Lessons asked are replaced, even by nothing: a
    submission that cannot be opened now has no grade for them, only the error saying why, never
    an older result shown as if it were current. Lessons come out in the course's `order`.
    """
    if previous is None:
        return new
    lessons = {lesson.lesson: lesson for lesson in previous.lessons if lesson.lesson not in asked}
    lessons.update({lesson.lesson: lesson for lesson in new.lessons})
    graded = {**{k: v for k, v in previous.graded.items() if k not in asked}, **new.graded}
    rank = {lesson_id: index for index, lesson_id in enumerate(order)}
    kept = sorted(lessons.values(), key=lambda lesson: (rank.get(lesson.lesson, len(rank)), lesson.lesson))
    return SubmissionResult(new.id, kept, new.error, round(sum(lesson.duration for lesson in kept), 3),
                            new.source or previous.source, {k: v for k, v in graded.items() if k in lessons})
