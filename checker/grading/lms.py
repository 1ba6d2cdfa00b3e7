"""Gradebook files a spreadsheet or an LMS opens safely: formula escaping, and the Canvas-style import.

`lms.csv` follows the layout Canvas exports and imports: the student columns (Student, ID, SIS
User ID, SIS Login ID, Section, filled from the roster when one is given), a "Points Possible"
row, one column per lesson, then the total and the percentage under the names Canvas treats as
read-only ("Final Points", "Final Score"), so an import updates the lessons and never creates
an assignment out of our total. It is UTF-8 with a byte-order mark, which spreadsheets need to
read non-ASCII names, and no cell can start a formula.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from checker.grading.record import SubmissionResult
from checker.grading.roster import Person
from checker.registry import Course

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
STUDENT_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]


def cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one starting like a formula gets a leading quote (OWASP)."""
    text = value if isinstance(value, str) else f"{value:g}" if isinstance(value, float) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_rows(path: Path, rows: Iterable[list[object]], *, bom: bool = False) -> None:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as handle:
        writer = csv.writer(handle)
        for row in rows:
            writer.writerow([cell(value) for value in row])


def lesson_columns(results: list[SubmissionResult], course: Course | None = None) -> list[tuple[str, str, int]]:
    """(lesson id, column title, points possible) for each lesson any record holds, in course order.

    Points possible are what grading can award (visible and hidden checks), taken from the records;
    titles are the course's when it is given.
    """
    points: dict[str, int] = {}
    titles: dict[str, str] = {}
    for sub in results:
        for lesson in sub.lessons:
            points[lesson.lesson] = max(points.get(lesson.lesson, 0), sum(check.points for check in lesson.checks))
            titles.setdefault(lesson.lesson, lesson.title)
    if course is not None:
        rank = {lesson.id: index for index, lesson in enumerate(course.lessons)}
        titles.update({lesson.id: lesson.title for lesson in course.lessons if lesson.id in titles})
    else:
        rank = {}
    ordered = sorted(points, key=lambda lesson_id: (rank.get(lesson_id, len(rank)), list(points).index(lesson_id)))
    return [(lesson_id, f"{lesson_id}: {titles[lesson_id]}", points[lesson_id]) for lesson_id in ordered]


def write_lms_csv(results: list[SubmissionResult], roster: dict[str, Person], path: Path,
                  course: Course | None = None) -> None:
    """The Canvas-style gradebook. A lesson that could not be graded on the grader's side is left
    blank (an import then leaves that grade alone); a submission that could not be opened scores 0."""
    columns = lesson_columns(results, course)
    rows: list[list[object]] = [[*STUDENT_COLUMNS, *(title for _, title, _ in columns), "Final Points", "Final Score"],
                                ["Points Possible", "", "", "", "", *(points for _, _, points in columns), "", ""]]
    for sub in results:
        person = roster.get(sub.id.casefold(), Person(sub.id))
        cells: list[object] = []
        for lesson_id, _, _ in columns:
            lesson = sub.lesson(lesson_id)
            cells.append("" if lesson is None or lesson.error else round(lesson.earned, 2))
        percent = f"{100 * sub.earned / sub.available:.1f}" if sub.available else ("0.0" if sub.error else "")
        rows.append([person.name or sub.id, person.canvas_id, person.sis_user_id, person.sis_login_id, person.section,
                     *cells, round(sub.earned, 2), percent])
    write_rows(path, rows, bom=True)
