"""The course registry: `course.toml` read into typed objects.

Everything the runner knows about a lesson comes from here, so a lesson is added or changed
in one place. Reading it is cheap (no SDK import), which keeps `course list` instant.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

REGISTRY_FILE = "course.toml"


RUN = "uv run course"  # how the README runs the runner: every message that names a command says it so


class CourseError(Exception):
    """A problem the user can fix, reported as one line (never a traceback)."""


# The keys a lesson's block may have besides the ones every lesson has; the quiz's own settings
# (pass_mark, bank, ...) are kept in `Lesson.settings` for checker/quiz/bank.py to interpret.
LESSON_KEYS = frozenset({"id", "title", "notebook", "modules", "checks", "status", "kind", "needs", "builds_package"})


@dataclass(frozen=True)
class Program:
    """A system program some lesson's checks start, and how a person installs it."""

    name: str
    apt: str = ""   # the Debian/Ubuntu package that brings it
    brew: str = ""  # the Homebrew formula (macOS)
    pip: str = ""   # or the PyPI package, for programs that come from PyPI (uv)

    def install_advice(self) -> str:
        """One line saying how to install the program, for skip messages and `course doctor`."""
        if self.pip:
            return f"python3 -m pip install {self.pip}"
        ways = [f"sudo apt-get install {self.apt}"] if self.apt else []
        ways += [f"macOS: brew install {self.brew}"] if self.brew else []
        return "; ".join(ways) or f"install {self.name}"

    def skip_message(self) -> str:
        """What a check that cannot run without the program says when it skips."""
        return f"needs {self.name}: {self.install_advice()}"


@dataclass(frozen=True)
class Lesson:
    id: str
    number: int
    title: str
    notebook: str
    modules: tuple[str, ...]
    status: str
    kind: str = "code"  # "code": pytest checks on the package; "quiz": graded answers
    needs: tuple[str, ...] = ()  # programs its checks start: the preflight, CI and `course doctor` look for them
    checks_name: str = ""  # the checks file, when it breaks the lessonNN.py convention
    builds_package: bool = False  # its checks build the student's project (lesson 8's build): started early
    # The rest of the lesson's block (the quiz's settings), read once here and interpreted by its owner.
    settings: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def available(self) -> bool:
        return self.status == "available"

    @property
    def checks(self) -> str:
        """The checks file's name: `lesson03.py` for lesson 3 unless course.toml says otherwise.

        A quiz has none (it is graded from answers, see checker/quiz/); the name still follows
        the convention, so a caller that looks for the file finds nothing there."""
        return self.checks_name or f"lesson{self.number:02d}.py"


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
    programs: Mapping[str, Program] = field(default_factory=dict)  # every program a lesson `needs`

    @property
    def needed_programs(self) -> tuple[Program, ...]:
        """Every program some available lesson's checks start, in name order."""
        names = sorted({need for lesson in self.lessons if lesson.available for need in lesson.needs})
        return tuple(self.programs[name] for name in names)

    def lessons_needing(self, program: str) -> tuple[Lesson, ...]:
        return tuple(lesson for lesson in self.lessons if program in lesson.needs)

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
        """The lesson's main checks file (the pytest root of its run)."""
        return self.checks_dir / lesson.checks

    def checks_files(self, lesson: Lesson) -> tuple[Path, ...]:
        """Every visible checks file of the lesson: the main one, then its parts in name order.

        A lesson whose requirements outgrow one readable file splits them by topic into parts
        named after the main file (`lesson09.py`, `lesson09_deploy.py`, ...); they are run, listed
        and counted together, in this order."""
        main = self.checks_file(lesson)
        return (main, *sorted(self.checks_dir.glob(f"{main.stem}_*.py")))

    def hidden_checks_files(self, lesson: Lesson) -> tuple[Path, ...]:
        """Instructor-only checks, left out of the student release: hidden/<stem>_hidden.py, then the
        hidden twins of the lesson's part files (hidden/<stem>_<topic>_hidden.py), those that exist."""
        stem = Path(lesson.checks).stem
        folder = self.checks_dir / "hidden"
        main = folder / f"{stem}_hidden.py"
        parts = sorted(p for p in folder.glob(f"{stem}_*_hidden.py") if p != main)
        return tuple(path for path in (main, *parts) if path.is_file())

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
    programs = {name: Program(name=name, apt=str(how.get("apt", "")), brew=str(how.get("brew", "")),
                              pip=str(how.get("pip", "")))
                for name, how in data.get("programs", {}).items()}
    lessons = tuple(_lesson(entry, programs, path) for entry in data["lessons"])
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
        programs=MappingProxyType(programs),
    )


def _lesson(entry: dict[str, Any], programs: Mapping[str, Program], path: Path) -> Lesson:
    """One `[[lessons]]` block; a need without a `[programs.NAME]` table is a mistake in course.toml."""
    unknown = [need for need in entry.get("needs", ()) if need not in programs]
    if unknown:
        raise CourseError(f"{path}: {entry['id']} needs {', '.join(unknown)}, which [programs] does not describe")
    return Lesson(
        id=entry["id"],
        number=int(entry["id"].rsplit("-", 1)[1]),
        title=entry["title"],
        notebook=entry["notebook"],
        modules=tuple(entry.get("modules", ())),
        status=entry.get("status", "available"),
        kind=entry.get("kind", "code"),
        needs=tuple(entry.get("needs", ())),
        checks_name=entry.get("checks", ""),
        builds_package=bool(entry.get("builds_package", False)),
        settings=MappingProxyType({key: value for key, value in entry.items() if key not in LESSON_KEYS}),
    )
