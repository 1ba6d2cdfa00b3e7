"""Grades in the formats instructors' platforms take, all rebuilt from the whole grade store.

CSV gradebook (one row per student, a column per lesson and per check), the Canvas-style LMS
CSV (`checker.grading.lms`), JUnit XML (CI dashboards), Gradescope `results.json` (one per
submission), per-student Markdown feedback, the class report (`checker.grading.report`) and
`results.json` (everything). `write_all` rewrites every file from the records it is given and
removes per-student files of anyone no longer among them, so the exports never mix two runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree as ET

from checker.grading.lms import write_lms_csv, write_rows
from checker.grading.record import SubmissionResult, missing_program
from checker.grading.report import class_report_html, histogram_svg
from checker.grading.roster import Person
from checker.grading.submissions import safe_name
from checker.registry import Course
from checker.runner.results import BrokenModule, CheckResult, LessonResult


def _fmt(points: float) -> str:
    return f"{points:g}"


def check_columns(results: Iterable[SubmissionResult]) -> list[tuple[str, str]]:
    """(lesson id, check id) for every check any submission reported, in first-seen order."""
    seen: dict[tuple[str, str], None] = {}
    for sub in results:
        for lesson in sub.lessons:
            for check in lesson.checks:
                seen.setdefault((lesson.lesson, check.id), None)
    return list(seen)


def write_csv(results: list[SubmissionResult], path: Path) -> None:
    lessons = list(dict.fromkeys(lesson.lesson for sub in results for lesson in sub.lessons))
    checks = check_columns(results)
    rows: list[list[object]] = [
        ["student", "total", "available", *lessons, *(f"{lesson}:{check}" for lesson, check in checks), "error"]
    ]
    for sub in results:
        by_lesson = {lesson.lesson: lesson for lesson in sub.lessons}
        earned = {(lesson.lesson, c.id): c.earned for lesson in sub.lessons for c in lesson.checks}
        rows.append([
            sub.id, _fmt(sub.earned), _fmt(sub.available),
            *(_fmt(by_lesson[lesson].earned) if lesson in by_lesson else "" for lesson in lessons),
            *(_fmt(earned[key]) if key in earned else "" for key in checks),
            sub.error or "; ".join(f"{lesson.lesson}: {lesson.error}" for lesson in sub.lessons if lesson.error),
        ])
    write_rows(path, rows)


def _testcase(suite: ET.Element, lesson: LessonResult, check: CheckResult) -> None:
    case = ET.SubElement(suite, "testcase", name=check.title, classname=f"{lesson.lesson}.{check.id}",
                         time=f"{check.duration:.3f}")
    if check.outcome == "failed":
        ET.SubElement(case, "failure", message=check.message.splitlines()[0] if check.message else "failed").text = (
            f"{check.message}\n\nhint: {check.hint}")
    elif check.outcome == "skipped":
        ET.SubElement(case, "skipped", message=check.message)


def write_junit(results: list[SubmissionResult], path: Path) -> None:
    root = ET.Element("testsuites", name="course grade")
    for sub in results:
        if sub.error:
            suite = ET.SubElement(root, "testsuite", name=sub.id, tests="1", failures="0", errors="1")
            ET.SubElement(ET.SubElement(suite, "testcase", name="grading", classname=sub.id), "error",
                          message=sub.error)
            continue
        for lesson in sub.lessons:
            suite = ET.SubElement(root, "testsuite", name=f"{sub.id}.{lesson.lesson}", tests=str(len(lesson.checks)),
                                  failures=str(lesson.failed), skipped=str(lesson.skipped),
                                  errors="1" if lesson.error else "0", time=f"{lesson.duration:.3f}")
            if lesson.error:
                ET.SubElement(ET.SubElement(suite, "testcase", name="grading", classname=lesson.lesson), "error",
                              message=lesson.error.splitlines()[0] if lesson.error else "")
            for check in lesson.checks:
                _testcase(suite, lesson, check)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def gradescope_results(sub: SubmissionResult, sandbox: str = "") -> dict[str, object]:
    """Gradescope's autograder `results.json` (score, execution_time, output, tests[]).

    A check the grading machine could not run is shown as such, worth 0 of 0 points and without a
    pass/fail status, so the student never sees it as a failure of theirs.
    """
    tests: list[dict[str, object]] = []
    for lesson in sub.lessons:
        if lesson.error:
            tests.append(
                {
                    "name": f"{lesson.lesson}: could not be checked",
                    "number": f"{lesson.lesson}.grading",
                    "score": 0.0,
                    "max_score": float(lesson.available),
                    "status": "failed",
                    "output": lesson.error,
                    "visibility": "visible",
                }
            )
        if lesson.broken:
            tests.append({"name": f"{lesson.lesson}: your code does not import", "number": f"{lesson.lesson}.imports",
                          "score": 0.0, "max_score": 0.0,
                          "status": "failed", "output": broken_text(lesson.broken), "visibility": "visible"})
        for check in lesson.checks:
            test: dict[str, object] = {
                "name": f"{lesson.lesson}: {check.title}",
                "number": f"{lesson.lesson}.{check.id}",
                "score": float(check.earned),
                "max_score": float(check.points),
                "status": "passed" if check.passed else "failed",
                "output": "" if check.passed else check.message + (f"\n\nHint: {check.hint}" if check.hint else ""),
                "visibility": "visible",
            }
            if missing_program(check):
                test.update(name=f"{lesson.lesson}: {check.title} (not graded)", max_score=0.0, output=check.message)
                del test["status"]
            tests.append(test)
    return {"score": float(sub.earned), "execution_time": round(sub.duration, 2),
            "output": sub.error or f"{_fmt(sub.earned)} of {_fmt(sub.available)} points",
            "visibility": "visible", "stdout_visibility": "hidden",
            "extra_data": {"sandbox": sandbox} if sandbox else {}, "tests": tests}


def broken_text(broken: list[BrokenModule]) -> str:
    """The import report as plain text: the same lines `course check` shows."""
    return "\n\n".join("\n".join([report.headline(), *("  " + line for line in report.details())])
                       for report in broken)


def feedback_markdown(sub: SubmissionResult) -> str:
    lines = [f"# Feedback for {sub.id}", "", f"**Score: {_fmt(sub.earned)} / {_fmt(sub.available)}**", ""]
    if sub.error:
        lines += [f"Your submission could not be graded: {sub.error}", ""]
    for lesson in sub.lessons:
        lines += [f"## {lesson.lesson} — {lesson.title}: {_fmt(lesson.earned)} / {_fmt(lesson.available)}", ""]
        if lesson.error:
            lines += [f"Could not be checked: {lesson.error}", ""]
        if lesson.broken:
            lines += ["Your code does not import, so no check of this lesson could run:", "", "```",
                      broken_text(lesson.broken), "```", ""]
        for check in lesson.checks:
            mark = {"passed": "✓", "failed": "✗", "skipped": "○"}[check.outcome]
            lines.append(f"- {mark} {check.title} ({_fmt(check.earned)}/{check.points})")
            if missing_program(check):
                lines.append(f"  - {check.message}")
            elif check.outcome == "failed" and not lesson.broken:
                lines.append(f"  - what happened: {check.message.splitlines()[0] if check.message else 'failed'}")
                lines.append(f"  - hint: {check.hint}")
        lines.append("")
    return "\n".join(lines)


def write_all(results: list[SubmissionResult], out: Path, sandbox: dict[str, object] | None = None, *,
              course: Course | None = None, roster: dict[str, Person] | None = None) -> list[Path]:
    """Every export into `out` from `results` (the whole store); returns the files written.

    `sandbox` says how student code was confined (results.json, the report); `roster` names the
    students in the LMS CSV and the report; `course` gives the LMS CSV its lesson titles and order.
    """
    results = sorted(results, key=lambda sub: sub.id)
    roster = roster or {}
    mode = str((sandbox or {}).get("mode", ""))
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    (out / "gradescope").mkdir(exist_ok=True)
    written = [out / name for name in ("gradebook.csv", "lms.csv", "junit.xml", "report.html", "histogram.svg",
                                       "results.json")]
    write_csv(results, out / "gradebook.csv")
    write_lms_csv(results, roster, out / "lms.csv", course)
    write_junit(results, out / "junit.xml")
    graded = [sub for sub in results if not sub.error]
    maximum = max((sub.available for sub in graded), default=0)
    (out / "histogram.svg").write_text(histogram_svg([sub.earned for sub in graded], maximum))
    (out / "report.html").write_text(class_report_html(results, roster, mode), encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({"sandbox": sandbox or {}, "submissions": [sub.to_json() for sub in results]}, indent=1)
    )
    for sub in results:
        safe = safe_name(sub.id)
        (out / "feedback" / f"{safe}.md").write_text(feedback_markdown(sub), encoding="utf-8")
        (out / "gradescope" / f"{safe}.json").write_text(json.dumps(gradescope_results(sub, mode), indent=1))
        written += [out / "feedback" / f"{safe}.md", out / "gradescope" / f"{safe}.json"]
    for folder, suffix in (("feedback", ".md"), ("gradescope", ".json")):
        for stale in (out / folder).glob(f"*{suffix}"):
            if stale not in written:
                stale.unlink()  # a student no longer in the store: their old file would be mistaken for current
    return written
