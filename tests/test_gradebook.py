"""The grade store and its exports: regrades keep the gradebook, ids never collide, every file is safe
to open in a spreadsheet or an LMS, and the class report says what the grading machine could not grade.

Grading runs through the `course grade` command as an instructor types it (lesson 1, sandboxed as
the preflight chooses); the export tests build records directly.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from checker.grading.exports import write_all
from checker.grading.record import SubmissionResult, not_graded_message
from checker.grading.roster import read_roster
from checker.runner.results import CheckResult, LessonResult
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

MODULE = f"src/{COURSE.package}/context.py"
SOLVED = (COURSE.solutions.parent / MODULE).read_text()
ENV = dict(os.environ, COURSE_ROOT=str(COURSE.root))


def _student(folder: Path, source: str | None = None, solved: bool = True) -> Path:
    """A student's clone: the whole project, as handed in (the reference or the starter)."""
    shutil.copytree(COURSE.solutions.parent if solved else COURSE.starter.parent, folder / "capstone",
                    ignore=shutil.ignore_patterns("__pycache__", "quiz-answers.toml"))
    if source is not None:
        (folder / "capstone" / MODULE).write_text(source)
    return folder


def course(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "checker.cli.app", *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=600)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["student"]: row for row in csv.DictReader(path.open(encoding="utf-8"))}


def _grade(subs: Path, out: Path, *extra: object) -> subprocess.CompletedProcess[str]:
    done = course("grade", subs, "--lessons", "1", "--out", out, "--jobs", 2, *extra)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    return done


# ---------------------------------------------------------------- regrades keep the gradebook

def test_regrading_one_student_keeps_everyone_else(tmp_path: Path) -> None:
    subs, out = tmp_path / "subs", tmp_path / "grades"
    for name, solved in (("ada", True), ("bob", False), ("cy", True)):
        _student(subs / name, solved=solved)
    _grade(subs, out)
    kept = {name: (out / "store" / f"{name}.json").read_text() for name in ("ada", "cy")}
    assert _rows(out / "gradebook.csv")["bob"]["total"] == "0"

    (subs / "bob" / "capstone" / MODULE).write_text(SOLVED)  # bob fixes his work; only he is regraded
    _grade(subs, out, "--students", "bob")
    rows = _rows(out / "gradebook.csv")
    assert set(rows) == {"ada", "bob", "cy"}, "the regrade of one student kept the class"
    assert rows["bob"]["total"] == rows["ada"]["total"] != "0"
    assert all((out / "store" / f"{name}.json").read_text() == text for name, text in kept.items()), \
        "students not asked for are not graded again"
    for folder, suffix in (("feedback", ".md"), ("gradescope", ".json")):
        assert sorted(p.name for p in (out / folder).iterdir()) == [f"{n}{suffix}" for n in ("ada", "bob", "cy")]
    assert [s["id"] for s in json.loads((out / "results.json").read_text())["submissions"]] == ["ada", "bob", "cy"]
    report = (out / "report.html").read_text()
    assert all(f"<td>{name}</td>" in report for name in ("ada", "bob", "cy"))

    unknown = course("grade", subs, "--students", "nobody", "--out", out)
    assert unknown.returncode == 2 and "no submission named 'nobody'" in unknown.stderr


def test_grading_a_folder_of_one_keeps_the_class_and_drops_nothing_silently(tmp_path: Path) -> None:
    subs, one, out = tmp_path / "subs", tmp_path / "one", tmp_path / "grades"
    for name in ("ada", "bob"):
        _student(subs / name)
    _grade(subs, out)
    _student(one / "bob", solved=False)
    done = _grade(one, out)
    rows = _rows(out / "gradebook.csv")
    assert set(rows) == {"ada", "bob"} and rows["bob"]["total"] == "0" and rows["ada"]["total"] != "0"
    assert "keeps 1 student(s) graded earlier" in done.stderr and "ada" in done.stderr

    (out / "store" / "ada.json").unlink()  # the instructor drops a student: their files go with them
    _grade(one, out)
    assert set(_rows(out / "gradebook.csv")) == {"bob"}
    assert not (out / "feedback" / "ada.md").exists() and not (out / "gradescope" / "ada.json").exists()


