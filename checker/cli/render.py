"""How results look to a person: one line per check, reasons and hints for failures, a summary.

The same renderables serve the terminal and the notebook (rich renders to HTML in Jupyter).
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from checker.runner.results import BrokenModule, CheckResult, LessonResult

MARKS = {"passed": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("○", "yellow")}


def _check_lines(check: CheckResult, show_hints: bool) -> list[RenderableType]:
    mark, colour = MARKS[check.outcome]
    points = f"{check.earned}/{check.points} pt" if check.outcome != "skipped" else f"skipped, {check.points} pt"
    line = Text.assemble((f" {mark} ", f"bold {colour}"), check.title, (f"  ({points})", "dim"))
    out: list[RenderableType] = [line]
    if check.outcome == "failed":
        out.append(Padding(Text(check.message, style="red"), (0, 0, 0, 5)))
        if show_hints and check.hint:
            out.append(Padding(Text.assemble(("hint: ", "bold cyan"), check.hint), (0, 0, 0, 5)))
    elif check.outcome == "skipped" and check.message:
        out.append(Padding(Text(check.message, style="yellow"), (0, 0, 0, 5)))
    return out


def broken_lines(broken: list[BrokenModule]) -> list[RenderableType]:
    """Each module that does not import, once, like a compiler error: file, line, code, error, fix."""
    out: list[RenderableType] = []
    for report in broken:
        out.append(Text.assemble((" ✗ ", "bold red"), (report.headline(), "bold"), ", so no check could run"))
        for line in report.details():
            if line.startswith("fix: "):
                styled = Text.assemble(("fix: ", "bold cyan"), line.removeprefix("fix: "))
            else:
                styled = Text(line, style="red" if line == report.error or line.strip().endswith("^") else "")
            out.append(Padding(styled, (0, 0, 0, 5)))
    return out


def lesson_report(result: LessonResult, show_hints: bool = True) -> RenderableType:
    header = Text.assemble((f"{result.lesson}", "bold"), f"  {result.title}", (f"   [{result.edition}]", "dim"))
    parts: list[RenderableType] = [header]
    if result.error:
        parts.append(Text(f"could not check this lesson: {result.error}", style="bold red"))
        return Group(*parts)
    if result.broken:
        parts.extend(broken_lines(result.broken))
        parts.append(Text(f" {len(result.checks)} checks not run: fix the import above first", style="dim"))
    else:
        for check in result.checks:
            parts.extend(_check_lines(check, show_hints))
    parts.append(summary_line(result))
    return Group(*parts)


def summary_line(result: LessonResult) -> Text:
    colour = "green" if result.ok else "red"
    text = f"{result.passed} passed, {result.failed} failed"
    if result.skipped:
        text += f", {result.skipped} skipped"
    return Text.assemble((text, f"bold {colour}"),
                         f"  —  {result.earned}/{result.available} points  ({result.duration:.1f} s)")


def lessons_table(rows: list[tuple[str, str, str, str, str]]) -> Table:
    table = Table(title="Advanced MCP Server Development", title_style="bold", show_lines=False)
    for name, justify in (("lesson", "left"), ("title", "left"), ("status", "left"), ("points", "right"), ("next step", "left")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*row)
    return table
