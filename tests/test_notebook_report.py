"""The notebook's check cell shows what the terminal shows, as an HTML fragment JupyterLab can host."""

from __future__ import annotations

import html
import io
import re

from rich.console import Console

from checker.notebook import CheckReport
from checker.cli.render import lesson_report
from checker.runner.results import CheckResult, LessonResult

RESULT = LessonResult(lesson="lesson-3", title="Progress & logging", edition="starter", duration=0.42, checks=[
    CheckResult("reports_progress", "reports absolute progress", 3, "passed"),
    CheckResult("logs_to_stderr", "logs go to stderr, never stdout", 2, "failed",
                message="a log line reached stdout: <stdout> is the wire & must stay clean",
                hint="Give the `research_desk` logger its own handler."),
    CheckResult("needs_redis", "the bus works across replicas", 2, "skipped", message="needs redis-server"),
])


def _terminal_text(result: LessonResult) -> str:
    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(lesson_report(result))
    return console.export_text()


def _strip(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def test_html_holds_the_same_lines_as_the_terminal() -> None:
    fragment = CheckReport(RESULT)._repr_html_()
    terminal = [line.rstrip() for line in _terminal_text(RESULT).splitlines()]
    assert [line.rstrip() for line in _strip(fragment).splitlines()] == terminal
    assert "✓" in fragment and "✗" in fragment and "hint: " in _strip(fragment)


def test_html_is_a_fragment_that_cannot_restyle_jupyterlab() -> None:
    fragment = CheckReport(RESULT)._repr_html_()
    assert fragment.startswith('<pre class="course-check-report"')
    for forbidden in ("<html", "<body", "<style", "<script"):
        assert forbidden not in fragment.lower()
    assert "&lt;stdout&gt;" in fragment and "&amp;" in fragment, "student-facing text must be escaped"
    assert "color: #c62828" in fragment, "failures are red (a mid-tone that reads on light and dark themes)"


def test_plain_repr_for_consoles_and_logs() -> None:
    assert repr(CheckReport(RESULT)).splitlines()[0].startswith("lesson-3")
    assert "<" not in repr(CheckReport(RESULT)).replace("<stdout>", "")
