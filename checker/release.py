"""`course release OUT`: the student edition, ready to push as a template repository.

What a student gets: the starter package, notebooks without outputs, the runner with the
visible checks, the practice quiz with its hashed key, and a GitHub Classroom workflow (`checker.classroom`). What they
never get: `solutions/`, hidden checks, the plain quiz key, the exam pool (quiz/exam/), the
course's own tests and benchmarks.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path

import nbformat

from checker.classroom import workflow as classroom_workflow
from checker.registry import Course, CourseError
from checker.starter import expected_starter

# Paths (relative to the course root) a release contains; everything else stays behind.
INCLUDE = [
    "README.md",
    "pyproject.toml",
    "uv.lock",
    "course.toml",
    ".gitignore",
    "capstone",
    "checker",
    "lessons",
    "quiz",
]
# Instructor-only material inside included folders.
EXCLUDE_GLOBS = ["checker/checks/hidden/*", "quiz/key.toml", "quiz/answers.toml", "quiz/exam/*",
                 "quiz/exam.toml", "quiz/exam-answers.toml",
                 "**/__pycache__/*", "**/*.pyc", "**/.ipynb_checkpoints/*"]

# README sections about material the release leaves out.
INSTRUCTOR_SECTIONS = ("## Instructor guide", "## How fast is it?", "## For course developers")


def _student_readme(text: str) -> str:
    """The course README as a student's copy should read: no instructor or developer sections,
    and a quick start whose second command exists there (the release has no test suite)."""
    kept: list[str] = []
    skipping = False
    for line in text.splitlines(keepends=True):
        if line.startswith("## "):
            skipping = line.strip() in INSTRUCTOR_SECTIONS
        if not skipping:
            kept.append(line)
    readme = "".join(kept)
    # The quick start's test line: a student edition has no tests, but it has checks.
    return re.sub(r"^uv run pytest .*$", "uv run course check lesson-1   # check your work on lesson 1 (any lesson id)",
                  readme, count=1, flags=re.MULTILINE)


def _student_pyproject(text: str) -> str:
    """The project file as a student's copy needs it: `uv run` installs no development group.

    The dev group (linters, and what the course's own tests drive) serves a test suite the release
    leaves out; the lock still lists it, so the lock stays valid and `uv sync --locked` passes."""
    if not re.search(r"^\[tool\.uv\.", text, flags=re.MULTILINE) or re.search(r"^\[tool\.uv\]", text, re.MULTILINE):
        raise CourseError("pyproject.toml: expected [tool.uv.*] tables and no [tool.uv] table to add default-groups to")
    table = "[tool.uv]\ndefault-groups = []  # the student edition has no test suite: no dev group\n\n"
    return re.sub(r"^(?=\[tool\.uv\.)", table, text, count=1, flags=re.MULTILINE)


def _student_lock(text: str, project: str) -> str:
    """The lock as uv writes it for `_student_pyproject`'s change: the project's entry records its
    default groups (tests/test_release.py proves `uv sync --locked` accepts the result)."""
    entry = (rf'(\[\[package\]\]\nname = "{re.escape(project)}"\n'
             r'version = "[^"\n]*"\nsource = \{ editable = "\." \}\n)')
    locked, found = re.subn(entry, r"\1default-groups = []\n", text, count=1)
    if not found:
        raise CourseError(f"uv.lock: no editable entry for {project}; has uv changed its lock format?")
    return locked


def _excluded(rel: Path) -> bool:
    return any(rel.match(pattern) for pattern in EXCLUDE_GLOBS)


def _clean_notebook(source: Path, dest: Path) -> None:
    notebook = nbformat.read(source, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nbformat.write(notebook, dest)


def _write_starter(course: Course, dest: Path) -> list[Path]:
    """The starter package as the generator makes it: never the working copy, which the
    instructor (or a student of the open-source edition) may have solved."""
    written = []
    for rel, data in expected_starter(course.solutions.parent, course.solutions_only).items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def build_release(course: Course, out: Path) -> list[Path]:
    """Write the student edition into `out` (which must not exist yet); return its files."""
    if out.exists() and any(out.iterdir()):
        raise CourseError(f"{out} already exists and is not empty; choose a new folder")
    if out.resolve().is_relative_to(course.root.resolve()):
        raise CourseError("write the release outside the course folder")
    written: list[Path] = []
    for name in INCLUDE:
        source = course.root / name
        if source == course.starter.parent and course.solutions.is_dir():
            written += _write_starter(course, out / name)
            continue
        if not source.exists():
            continue
        files = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(course.root)
            if _excluded(rel):
                continue
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".ipynb":
                _clean_notebook(path, dest)
            elif rel == Path("README.md"):
                dest.write_text(_student_readme(path.read_text(encoding="utf-8")), encoding="utf-8")
            elif rel == Path("pyproject.toml"):
                dest.write_text(_student_pyproject(path.read_text(encoding="utf-8")), encoding="utf-8")
            elif rel == Path("uv.lock"):
                project = tomllib.loads((course.root / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]
                dest.write_text(_student_lock(path.read_text(encoding="utf-8"), project), encoding="utf-8")
            else:
                shutil.copy2(path, dest)
            written.append(dest)
    workflow = out / ".github" / "workflows" / "classroom.yml"
    workflow.parent.mkdir(parents=True, exist_ok=True)
    workflow.write_text(classroom_workflow(course))
    written.append(workflow)
    return written