def test_regrading_one_lesson_keeps_the_other_lessons(tmp_path: Path) -> None:
    subs, out = tmp_path / "subs", tmp_path / "grades"
    _student(subs / "ada")
    _grade(subs, out)
    before = json.loads((out / "store" / "ada.json").read_text())
    done = course("grade", subs, "--lessons", "4", "--out", out, "--jobs", 1)
    assert done.returncode == 0, done.stderr[-2000:]
    after = json.loads((out / "store" / "ada.json").read_text())
    assert [l["lesson"] for l in after["lessons"]] == ["lesson-1", "lesson-4"]
    assert after["lessons"][0] == before["lessons"][0], "lesson 1 was kept as graded, not graded again"
    assert after["graded"]["lesson-1"] == before["graded"]["lesson-1"] != after["graded"]["lesson-4"]
    row = _rows(out / "gradebook.csv")["ada"]
    assert row["lesson-1"] and row["lesson-4"] and float(row["total"]) == after["earned"]


def test_a_resubmission_that_cannot_be_opened_shows_no_older_grade(tmp_path: Path) -> None:
    subs, out = tmp_path / "subs", tmp_path / "grades"
    _student(subs / "ada")
    _grade(subs, out)
    assert float(_rows(out / "gradebook.csv")["ada"]["total"]) > 0
    shutil.rmtree(subs / "ada")
    (subs / "ada.zip").write_bytes(b"not a zip")  # ada hands in again, broken
    done = course("grade", subs, "--lessons", "1", "--out", out)
    assert done.returncode == 1
    row = _rows(out / "gradebook.csv")["ada"]
    assert row["total"] == "0" and not row.get("lesson-1") and "not a readable zip" in row["error"]


def test_resume_continues_only_the_interrupted_run(tmp_path: Path) -> None:
    subs, out = tmp_path / "subs", tmp_path / "grades"
    assert course("grade", subs, "--resume", "--out", out).returncode == 2, "nothing to resume yet"
    for name in ("ada", "bob"):
        _student(subs / name)
    _grade(subs, out)
    stored = json.loads((out / "store" / "ada.json").read_text())
    stored["lessons"][0]["checks"][0]["message"] = "kept from the interrupted run"
    (out / "store" / "ada.json").write_text(json.dumps(stored))
    (out / "store" / "bob.json").unlink()  # the run stopped before bob
    _grade(subs, out, "--resume")
    assert json.loads((out / "store" / "ada.json").read_text())["lessons"][0]["checks"][0]["message"] == \
        "kept from the interrupted run"
    assert (out / "store" / "bob.json").is_file() and set(_rows(out / "gradebook.csv")) == {"ada", "bob"}
    _grade(subs, out)  # a new run grades everyone again
    assert json.loads((out / "store" / "ada.json").read_text())["lessons"][0]["checks"][0]["message"] != \
        "kept from the interrupted run"


