"""Grades in the formats instructors' platforms take, all from one result model.

CSV gradebook (one row per student), JUnit XML (CI dashboards), Gradescope `results.json`
(one per submission), per-student Markdown feedback, and a class report (HTML with per-check
pass rates and a score histogram drawn as SVG, so no plotting library is needed).
"""

from __future__ import annotations

import csv
import html
import json
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree as ET

from checker.grading.batch import SubmissionResult
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
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student", "total", "available", *lessons, *(f"{l}:{c}" for l, c in checks), "error"])
        for sub in results:
            by_lesson = {lesson.lesson: lesson for lesson in sub.lessons}
            earned = {(lesson.lesson, c.id): c.earned for lesson in sub.lessons for c in lesson.checks}
            writer.writerow([
                sub.id, _fmt(sub.earned), _fmt(sub.available),
                *(_fmt(by_lesson[l].earned) if l in by_lesson else "" for l in lessons),
                *(_fmt(earned[key]) if key in earned else "" for key in checks),
                sub.error or "; ".join(f"{l.lesson}: {l.error}" for l in sub.lessons if l.error),
            ])


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


def gradescope_results(sub: SubmissionResult) -> dict[str, object]:
    """Gradescope's autograder `results.json` (score, execution_time, output, tests[])."""
    tests: list[dict[str, object]] = []
    for lesson in sub.lessons:
        if lesson.error:
            tests.append({"name": f"{lesson.lesson}: could not be checked", "score": 0.0,
                          "max_score": float(lesson.available), "status": "failed", "output": lesson.error,
                          "visibility": "visible"})
        if lesson.broken:
            tests.append({"name": f"{lesson.lesson}: your code does not import", "score": 0.0, "max_score": 0.0,
                          "status": "failed", "output": broken_text(lesson.broken), "visibility": "visible"})
        for check in lesson.checks:
            output = "" if check.passed else check.message + (f"\n\nHint: {check.hint}" if check.hint else "")
            tests.append({"name": f"{lesson.lesson}: {check.title}", "number": f"{lesson.lesson}.{check.id}",
                          "score": float(check.earned), "max_score": float(check.points),
                          "status": "passed" if check.passed else "failed", "output": output,
                          "visibility": "visible"})
    return {"score": float(sub.earned), "execution_time": round(sub.duration, 2),
            "output": sub.error or f"{_fmt(sub.earned)} of {_fmt(sub.available)} points",
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


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
            if check.outcome == "failed" and not lesson.broken:
                lines.append(f"  - what happened: {check.message.splitlines()[0] if check.message else 'failed'}")
                lines.append(f"  - hint: {check.hint}")
        lines.append("")
    return "\n".join(lines)


def histogram_svg(scores: list[float], maximum: float, bins: int = 10) -> str:
    """A plain SVG bar chart of the score distribution."""
    counts = [0] * bins
    for score in scores:
        index = min(bins - 1, int(bins * score / maximum)) if maximum else 0
        counts[index] += 1
    width, height, pad = 520, 240, 30
    bar = (width - 2 * pad) / bins
    top = max(counts) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
             f'<text x="{pad}" y="16">Score distribution ({len(scores)} submissions)</text>']
    for i, count in enumerate(counts):
        h = (height - 2 * pad - 10) * count / top
        x, y = pad + i * bar, height - pad - h
        parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" fill="#4c78a8"/>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - pad + 14}" text-anchor="middle">'
                     f'{round(100 * i / bins)}%</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def class_report_html(results: list[SubmissionResult]) -> str:
    graded = [sub for sub in results if not sub.error]
    rates: dict[tuple[str, str, str], list[bool]] = {}
    for sub in graded:
        for lesson in sub.lessons:
            for check in lesson.checks:
                rates.setdefault((lesson.lesson, check.id, check.title), []).append(check.passed)
    maximum = max((sub.available for sub in graded), default=0)
    rows = "\n".join(
        f"<tr><td>{html.escape(l)}</td><td>{html.escape(t)}</td><td>{100 * sum(v) / len(v):.0f}%</td><td>{len(v)}</td></tr>"
        for (l, _, t), v in sorted(rates.items(), key=lambda kv: sum(kv[1]) / len(kv[1])))
    failed = "".join(f"<li>{html.escape(sub.id)}: {html.escape(sub.error)}</li>" for sub in results if sub.error)
    mean = sum(sub.earned for sub in graded) / len(graded) if graded else 0
    return f"""<!doctype html><meta charset="utf-8"><title>Class report</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto}}td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}</style>
<h1>Class report</h1>
<p>{len(results)} submissions, {len(graded)} graded; mean score {mean:.1f} / {maximum:g}.</p>
<img src="histogram.svg" alt="score histogram">
<h2>Checks, hardest first</h2>
<table><tr><th>lesson</th><th>check</th><th>pass rate</th><th>n</th></tr>
{rows}
</table>
{"<h2>Could not be graded</h2><ul>" + failed + "</ul>" if failed else ""}
"""


def write_all(results: list[SubmissionResult], out: Path, sandbox: dict[str, object] | None = None) -> list[Path]:
    """Every export into `out`; returns the files written. `sandbox` says how student code was confined."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    (out / "gradescope").mkdir(exist_ok=True)
    written = [out / "gradebook.csv", out / "junit.xml", out / "report.html", out / "histogram.svg", out / "results.json"]
    write_csv(results, out / "gradebook.csv")
    write_junit(results, out / "junit.xml")
    graded = [sub for sub in results if not sub.error]
    maximum = max((sub.available for sub in graded), default=0)
    (out / "histogram.svg").write_text(histogram_svg([sub.earned for sub in graded], maximum))
    (out / "report.html").write_text(class_report_html(results))
    (out / "results.json").write_text(json.dumps({"sandbox": sandbox or {}, "submissions": [sub.to_json() for sub in results]},
                                                 indent=1))
    for sub in results:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in sub.id)
        (out / "feedback" / f"{safe}.md").write_text(feedback_markdown(sub))
        (out / "gradescope" / f"{safe}.json").write_text(json.dumps(gradescope_results(sub), indent=1))
        written += [out / "feedback" / f"{safe}.md", out / "gradescope" / f"{safe}.json"]
    return written
