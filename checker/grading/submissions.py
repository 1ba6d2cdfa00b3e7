"""Submissions as an instructor collects them: a folder of clones and zips, copied safely to grade.

A copy never brings along what could reach outside it (links), or more than a course needs
(caches, virtual environments, git history), and a zip cannot write outside its folder. Nothing
here runs student code.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from checker.registry import Course, CourseError

MAX_SUBMISSION_BYTES = 200 * 1024 * 1024
MAX_SUBMISSION_FILES = 20_000
SKIPPED_PARTS = {".git", ".venv", "__pycache__", "node_modules", ".course", ".ipynb_checkpoints"}


@dataclass
class Submission:
    id: str
    source: Path


def discover(folder: Path) -> list[Submission]:
    """Every submission in `folder`: each sub-folder and each .zip, named after it, by name.

    Two entries that would be graded as one student (`ada/` and `ada.zip`, or names that differ
    only in case or in characters a file name cannot keep) are an error naming both: grading
    either one silently would overwrite the other's row and feedback.
    """
    if not folder.is_dir():
        raise CourseError(f"{folder} is not a folder of submissions")
    found = [Submission(entry.stem if entry.suffix == ".zip" else entry.name, entry)
             for entry in sorted(folder.iterdir())
             if (entry.is_dir() and not entry.name.startswith(".")) or entry.suffix == ".zip"]
    if not found:
        raise CourseError(f"no submissions (folders or .zip files) in {folder}")
    seen: dict[str, Submission] = {}
    for submission in found:
        other = seen.setdefault(file_key(submission.id), submission)
        if other is not submission:
            raise CourseError(f"{_shown(other)} and {_shown(submission)} would both be graded as student "
                              f"{other.id!r}: rename or remove one of them")
    return sorted(found, key=lambda submission: submission.id)


def file_key(student: str) -> str:
    """The name a student's files get (feedback, Gradescope results), compared as a case-insensitive
    file system would: two students with the same key would overwrite each other's files."""
    return safe_name(student).casefold()


def safe_name(student: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in student)


def _shown(submission: Submission) -> str:
    return submission.source.name + ("/" if submission.source.is_dir() else "")


def _copy_folder(source: Path, dest: Path) -> None:
    total = count = 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if SKIPPED_PARTS.intersection(rel.parts) or path.is_symlink():
            continue  # a symlink could point at the grader's own files
        if path.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
            continue
        total += path.stat().st_size
        count += 1
        if total > MAX_SUBMISSION_BYTES or count > MAX_SUBMISSION_FILES:
            raise CourseError("the submission is too large to grade")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)


def _extract_zip(source: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > MAX_SUBMISSION_FILES or sum(m.file_size for m in members) > MAX_SUBMISSION_BYTES:
                raise CourseError("the submission is too large to grade")
            for member in members:
                rel = Path(member.filename)
                if rel.is_absolute() or ".." in rel.parts or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise CourseError(f"the zip contains an unsafe path: {member.filename}")
                if SKIPPED_PARTS.intersection(rel.parts):
                    continue
                archive.extract(member, dest)
    except zipfile.BadZipFile:
        raise CourseError("not a readable zip file") from None


def unpack(submission: Submission, dest: Path) -> Path:
    """A private copy of the submission under `dest`; returns the folder of the course copy."""
    dest.mkdir(parents=True, exist_ok=True)
    if submission.source.is_dir():
        _copy_folder(submission.source, dest)
    else:
        _extract_zip(submission.source, dest)
    for path in [p for p in dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the sandbox uid, owned by us
    return dest


def locate_edition(root: Path, course: Course) -> Path:
    """The submission's `src/` folder holding the package (zips often add a top folder)."""
    rel = course.starter.relative_to(course.root)
    for candidate in (root / rel, *(child / rel for child in sorted(root.iterdir()) if child.is_dir())):
        if (candidate / course.package).is_dir():
            return candidate
    raise CourseError(f"no {rel}/{course.package} folder in the submission")
