"""`check("lesson-3")` inside a notebook: the same checks and report as the terminal.

It grades the edition the notebook itself imports (`research_desk` as the kernel sees it), so
what you ran in the cells above is exactly what gets checked.
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path

from rich.console import Console
from rich.terminal_theme import TerminalTheme

from checker.registry import load_course
from checker.runner.results import LessonResult


class CheckReport:
    """A lesson result that displays itself: rich HTML in Jupyter, plain text elsewhere."""

    def __init__(self, result: LessonResult) -> None:
        self.result = result

    @property
    def ok(self) -> bool:
        return self.result.ok

    def _render(self, html: bool) -> str:
        from checker.cli.render import lesson_report

        console = Console(record=True, width=100, file=io.StringIO(), force_jupyter=False, force_terminal=html)
        console.print(lesson_report(self.result))
        if not html:
            return console.export_text()
        # A fragment, not a page: a full HTML document's <style> would restyle JupyterLab's own body.
        return console.export_html(inline_styles=True, theme=_OUTPUT_THEME, code_format=_HTML_FRAGMENT)

    def _repr_html_(self) -> str:
        return self._render(html=True)

    def __repr__(self) -> str:
        return self._render(html=False)


# Mid-tone colours that stay readable on JupyterLab's light and dark themes alike.
_OUTPUT_THEME = TerminalTheme(
    (255, 255, 255), (0, 0, 0),
    [(0, 0, 0), (198, 40, 40), (46, 125, 50), (178, 106, 0), (21, 101, 192), (142, 36, 170), (0, 131, 143),
     (117, 117, 117)],
    [(117, 117, 117), (229, 57, 53), (67, 160, 71), (196, 140, 0), (30, 136, 229), (171, 71, 188), (0, 172, 193),
     (158, 158, 158)],
)
_HTML_FRAGMENT = ('<pre class="course-check-report" style="white-space:pre-wrap;line-height:1.45;'
                  'font-family:var(--jp-code-font-family,monospace);font-size:var(--jp-code-font-size,13px);'
                  'margin:0"><code style="font-family:inherit">{code}</code></pre>')


def _imported_edition(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).resolve().parent


def check(lesson: str) -> CheckReport:
    """Run a lesson's checks against the package this kernel imports and show the report.

    With COURSE_NOTEBOOK_STRICT=1 (the course's own notebook tests) a failure raises, so a
    broken reference solution cannot hide behind a nicely rendered red cross.
    """
    from checker.runner.lesson import run_lesson
    from checker.student.progress import record

    course = load_course()
    chosen = course.lesson(lesson)
    edition = _imported_edition(course.package)
    against = "starter"
    if edition is not None and edition == course.solutions.resolve():
        against = "solutions"
    elif edition is not None and edition != course.starter.resolve():
        against = str(edition)
    result = run_lesson(course, chosen, against)
    if against == "starter" and not result.error:
        record(course.state_dir, result)
    if os.environ.get("COURSE_NOTEBOOK_STRICT") == "1" and not result.ok:
        raise AssertionError(f"{chosen.id} checks failed against {against}:\n{CheckReport(result)!r}")
    return CheckReport(result)
