"""`course next`: the one thing to do now, worked out from the registry and the progress file.

A student coming back after a week should not have to remember where they were: this names
the first lesson not passed yet, its notebook, and, if it was checked before, the first
failing check with its hint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from checker.registry import Course, Lesson
from checker.runner.catalog import lesson_catalog
from checker.student.progress import load_progress


@dataclass(frozen=True)
class NextStep:
    lesson: str | None       # None when every available lesson passes
    title: str = ""
    notebook: str = ""
    status: str = ""         # "not started" or "in progress"
    failing: str = ""        # id of the first failing check, if the lesson was checked
    failing_title: str = ""
    hint: str = ""
    coming_soon: int = 0     # lessons not built yet

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def first_unfinished(course: Course, kind: str | None = None) -> Lesson | None:
    """The first available lesson (of `kind`, if given) whose checks have not all passed yet."""
    progress = load_progress(course.state_dir)
    return next((lesson for lesson in course.lessons
                 if lesson.available and kind in (None, lesson.kind)
                 and progress.get(lesson.id, {}).get("status") != "passed"), None)


def next_step(course: Course) -> NextStep:
    coming = sum(not lesson.available for lesson in course.lessons)
    lesson = first_unfinished(course)
    if lesson is None:
        return NextStep(lesson=None, coming_soon=coming)
    record = load_progress(course.state_dir).get(lesson.id, {})
    step = NextStep(lesson=lesson.id, title=lesson.title, notebook=lesson.notebook,
                    status="in progress" if record else "not started", coming_soon=coming)
    failing = record.get("failing") or []
    if failing:
        info = next((c for c in lesson_catalog(course, lesson) if c.id in failing), None)
        if info is not None:
            step = NextStep(**{**asdict(step), "failing": info.id, "failing_title": info.title, "hint": info.hint})
    return step
