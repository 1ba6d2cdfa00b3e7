"""The class roster an instructor gives `course grade --roster`: who each submission belongs to.

A CSV with a header row. The column naming each student as their submission is named is found
the way exam rosters find it (the first of id, student, login, username, github, email), so one
roster serves both. Optional columns fill the LMS gradebook: name, sis_user_id (or sis_id),
sis_login_id, section, and canvas_id (Canvas's own user id). Header names ignore case, spaces
and dashes ("SIS User ID" is sis_user_id).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from checker.quiz.forms import ROSTER_COLUMNS
from checker.registry import CourseError

FIELDS = {"name": ("name", "full_name", "student_name"), "sis_user_id": ("sis_user_id", "sis_id"),
          "sis_login_id": ("sis_login_id",), "section": ("section",), "canvas_id": ("canvas_id", "canvas_user_id")}


@dataclass(frozen=True)
class Person:
    student: str  # as the submission is named
    name: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    canvas_id: str = ""


def _key(header: str) -> str:
    return "_".join(header.strip().casefold().replace("-", " ").split())


def read_roster(path: Path) -> dict[str, Person]:
    """Each student on the roster by their id, case-folded (submission folders match case-insensitively)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"cannot read the roster {path}: {exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if len(rows) < 2:
        raise CourseError(f"the roster {path} needs a header row and at least one student")
    keys = [_key(cell) for cell in rows[0]]
    id_column = next((keys.index(name) for name in ROSTER_COLUMNS if name in keys), 0)
    columns = {field: next((keys.index(name) for name in names if name in keys and keys.index(name) != id_column), None)
               for field, names in FIELDS.items()}
    people: dict[str, Person] = {}
    for number, row in enumerate(rows[1:], start=2):
        def cell(index: int | None, row: list[str] = row) -> str:
            return row[index].strip() if index is not None and index < len(row) else ""

        student = cell(id_column)
        if not student:
            raise CourseError(f"{path.name} line {number}: no student id in column {rows[0][id_column]!r}")
        if student.casefold() in people:
            raise CourseError(f"{path.name} line {number}: {student!r} appears twice")
        people[student.casefold()] = Person(student, **{field: cell(index) for field, index in columns.items()})
    return people
