"""The course registry: `course.toml` read into typed objects.

Everything the runner knows about a lesson comes from here, so a lesson is added or changed
in one place. Reading it is cheap (no SDK import), which keeps `course list` instant.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

REGISTRY_FILE = "course.toml"


RUN = "uv run course"  # how the README runs the runner: every message that names a command says it so


class CourseError(Exception):
    """A problem the user can fix, reported as one line (never a traceback)."""


@dataclass(frozen=True)
class Lesson:
    id: str
    number: int
    title: str
    notebook: str
    modules: tuple[str, ...]
    checks: str
    points: int
    status: str
    kind: str = "code"  # "code": pytest checks on the package; "quiz": graded answers
    needs: tuple[str, ...] = ()  # programs its checks start: the preflight and `course doctor` look for them

    @property
    def available(self) -> bool:
        return self.status == "available"


@dataclass(frozen=True)
class Course:
    root: Path
    title: str
    package: str
    starter: Path
    solutions: Path
    checks_dir: Path
    check_timeout: float
    lesson_timeout: float
    memory_limit_mb: int
    output_limit_mb: int
    lessons: tuple[Lesson, ...]
    solutions_only: tuple[str, ...] = ()  # files of solutions/ the starter must never get

    def lesson(self, ref: str) -> Lesson:
        """Find a lesson by `lesson-3`, `3` or `03` (what students naturally type)."""
        match = re.fullmatch(r"(?:lesson[-_ ]?)?0*(\d+)", ref.strip().lower())
        if match:
            wanted = int(match.group(1))
            for lesson in self.lessons:
                if lesson.number == wanted:
                    return lesson
        known = ", ".join(lesson.id for lesson in self.lessons)
        raise CourseError(f"unknown lesson {ref!r}; the lessons are {known}")

    def checks_file(self, lesson: Lesson) -> Path:
        return self.checks_dir / lesson.checks

    def hidden_checks_file(self, lesson: Lesson) -> Path:
        """Instructor-only checks, left out of the student release: hidden/<stem>_hidden.py."""
        return self.checks_dir / "hidden" / f"{Path(lesson.checks).stem}_hidden.py"

    @property
    def state_dir(self) -> Path:
        return self.root / ".course"


def find_root(start: Path | None = None) -> Path:
    """The course root: $COURSE_ROOT, else the nearest folder above `start` holding course.toml.

    Falls back to the folder this package was installed from, so `course` works from any
    directory of a clone (students often run it from `lessons/`).
    """
    env = os.environ.get("COURSE_ROOT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / REGISTRY_FILE).is_file():
            return folder
    installed = Path(__file__).resolve().parent.parent
    if (installed / REGISTRY_FILE).is_file():
        return installed
    raise CourseError(f"no {REGISTRY_FILE} found here or above; run `course` inside the course folder")


def load_course(root: Path | None = None) -> Course:
    root = root or find_root()
    path = root / REGISTRY_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"{path} is missing") from None
    except tomllib.TOMLDecodeError as exc:
        raise CourseError(f"{path} is not valid TOML: {exc}") from None
    meta = data["course"]
    lessons = tuple(
        Lesson(
            id=entry["id"],
            number=int(entry["id"].rsplit("-", 1)[1]),
            title=entry["title"],
            notebook=entry["notebook"],
            modules=tuple(entry.get("modules", ())),
            checks=entry["checks"],
            points=int(entry.get("points", 0)),
            status=entry.get("status", "available"),
            kind=entry.get("kind", "code"),
            needs=tuple(entry.get("needs", ())),
        )
        for entry in data["lessons"]
    )
    return Course(
        root=root,
        title=meta["title"],
        package=meta["package"],
        starter=root / meta["starter"],
        solutions=root / meta["solutions"],
        checks_dir=root / meta["checks"],
        check_timeout=float(meta["check_timeout"]),
        lesson_timeout=float(meta["lesson_timeout"]),
        memory_limit_mb=int(meta["memory_limit_mb"]),
        output_limit_mb=int(meta["output_limit_mb"]),
        lessons=lessons,
        solutions_only=tuple(meta.get("solutions_only", ())),
    )
