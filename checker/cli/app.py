"""`course`: the lesson runner students and instructors type.

Exit codes: 0 everything asked for passed, 1 a check failed, 2 bad usage (one line, no traceback).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from checker.cli.common import course_or_exit, fail_usage, lesson_or_exit, warn_if_progress_broken
from checker.registry import RUN, Course, CourseError, Lesson
from checker.runner.catalog import lesson_catalog, lesson_points

app = typer.Typer(help="Advanced MCP Server Development: run, check and grade the lessons.",
                  invoke_without_command=True, no_args_is_help=False, add_completion=False,
                  pretty_exceptions_enable=False, rich_markup_mode=None)
dev_app = typer.Typer(help="Commands for people who maintain the course.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")

out = Console(highlight=False, soft_wrap=False)  # rich wraps at word boundaries, never inside a word

LessonArg = Annotated[str, typer.Argument(help="lesson-3, 3 or 03")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _available_points(course: Course, lesson: Lesson) -> int:
    """What `course check` can award here (a lesson not built yet: nothing)."""
    return lesson_points(course, lesson) if lesson.available else 0


def _rows(course: Course) -> list[dict[str, object]]:
    from checker.student.progress import load_progress

    progress = load_progress(course.state_dir)
    rows = []
    for lesson in course.lessons:
        record = progress.get(lesson.id, {})
        if not lesson.available:
            status, step = "coming soon", "not built yet"
        elif record.get("status") == "passed":
            status, step = "passed", "done"
        elif record:
            status = "in progress"
            step = f"{RUN} hint {lesson.number}" if record.get("failing") else f"{RUN} check {lesson.number}"
        else:
            status, step = "not started", f"{RUN} open {lesson.number}"
        rows.append({"id": lesson.id, "title": lesson.title, "status": status,
                     "earned": int(record.get("earned", 0)) if lesson.available else 0,
                     "available": _available_points(course, lesson), "next": step, "notebook": lesson.notebook})
    return rows


@app.callback()
def main(ctx: typer.Context) -> None:
    """With no command, show the lessons (the same as `course list`)."""
    if ctx.invoked_subcommand is None:
        list_lessons(as_json=False)


@app.command("list")
def list_lessons(as_json: JsonOpt = False) -> None:
    """Show every lesson: status, points and the next step."""
    course = course_or_exit()
    warn_if_progress_broken(course)
    rows = _rows(course)
    if as_json:
        print(json.dumps({"lessons": rows}, indent=2))
        return
    from checker.cli.render import lessons_table, next_step_lines
    from checker.student.nextstep import next_step

    out.print(lessons_table(rows))
    step = next_step(course)
    if step.lesson is not None:
        out.print()
        for line in next_step_lines(step):
            out.print(line)


@app.command()
def check(
    lesson: LessonArg,
    against: Annotated[
        str, typer.Option(help="What to grade: starter (your code), solutions, or a path to a src/ folder.")
    ] = "starter",
    only: Annotated[list[str] | None, typer.Option("--only", help="Run just this check (repeatable).")] = None,
    no_hints: Annotated[bool, typer.Option("--no-hints", help="Do not show hints under failures.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds one check may take (default: course.toml).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a lesson's graded checks and explain every failure."""
    from checker.runner.lesson import LessonRun
    from checker.student.progress import record

    course = course_or_exit()
    chosen = lesson_or_exit(course, lesson)
    if against == "starter":
        warn_if_progress_broken(course)
    try:
        running = LessonRun(course, chosen, against, select=only, check_timeout=timeout)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    from checker.cli.render import lesson_report  # imported while the worker starts, on the other core

    result = running.wait()
    if against == "starter" and not only and not result.error:
        record(course.state_dir, result)
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        out.print(lesson_report(result, show_hints=not no_hints))
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def hint(
    lesson: LessonArg,
    check_id: Annotated[
        str | None, typer.Argument(metavar="CHECK", help="A check id; default: the failing ones.")
    ] = None,
) -> None:
    """Show the hints for a lesson's checks (the failing ones first)."""
    from checker.student.progress import load_progress

    course = course_or_exit()
    chosen = lesson_or_exit(course, lesson)
    if not chosen.available:
        fail_usage(f"{chosen.id} is coming soon: it has no checks yet")
    if chosen.kind == "quiz":  # lesson 10: each question's hint names the lesson to revisit
        from checker.quiz.grading import question_hints

        try:
            catalog = question_hints(course, chosen)
        except CourseError as exc:
            fail_usage(str(exc))
            return
    else:
        catalog = lesson_catalog(course, chosen)
    if check_id:
        picked = [c for c in catalog if c.id == check_id]
        if not picked:
            fail_usage(f"{chosen.id} has no check {check_id!r}; its checks are {', '.join(c.id for c in catalog)}")
    else:
        failing = set(load_progress(course.state_dir).get(chosen.id, {}).get("failing", []))
        picked = [c for c in catalog if c.id in failing] or catalog
    for info in picked:
        out.print(f"[bold]{info.title}[/] [dim]({info.id}, {info.points} pt)[/]")
        out.print(f"  {info.hint}", markup=False)


@dev_app.command("sync-starter")
def sync_starter(
    check_only: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 if any.")] = False,
    lesson: Annotated[str | None, typer.Option(help="Only this lesson's modules (others stay as they are).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before replacing files.")] = False,
) -> None:
    """Regenerate the starter (capstone/) from solutions/. Asks first and backs up what it replaces."""
    from checker.cli.common import confirm_or_exit
    from checker.starter import drift, write_starter

    course = course_or_exit()
    solutions, starter = course.solutions.parent, course.starter.parent
    only = None
    if lesson:
        package_dir = course.starter.relative_to(starter) / course.package
        only = {(package_dir / f"{module}.py").as_posix() for module in lesson_or_exit(course, lesson).modules}
    changed = [rel for rel in drift(solutions, starter, course.solutions_only) if only is None or rel in only]
    if check_only:
        for rel in changed:
            out.print(f"drift: {rel}", markup=False)
        raise typer.Exit(1 if changed else 0)
    if not changed:
        out.print("the starter is up to date")
        return
    replaced = [rel for rel in changed if (starter / rel).is_file()]
    if replaced:
        listing = ", ".join(f"{starter.name}/{rel}" for rel in replaced)
        confirm_or_exit(yes, f"Replace {listing} with the generated starter? Any lesson work in them is "
                             "backed up first.")
    changed, backup = write_starter(solutions, starter, course.state_dir, only=only, exclude=course.solutions_only)
    for rel in changed:
        out.print(f"wrote {starter.name}/{rel}", markup=False)
    if backup:
        out.print(f"your previous versions are in {backup.relative_to(course.root)}; undo with "
                  f"`uv run course reset --restore {backup.name}`", markup=False, soft_wrap=True)


from checker.cli.grade import grade_app  # noqa: E402 - instructor commands
from checker.cli.instructor import export, release  # noqa: E402

app.command()(release)
app.add_typer(grade_app, name="grade")
app.command()(export)

from checker.cli.student import doctor, next_, open_lesson, reset, solution, watch  # noqa: E402 - student commands

app.command()(watch)
app.command("open")(open_lesson)
app.command()(reset)
app.command()(doctor)
app.command("next")(next_)
app.command()(solution)

from checker.quiz.cli import quiz_app  # noqa: E402 - `course quiz` (practice, exams, LMS exports)

app.add_typer(quiz_app, name="quiz")

from checker.verify import verify  # noqa: E402 - lesson 9: the capstone's independent judges

app.command()(verify)


if __name__ == "__main__":
    app()
