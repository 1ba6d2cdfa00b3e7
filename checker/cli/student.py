"""The student's everyday commands: `watch`, `open`, `reset`, `doctor`, `next`, `solution`.

Registered on the main Typer app in `checker.cli.app`; each command is a thin layer over its own
module, which does the work and can be tested without a terminal. Exit codes as everywhere:
0 done, 1 something failed (or was refused, see `solution`), 2 bad usage (one line, no traceback).
"""

from __future__ import annotations

import json
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

from checker.cli.common import confirm_or_exit, course_or_exit, err, fail_usage, warn_if_progress_broken
from checker.registry import Course, CourseError, Lesson

out = Console(highlight=False, soft_wrap=False)  # rich wraps at word boundaries, never inside a word

OptionalLesson = Annotated[str | None, typer.Argument(help="lesson-3, 3 or 03 (default: the next unfinished one)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _pick(course: Course, ref: str | None, kind: str | None = None) -> Lesson:
    """The lesson named, or the first one (of `kind`) not passed yet."""
    from checker.student.nextstep import first_unfinished

    try:
        if ref:
            return course.lesson(ref)
    except CourseError as exc:
        fail_usage(str(exc))
    lesson = first_unfinished(course, kind)
    if lesson is None:
        fail_usage("every available lesson passes already; name one, e.g. `uv run course open 1`")
    assert lesson is not None
    return lesson


def watch(
    lesson: OptionalLesson = None,
    poll: Annotated[bool, typer.Option("--poll", help="Look for changes every 150 ms instead of using file events "
                                                      "(network drives, WSL2 Windows drives).")] = False,
) -> None:
    """Re-check a lesson on every save, showing what changed. Moves on to the next lesson when it passes."""
    from checker.student.watch import Watcher

    course = course_or_exit()
    warn_if_progress_broken(course)
    chosen = _pick(course, lesson, kind="code")
    if not chosen.available or chosen.kind != "code":
        fail_usage(f"{chosen.id} has no code checks to watch" + (" yet" if not chosen.available else ""))
    raise typer.Exit(Watcher(course, chosen, out, poll=poll).run())


def open_lesson(
    lesson: OptionalLesson = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Only print the URL (a remote machine: "
                                                                  "forward the port with ssh -L).")] = False,
    port: Annotated[int, typer.Option(help="Port to serve on (default: 8888 if free, else any free port).")] = 0,
) -> None:
    """Start JupyterLab on a lesson's notebook. Its kernel is the course's own Python."""
    import webbrowser

    from checker.student.jupyter import Lab

    course = course_or_exit()
    chosen = _pick(course, lesson)
    try:
        lab = Lab(course, chosen, port=port)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` or a closed SSH session: still stop Jupyter
    try:
        out.print(f"Starting JupyterLab for {chosen.id} ({chosen.notebook}) …", markup=False)
        if not lab.wait_ready():
            err.print(f"course: JupyterLab did not start (exit code {lab.proc.poll()}); see its messages above",
                      markup=False)
            raise typer.Exit(1)
        out.print(f"Open this URL: {lab.url}", markup=False, soft_wrap=True)
        out.print("Press Ctrl-C to stop the server.", markup=False)
        if not no_browser:
            webbrowser.open(lab.url)
        lab.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        lab.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def reset(
    lesson: Annotated[str | None, typer.Argument(help="The lesson whose starter code to restore.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the backups of your files.")] = False,
    restore: Annotated[str | None, typer.Option(metavar="BACKUP", help="Put a backup's files back "
                                                                          "(a name from --list, or `latest`).")] = None,
    notebook: Annotated[bool, typer.Option("--notebook", help="Restore the lesson's notebook instead of its code "
                                                              "(a notebook that no longer opens, say).")] = False,
) -> None:
    """Restore a lesson's starter code (your version is backed up)."""
    from checker.student import reset as resets

    course = course_or_exit()
    if sum(bool(x) for x in (lesson, list_, restore)) != 1:
        fail_usage("give exactly one of: a LESSON to reset, --list, or --restore BACKUP")
    if notebook and not lesson:
        fail_usage("--notebook goes with a LESSON: `uv run course reset 3 --notebook`")
    prefix = f"{course.starter.parent.name}/"  # what the written paths are relative to, as shown
    try:
        if list_:
            backups = resets.list_backups(course)
            if not backups:
                out.print(
                    "no backups yet: `uv run course reset LESSON` makes one before it changes anything", markup=False
                )
            for backup in backups:
                out.print(f"{backup.name}  ({len(backup.files)} file{'s' if len(backup.files) != 1 else ''}: "
                          f"{', '.join(backup.files)})", markup=False, soft_wrap=True)
            return
        if restore:
            backup = resets.find_backup(course, restore)
            confirm_or_exit(yes, f"Put back {len(backup.files)} file(s) from {backup.name}? Your current versions are "
                          "backed up first.")
            written, saved = resets.restore_backup(course, backup)
            if resets.is_notebook_backup(backup):
                prefix = ""
        elif notebook:
            assert lesson is not None
            chosen = course.lesson(lesson)
            clean = resets.clean_notebook(course, chosen)
            path = course.root / chosen.notebook
            if path.is_file() and path.read_bytes() == clean:
                out.print(f"{chosen.notebook} is already the course's clean copy; nothing to do", markup=False)
                return
            confirm_or_exit(yes, f"Replace {chosen.notebook} with the course's clean copy? Your version (your "
                                 "outputs and notes) is backed up first.")
            saved = resets.reset_notebook(course, chosen, clean)
            written, prefix = [chosen.notebook], ""
        else:
            assert lesson is not None
            chosen = course.lesson(lesson)
            pending = resets.changed_files(course, chosen)
            if not pending:
                out.print(f"{chosen.id}: your files already match the starter; nothing to do", markup=False)
                return
            confirm_or_exit(
                yes,
                f"Replace {', '.join(pending)} (in {course.starter.parent.name}/) with the starter code of "
                f"{chosen.id}? Your version is backed up first.",
            )
            written, saved = resets.reset_lesson(course, chosen)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    for rel in written:
        out.print(f"wrote {prefix}{rel}", markup=False)
    if saved is not None:
        out.print(f"your previous version is in {saved.relative_to(course.root)}; undo with "
                  f"`uv run course reset --restore {saved.name}`", markup=False, soft_wrap=True)


def doctor(as_json: JsonOpt = False) -> None:
    """Check this machine has what the course needs. Says how to fix what is missing."""
    from checker.student.doctor import run_doctor

    findings = run_doctor(course_or_exit())
    failed = any(f.required and not f.ok for f in findings)
    if as_json:
        print(json.dumps({"ok": not failed, "findings": [f.to_json() for f in findings]}, indent=2))
        raise typer.Exit(1 if failed else 0)
    for f in findings:
        mark, colour = ("✓", "green") if f.ok else (("✗", "red") if f.required else ("!", "yellow"))
        out.print(Text.assemble((f" {mark} ", f"bold {colour}"), (f.name, "bold"), (f"  {f.detail}", "dim")))
        if not f.ok:
            label = "fix" if f.required else "optional, to enable those checks"
            out.print(Text.assemble((f"     {label}: ", colour), f.fix))
    warnings = sum(not f.ok and not f.required for f in findings)
    if failed:
        out.print(Text("Something the course needs is missing: run the fix lines above.", style="bold red"))
    else:
        out.print(Text("Ready for the course." + (f" ({warnings} optional item(s) missing: the checks that need "
                                                  "them will be skipped.)" if warnings else ""), style="bold green"))
    raise typer.Exit(1 if failed else 0)


def next_(as_json: JsonOpt = False) -> None:
    """What to do now: the next lesson, its notebook, what to fix."""
    from checker.student.nextstep import next_step

    course = course_or_exit()
    warn_if_progress_broken(course)
    step = next_step(course)
    if as_json:
        print(json.dumps(step.to_json(), indent=2))
        return
    if step.lesson is None:
        more = f" {step.coming_soon} more lesson(s) are coming soon." if step.coming_soon else ""
        out.print(Text("Every available lesson passes." + more, style="bold green"))
        return
    from checker.cli.render import next_step_lines

    for line in next_step_lines(step):
        out.print(line)


def solution(lesson: Annotated[str, typer.Argument(help="lesson-3, 3 or 03")]) -> None:
    """Show a lesson's reference solution, once your code passes it. Exit 1 before."""
    from checker.student.solution import NotYet, solution_files

    course = course_or_exit()
    try:
        files = solution_files(course, course.lesson(lesson))
    except NotYet as exc:
        err.print(f"course: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except CourseError as exc:
        fail_usage(str(exc))
        return
    from checker.starter import reference_text

    for path in files:
        out.rule(str(path.relative_to(course.root)))
        text = reference_text(path.read_text(encoding="utf-8"))
        if out.is_terminal:
            out.print(Syntax(text, "python" if path.suffix == ".py" else "text", line_numbers=True, word_wrap=True))
        else:
            out.print(text, markup=False, highlight=False, end="", soft_wrap=True)  # verbatim, never re-wrapped
