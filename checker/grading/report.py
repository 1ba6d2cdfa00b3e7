"""The class report: `report.html` with `histogram.svg`, for an instructor reading a whole class at once.

It answers, in order: is anything wrong with grading itself (checks the grading machine could not
run, submissions that could not be opened), how did each student do (a table sortable by any
column, with no JavaScript library), and which checks the class found hardest. Pass rates count
only the students a check was graded for: a check the machine could not run is marked as such,
never shown as a 0 % the students earned.
"""

from __future__ import annotations

import html
import statistics
from collections import Counter
from dataclasses import dataclass, field

from checker.grading.record import SubmissionResult, missing_program
from checker.grading.roster import Person


def _fmt(points: float) -> str:
    return f"{points:g}"


def histogram_svg(scores: list[float], maximum: float, bins: int = 10) -> str:
    """A plain SVG bar chart of the score distribution."""
    counts = [0] * bins
    for score in scores:
        index = min(bins - 1, int(bins * score / maximum)) if maximum else 0
        counts[index] += 1
    width, height, pad = 520, 240, 30
    bar = (width - 2 * pad) / bins
    top = max(counts) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="11">',
        f'<text x="{pad}" y="16">Score distribution ({len(scores)} submissions)</text>',
    ]
    for i, count in enumerate(counts):
        h = (height - 2 * pad - 10) * count / top
        x, y = pad + i * bar, height - pad - h
        parts.append(f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" fill="#4c78a8"/>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" text-anchor="middle">{count}</text>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - pad + 14}" text-anchor="middle">'
                     f'{round(100 * i / bins)}%</text>')
    parts.append("</svg>")
    return "\n".join(parts)


@dataclass
class _CheckStats:
    lesson: str
    title: str
    passed: int = 0
    graded: int = 0
    missing: Counter[str] = field(default_factory=Counter)  # program the grader lacked -> students not graded


def _check_stats(results: list[SubmissionResult]) -> list[_CheckStats]:
    stats: dict[tuple[str, str], _CheckStats] = {}
    for sub in results:
        for lesson in sub.lessons:
            for check in lesson.checks:
                entry = stats.setdefault((lesson.lesson, check.id), _CheckStats(lesson.lesson, check.title))
                program = missing_program(check)
                if program:
                    entry.missing[program] += 1
                elif check.points or check.outcome != "skipped":
                    entry.graded += 1
                    entry.passed += check.passed
    return list(stats.values())


def _cell(text: str, sort: object | None = None, css: str = "") -> str:
    """A table cell; `sort` is the value the table sorts it by (a number where the text is "12/20")."""
    attrs = f' data-sort="{html.escape(str(sort))}"' if sort is not None else ""
    attrs += f' class="{css}"' if css else ""
    return f"<td{attrs}>{html.escape(text)}</td>"


def _student_rows(results: list[SubmissionResult], lessons: list[str], roster: dict[str, Person]) -> str:
    rows = []
    for sub in results:
        person = roster.get(sub.id.casefold())
        percent = 100 * sub.earned / sub.available if sub.available else 0.0
        not_graded = [c for lesson in sub.lessons for c in lesson.checks if missing_program(c)]
        problems = (
            [sub.error] if sub.error else [f"{lesson.lesson}: {lesson.error}" for lesson in sub.lessons if lesson.error]
        )
        cells = [_cell(sub.id), _cell(person.name if person else ""),
                 _cell(_fmt(sub.earned), sub.earned), _cell(_fmt(sub.available), sub.available),
                 _cell(f"{percent:.0f}%", round(percent, 3))]
        for lesson_id in lessons:
            lesson = sub.lesson(lesson_id)
            if lesson is None:
                cells.append(_cell("—", -1))
            elif lesson.error:
                cells.append(_cell("error", -1, "problem"))
            else:
                cells.append(_cell(f"{_fmt(lesson.earned)}/{_fmt(lesson.available)}", lesson.earned))
        cells.append(_cell(str(len(not_graded)) if not_graded else "", len(not_graded), "env" if not_graded else ""))
        cells.append(_cell("; ".join(problems)[:300], None, "problem" if problems else ""))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(rows)


