"""What every `course` command shares: the one-line usage error (exit 2) and the registry look-ups
that end in one.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console

from checker.registry import Course, CourseError, Lesson, load_course

err = Console(stderr=True, highlight=False)


def fail_usage(message: str) -> NoReturn:
    """Bad input: say what is wrong in one line, no traceback, exit code 2."""
    err.print(f"course: error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(2)


def course_or_exit() -> Course:
    try:
        return load_course()
    except CourseError as exc:
        fail_usage(str(exc))


def lesson_or_exit(course: Course, ref: str) -> Lesson:
    try:
        return course.lesson(ref)
    except CourseError as exc:
        fail_usage(str(exc))


def confirm_or_exit(yes: bool, question: str) -> None:
    """Ask before touching the student's files; no answer (or no terminal) changes nothing."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail_usage("not asking without a terminal: add --yes to confirm")
    if not typer.confirm(question, default=False):
        typer.echo("nothing changed")
        raise typer.Exit(1)


def warn_if_progress_broken(course: Course) -> None:
    """Say so (on stderr, once per command) when the progress file had to be recovered from its backup."""
    from checker.student.progress import recovery_notice

    notice = recovery_notice(course.state_dir)
    if notice:
        err.print(f"course: {notice}", markup=False, soft_wrap=False)
