"""`course solution LESSON`: the reference code of a lesson, shown only once the lesson passes.

As in rustlings, reading the solution after solving it is how a student compares approaches;
reading it before is how they skip the learning. So the gate is the progress file's
`passed_once` (a later regression does not take the solution away). A student release ships
without `solutions/`, and then there is nothing to show.
"""

from __future__ import annotations

from pathlib import Path

from checker.registry import Course, CourseError, Lesson
from checker.student.progress import load_progress


class NotYet(Exception):
    """The lesson has not passed yet: a refusal, not a usage error."""


def solution_files(course: Course, lesson: Lesson) -> list[Path]:
    """The reference file(s) of the lesson's modules, if the student has earned them."""
    if not lesson.modules:
        raise CourseError(f"{lesson.id} has no code solution (it is a {lesson.kind} lesson)")
    if not load_progress(course.state_dir).get(lesson.id, {}).get("passed_once"):
        raise NotYet(f"the solution of {lesson.id} opens once your code passes it: "
                     f"run `uv run course check {lesson.number}` first (stuck? `uv run course hint {lesson.number}`)")
    package = course.solutions / course.package
    if not package.is_dir():
        raise CourseError("this copy of the course has no reference solutions (a student edition); "
                          "ask your instructor")
    files: list[Path] = []
    for module in lesson.modules:
        single, folder = package / f"{module}.py", package / module
        if single.is_file():
            files.append(single)
        elif folder.is_dir():
            files += sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if not files:
        raise CourseError(f"the reference solution of {lesson.id} is missing from {package}")
    return files