SORT_SCRIPT = """<script>
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const body = table.tBodies[0], down = th.dataset.dir !== "down";
    const key = row => { const c = row.cells[column]; const v = c.dataset.sort ?? c.textContent;
                         return v !== "" && !isNaN(v) ? Number(v) : v.toLowerCase(); };
    const rows = [...body.rows].sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * (down ? -1 : 1));
    table.querySelectorAll("th").forEach(other => delete other.dataset.dir);
    th.dataset.dir = down ? "down" : "up";
    body.append(...rows);
  }));
}
</script>"""


def class_report_html(results: list[SubmissionResult], roster: dict[str, Person] | None = None,
                      sandbox: str = "") -> str:
    roster = roster or {}
    graded = [sub for sub in results if not sub.error]
    maximum = max((sub.available for sub in graded), default=0)
    scores = [sub.earned for sub in graded]
    mean = statistics.mean(scores) if scores else 0.0
    median = statistics.median(scores) if scores else 0.0
    lessons = list(dict.fromkeys(lesson.lesson for sub in results for lesson in sub.lessons))
    stats = _check_stats(results)
    lacking: Counter[str] = Counter()
    for entry in stats:
        lacking.update(entry.missing)
    warning = ""
    if lacking:
        affected = sorted({e.lesson for e in stats if e.missing})
        warning = (
            f'<p class="env"><b>Not graded on this grading machine:</b> '
            f"{html.escape(', '.join(f'{n} check results need {p}' for p, n in sorted(lacking.items())))}. "
            f"These checks are left out of those students' possible points, not counted against them. "
            f"Install what is missing and regrade just those lessons: "
            f"<code>course grade SUBMISSIONS --out GRADES --lessons {html.escape(','.join(affected))}</code>.</p>"
        )
    check_rows = []
    for entry in sorted(stats, key=lambda e: (e.passed / e.graded if e.graded else 2.0, e.lesson)):
        rate = 100 * entry.passed / entry.graded if entry.graded else None
        env = ", ".join(f"{n} (grader lacks {p})" for p, n in sorted(entry.missing.items()))
        check_rows.append(
            "<tr>"
            + _cell(entry.lesson)
            + _cell(entry.title)
            + _cell(f"{rate:.0f}%" if rate is not None else "not graded", rate if rate is not None else -1)
            + _cell(str(entry.graded), entry.graded)
            + _cell(env, sum(entry.missing.values()), "env" if env else "")
            + "</tr>"
        )
    failed = "".join(f"<li>{html.escape(sub.id)}: {html.escape(sub.error)}</li>" for sub in results if sub.error)
    lesson_heads = "".join(f"<th>{html.escape(lesson)}</th>" for lesson in lessons)
    mode = f" Student code ran in the sandbox mode: {html.escape(sandbox)}." if sandbox else ""
    return f"""<!doctype html><meta charset="utf-8"><title>Class report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd}}
th{{cursor:pointer;text-align:left}}th[data-dir=up]::after{{content:" ▲"}}th[data-dir=down]::after{{content:" ▼"}}
.env{{background:#fff4d6}}.problem{{color:#a40000}}</style>
<h1>Class report</h1>
<p>{len(results)} submissions, {len(graded)} graded; mean score {mean:.1f}, median {median:g} / {maximum:g}.{mode}</p>
{warning}
<img src="histogram.svg" alt="score histogram">
<h2>Students</h2>
<p>Click a column to sort.</p>
<table class="sortable"><thead><tr>
<th>student</th><th>name</th><th>total</th><th>possible</th><th>%</th>{lesson_heads}<th>not graded</th><th>problems</th>
</tr></thead>
<tbody>
{_student_rows(results, lessons, roster)}
</tbody></table>
<h2>Checks, hardest first</h2>
<p>Pass rate among the students each check was graded for.</p>
<table class="sortable"><thead><tr>
<th>lesson</th><th>check</th><th>pass rate</th><th>graded</th><th>not graded (grading machine)</th>
</tr></thead>
<tbody>
{chr(10).join(check_rows)}
</tbody></table>
{"<h2>Could not be graded</h2><ul>" + failed + "</ul>" if failed else ""}
{SORT_SCRIPT}
"""