def test_colliding_student_ids_are_an_error_naming_both(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    _student(subs / "dup")
    with zipfile.ZipFile(subs / "dup.zip", "w") as archive:
        archive.writestr("capstone/pyproject.toml", "")
    done = course("grade", subs, "--lessons", "1", "--out", tmp_path / "grades")
    assert done.returncode == 2
    assert "dup/" in done.stderr and "dup.zip" in done.stderr, done.stderr
    assert not (tmp_path / "grades" / "store").exists(), "nothing was graded"
    (subs / "dup.zip").unlink()
    _student(subs / "DUP")  # one file system may keep them apart, a case-insensitive one (or an LMS) cannot
    done = course("grade", subs, "--lessons", "1", "--out", tmp_path / "grades")
    assert done.returncode == 2 and "DUP/" in done.stderr and "dup/" in done.stderr


# ---------------------------------------------------------------- no temporary paths anywhere

def test_no_temporary_path_reaches_a_title_or_feedback(tmp_path: Path) -> None:
    subs, out = tmp_path / "subs", tmp_path / "grades"
    _student(subs / "loud", SOLVED.replace("from __future__ import annotations\n",
                                            "from __future__ import annotations\nraise RuntimeError('at ' + __file__)\n", 1))
    done = course("grade", subs, "--lessons", "1,10", "--quiz", "practice", "--out", out, "--jobs", 1)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    temporary = re.compile(re.escape(tempfile.gettempdir()) + r"/course-(grade|check)")
    for path in out.rglob("*"):
        if path.is_file():
            assert not temporary.search(path.read_text(errors="replace")), f"{path.relative_to(out)} names a temp path"
    messages = json.dumps(json.loads((out / "results.json").read_text()))
    assert f"at capstone/{MODULE}" in messages, "a path inside the submission is shown relative to it"


# ---------------------------------------------------------------- exports built from records

def _check(check_id: str, points: int, outcome: str, message: str = "") -> CheckResult:
    return CheckResult(check_id, f"title of {check_id}", points, outcome, message, hint=f"hint for {check_id}")  # type: ignore[arg-type]


def _records() -> list[SubmissionResult]:
    full = LessonResult("lesson-1", "Context", "ada", [_check("a", 2, "passed"), _check("b", 3, "passed")])
    half = LessonResult("lesson-6", "Scaling", "ada", [_check("sticky", 3, "passed"), _check("bus", 2, "failed", "no")])
    lacking = LessonResult("lesson-6", "Scaling", "bob", [_check("sticky", 3, "passed"),
                                                         _check("bus", 2, "skipped", not_graded_message("redis-server"))])
    broken = LessonResult("lesson-1", "Context", "bob", error="grading did not finish for this lesson")
    return [SubmissionResult("ada", [full, half]), SubmissionResult("bob", [broken, lacking]),
            SubmissionResult("=HYPERLINK(\"http://x\")", [LessonResult("lesson-1", "Context", "x", [_check("a", 2, "failed")])]),
            SubmissionResult("zoe", error="not a readable zip file")]


def test_lms_csv_is_canvas_shaped_utf8_with_bom_and_formula_safe(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("login,Name,SIS User ID,Section\nada,Ada Lovelace,S-001,A\nbob,Bőb Ærø,+SUM(A1),B\n"
                      "zoe,@zoe,S-003,A\n", encoding="utf-8")
    write_all(_records(), tmp_path / "out", sandbox={"mode": "users"}, course=COURSE, roster=read_roster(roster))
    raw = (tmp_path / "out" / "lms.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "UTF-8 with a byte-order mark, so spreadsheets keep non-ASCII names"
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, possible, *students = rows
    assert header[:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    assert header[5:] == [f"lesson-1: {COURSE.lesson('lesson-1').title}", f"lesson-6: {COURSE.lesson('lesson-6').title}",
                          "Final Points", "Final Score"]
    assert possible[0] == "Points Possible" and possible[5:7] == ["5", "5"]
    by_name = {row[0]: row for row in students}
    assert by_name["Ada Lovelace"][2:5] == ["S-001", "", "A"] and by_name["Ada Lovelace"][5:] == ["5", "3", "8", "80.0"]
    bob = by_name["Bőb Ærø"]
    assert bob[2] == "'+SUM(A1)", "a cell that would start a formula is escaped"
    assert bob[5:] == ["", "3", "3", "100.0"], "a lesson the grader could not finish is left blank; not graded is not counted"
    assert by_name["'=HYPERLINK(\"http://x\")"][5] == "0"
    assert by_name["'@zoe"][-2:] == ["0", "0.0"], "a submission that could not be opened scores 0"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    gradebook = list(csv.reader((tmp_path / "out" / "gradebook.csv").open(encoding="utf-8")))
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in gradebook for cell in row)


class _Tables(HTMLParser):
    """Each <table>'s class and its rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append((dict(attrs).get("class") or "", []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell))
            self._cell = None


def test_class_report_has_a_sortable_student_table_and_marks_what_the_grader_lacked(tmp_path: Path) -> None:
    write_all(_records(), tmp_path, sandbox={"mode": "bubblewrap"}, course=COURSE)
    report = (tmp_path / "report.html").read_text()
    parser = _Tables()
    parser.feed(report)
    (_, students), (_, checks) = parser.tables
    assert all(cls == "sortable" for cls, _ in parser.tables) and "<script>" in report
    head, *rows = students
    assert head[:5] == ["student", "name", "total", "possible", "%"] and "not graded" in head
    assert sorted(row[0] for row in rows) == sorted(r.id for r in _records())
    bob = next(row for row in rows if row[0] == "bob")
    assert bob[head.index("not graded")] == "1" and "grading did not finish" in bob[head.index("problems")]
    bus = next(row for row in checks[1:] if row[1] == "title of bus")
    assert bus[2] == "0%" and bus[3] == "1" and "grader lacks redis-server" in bus[4], \
        "the pass rate counts only students the check was graded for"
    assert "Not graded on this grading machine" in report and "--lessons lesson-6" in report
    gradescope = json.loads((tmp_path / "gradescope" / "bob.json").read_text())
    (test,) = [t for t in gradescope["tests"] if t["number"] == "lesson-6.bus"]
    assert test["max_score"] == 0 and "status" not in test and "not graded" in test["name"]
    assert "not graded: the grading machine lacks redis-server" in (tmp_path / "feedback" / "bob.md").read_text()
