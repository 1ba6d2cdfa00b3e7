"""`course reset`: put a lesson's starter code back, and undo that from a backup.

The promise is that no student file is ever lost: every file about to be replaced is copied
first to `.course/backups/<timestamp>-<reason>/` (`checker.student.backup`), including when a backup
is restored (the current version is backed up before it is overwritten). Paths inside a
backup are relative to the student's package project (`capstone/`), the same layout
`course dev sync-starter` uses, so any of them can be restored.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from checker.registry import Course, CourseError, Lesson
from checker.starter import expected_starter
from checker.student.backup import backup_files


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


NOTEBOOK_REASON = "notebook-"  # backups of a notebook keep paths relative to the course root


def clean_notebook(course: Course, lesson: Lesson) -> bytes:
    """The lesson's notebook as the course shipped it: its newest committed version without outputs.

    A student's own commits of the notebook carry outputs (they ran it), so walking back through
    the notebook's history to the newest clean version finds what the course shipped.
    """
    path = course.root / lesson.notebook
    git = ["git", "-C", str(course.root)]
    try:
        top = subprocess.run([*git, "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True)
        commits = subprocess.run([*git, "log", "--format=%H", "-n", "200", "--", str(path)], capture_output=True,
                                 text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        commits = []
        top = None
    rel = path.resolve().relative_to(Path(top.stdout.strip()).resolve()).as_posix() if top else ""
    for commit in commits:
        shown = subprocess.run([*git, "show", f"{commit}:{rel}"], capture_output=True)
        if shown.returncode == 0 and _is_clean_notebook(shown.stdout):
            return shown.stdout
    raise CourseError(f"no clean copy of {lesson.notebook} in this folder's git history; download it again "
                      "from the course's repository")


def _is_clean_notebook(data: bytes) -> bool:
    try:
        notebook = json.loads(data)
        cells = notebook["cells"]
        return all(not cell.get("outputs") and cell.get("execution_count") is None
                   for cell in cells if cell.get("cell_type") == "code")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False


def reset_notebook(course: Course, lesson: Lesson, clean: bytes) -> Path | None:
    """Write `clean` (from `clean_notebook`) over the lesson's notebook, backing up the current one."""
    path = course.root / lesson.notebook
    backup = backup_files([path], course.root, course.state_dir, f"{NOTEBOOK_REASON}{lesson.id}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clean)
    return backup


def is_notebook_backup(backup: Backup) -> bool:
    """A backup made by `reset --notebook` (its paths are relative to the course folder)."""
    return backup.name[16:].startswith(NOTEBOOK_REASON)  # after the "%Y%m%d-%H%M%S-" stamp


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
    notebook = is_notebook_backup(backup)
    base = course.root if notebook else course.starter.parent
    foreign = [rel for rel in backup.files if not (base / rel).parent.is_dir()]
    if foreign:
        raise CourseError(f"{backup.name} holds files that do not fit {base.name}/ ({', '.join(foreign)}); "
                          f"copy them by hand from {backup.folder}")
    differing = [rel for rel in backup.files
                 if not (base / rel).is_file() or (base / rel).read_bytes() != (backup.folder / rel).read_bytes()]
    reason = f"{NOTEBOOK_REASON}restore" if notebook else "restore"
    saved = backup_files([base / rel for rel in differing], base, course.state_dir, reason)
    for rel in differing:
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(backup.folder / rel, base / rel)
    return differing, saved
