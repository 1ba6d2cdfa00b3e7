"""`course reset`: put a lesson's starter code back, and undo that from a backup.

The promise is that no student file is ever lost: every file about to be replaced is copied
first to `.course/backups/<timestamp>-<reason>/` (`checker.student.backup`), including when a backup
is restored (the current version is backed up before it is overwritten). Paths inside a
backup are relative to the student's package project (`capstone/`), the same layout
`course dev sync-starter` uses, so any of them can be restored.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from checker.student.backup import backup_files
from checker.registry import Course, CourseError, Lesson
from checker.starter import expected_starter


@dataclass(frozen=True)
class Backup:
    name: str
    folder: Path
    files: tuple[str, ...]  # relative to the student's package project


def lesson_files(course: Course, lesson: Lesson) -> dict[str, bytes]:
    """The starter version of each file of the lesson's modules, keyed by path under `capstone/`."""
    if not lesson.modules:
        raise CourseError(f"{lesson.id} has no code to reset (it is a {lesson.kind} lesson)")
    if not course.solutions.is_dir():
        raise CourseError("this copy of the course has no solutions/ folder to generate the starter from")
    src = course.solutions.relative_to(course.solutions.parent).as_posix()
    prefixes = [f"{src}/{course.package}/{module}" for module in lesson.modules]
    files = {rel: data for rel, data in expected_starter(course.solutions.parent).items()
             if any(rel == f"{p}.py" or rel.startswith(f"{p}/") for p in prefixes)}
    if not files:
        raise CourseError(f"no starter files found for {lesson.id} (modules: {', '.join(lesson.modules)})")
    return files


def changed_files(course: Course, lesson: Lesson) -> list[str]:
    """The lesson's files whose current content differs from the starter (or that are missing)."""
    base = course.starter.parent
    return [rel for rel, data in lesson_files(course, lesson).items()
            if not (base / rel).is_file() or (base / rel).read_bytes() != data]


def reset_lesson(course: Course, lesson: Lesson) -> tuple[list[str], Path | None]:
    """Write the starter version of the lesson's changed files after backing them up."""
    base = course.starter.parent
    files = lesson_files(course, lesson)
    changed = changed_files(course, lesson)
    backup = backup_files([base / rel for rel in changed], base, course.state_dir, f"reset-{lesson.id}")
    for rel in changed:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_bytes(files[rel])
    return changed, backup


def list_backups(course: Course) -> list[Backup]:
    """Every backup, oldest first (by the timestamp its name starts with, then creation time)."""
    root = course.state_dir / "backups"
    if not root.is_dir():
        return []
    folders = sorted((f for f in root.iterdir() if f.is_dir()),
                     key=lambda f: (f.name[:15], f.stat().st_ctime_ns, len(f.name), f.name))
    return [Backup(folder.name, folder, tuple(sorted(p.relative_to(folder).as_posix()
                                                     for p in folder.rglob("*") if p.is_file())))
            for folder in folders]


def find_backup(course: Course, name: str) -> Backup:
    """A backup by its full name, a unique prefix of it, or `latest`."""
    backups = list_backups(course)
    if not backups:
        raise CourseError("there are no backups yet (.course/backups is empty)")
    if name == "latest":
        return backups[-1]
    exact = [b for b in backups if b.name == name]
    matches = exact or [b for b in backups if b.name.startswith(name)]
    if len(matches) != 1:
        what = "no backup" if not matches else f"{len(matches)} backups"
        raise CourseError(f"{what} named {name!r}; see `course reset --list`")
    return matches[0]


def restore_backup(course: Course, backup: Backup) -> tuple[list[str], Path | None]:
    """Put a backup's files back, backing up the current versions of those files first."""
    base = course.starter.parent
    foreign = [rel for rel in backup.files if not (base / rel).parent.is_dir()]
    if foreign:
        raise CourseError(f"{backup.name} holds files that do not fit {base.name}/ ({', '.join(foreign)}); "
                          f"copy them by hand from {backup.folder}")
    differing = [rel for rel in backup.files
                 if not (base / rel).is_file() or (base / rel).read_bytes() != (backup.folder / rel).read_bytes()]
    saved = backup_files([base / rel for rel in differing], base, course.state_dir, "restore")
    for rel in differing:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup.folder / rel, base / rel)
    return differing, saved
