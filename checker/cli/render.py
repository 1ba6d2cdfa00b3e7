"""How results look to a person: one line per check, reasons and hints for failures, a summary.

The same renderables serve the terminal and the notebook (rich renders to HTML in Jupyter).
"""

from __future__ import annotations

from rich import box
from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from checker.registry import RUN
from checker.runner.results import BrokenModule, CheckResult, LessonResult
from checker.student.nextstep import NextStep

MARKS = {"passed": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("○", "yellow")}


def hanging(mark: Text, body: Text) -> Table:
    """`mark` then `body`, whose wrapped lines stay under its first word (never back at column 0)."""
    grid = Table.grid()
    grid.add_column(width=mark.cell_len, no_wrap=True)
    grid.add_column()
    grid.add_row(mark, body)
    return grid


def indented(text: Text, by: int = 5) -> Padding:
    return Padding(text, (0, 0, 0, by), expand=False)


def _check_lines(check: CheckResult, show_hints: bool) -> list[RenderableType]:
    mark, colour = MARKS[check.outcome]
    points = f"{check.earned}/{check.points} pt" if check.outcome != "skipped" else f"skipped, {check.points} pt"
    out: list[RenderableType] = [hanging(Text(f" {mark} ", style=f"bold {colour}"),
                                         Text.assemble(check.title, (f"  ({points})", "dim")))]
    if check.outcome == "failed":
        out.append(indented(Text(check.message, style="red")))
        if show_hints and check.hint:
            out.append(indented(Text.assemble(("hint: ", "bold cyan"), check.hint)))
    elif check.outcome == "skipped" and check.message:
        out.append(indented(Text(check.message, style="yellow")))
    return out


def broken_lines(broken: list[BrokenModule]) -> list[RenderableType]:
    """Each module that does not import, once, like a compiler error: file, line, code, error, fix."""
    out: list[RenderableType] = []
    for report in broken:
        out.append(hanging(Text(" ✗ ", style="bold red"),
                           Text.assemble((report.headline(), "bold"), ", so no check could run")))
        for line in report.details():
            if line.startswith("fix: "):
                styled = Text.assemble(("fix: ", "bold cyan"), line.removeprefix("fix: "))
            else:
                styled = Text(line, style="red" if line == report.error or line.strip().endswith("^") else "")
            out.append(indented(styled))
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


STATUS_STYLES = {"passed": "green", "in progress": "yellow", "not started": "", "coming soon": "dim"}


def lessons_table(rows: list[dict[str, object]]) -> Table:
    """Every lesson on one line each at 80 columns: titles wrap, the command to type never does."""
    table = Table(title="Advanced MCP Server Development", title_style="bold", box=box.SIMPLE_HEAD,
                  show_edge=False, pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("lesson", ratio=1, overflow="fold")
    table.add_column("status", no_wrap=True)
    table.add_column("points", justify="right", no_wrap=True)
    table.add_column("next step", no_wrap=True)
    for row in rows:
        status = str(row["status"])
        soon = status == "coming soon"
        table.add_row(str(row["id"]).removeprefix("lesson-"), str(row["title"]),
                      Text(status, style=STATUS_STYLES[status]),
                      "—" if soon else f"{row['earned']}/{row['available']}", "—" if soon else str(row["next"]))
    return table


def next_step_lines(step: NextStep) -> list[RenderableType]:
    """`course next`: the lesson, its notebook, what to fix first and the commands, each on its own line."""
    number = (step.lesson or "").rsplit("-", 1)[-1]
    lines: list[RenderableType] = [
        hanging(Text("Next: ", style="bold"),
                Text.assemble((str(step.lesson), "bold"), f" — {step.title} ({step.status})")),
        hanging(Text("  notebook: "), Text(f"{step.notebook}   ({RUN} open {number})")),
    ]
    if step.failing:
        lines.append(hanging(Text("  fix first: "),
                             Text.assemble((step.failing_title, "red"), (f"  ({step.failing})", "dim"))))
        lines.append(hanging(Text("  hint: "), Text(step.hint, style="cyan")))
        lines.append(Text(f"  then: {RUN} check {number}   (or keep `{RUN} watch {number}` running)"))
    else:
        lines.append(Text(f"  write the TODO({step.lesson}) parts, then: {RUN} check {number}"))
    return lines
