"""The instructor's commands `course release` and `course export gradescope` (`course grade`: `checker.cli.grade`).

Registered on the main Typer app in `checker.cli.app`; kept apart so the student commands stay small.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from checker.cli.common import fail_usage
from checker.quiz.cli import ExamNameOpt, ExamSecretOpt, QuizMode, QuizModeOpt, quiz_grading
from checker.registry import CourseError, load_course

out = Console(highlight=False)


def release(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="A new folder for the student edition.")],
) -> None:
    """Write the student edition. Starter code, clean notebooks, visible checks, hashed quiz key."""
    from checker.release import build_release

    try:
        written = build_release(load_course(), out_dir)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    out.print(f"wrote {len(written)} files to {out_dir}; push it as a template repository", markup=False)


def export(
    platform: Annotated[str, typer.Argument(help="gradescope")],
    out_file: Annotated[Path, typer.Argument(metavar="OUT.zip")] = Path("gradescope-autograder.zip"),
    lessons: Annotated[
        str | None, typer.Option(help="Comma-separated lessons to grade (default: every available code lesson).")
    ] = None,
    quiz: QuizModeOpt = QuizMode.none,
    exam_secret: ExamSecretOpt = None,
    exam_name: ExamNameOpt = None,
    student_id: Annotated[
        str,
        typer.Option(
            "--student-id",
            help="Which field of Gradescope's submitter names the student: email, sid or id "
            "(exam files must be issued to it).",
        ),
    ] = "email",
) -> None:
    """Package the autograder for a platform. Gradescope: setup.sh, run_autograder and the course."""
    from checker.grading.gradescope import Settings, build_zip, uv_requirement
    from checker.quiz.bank import load_settings

    if platform != "gradescope":
        fail_usage(f"unknown platform {platform!r}; supported: gradescope")
    if student_id not in ("email", "sid", "id"):
        fail_usage(f"--student-id {student_id!r}: choose email, sid or id")
    course = load_course()
    try:
        picked = ([course.lesson(ref) for ref in lessons.split(",") if ref.strip()] if lessons
                  else [lesson for lesson in course.lessons if lesson.available])
        chosen, _ = quiz_grading(course, picked, quiz, named=lessons is not None, secret=exam_secret, name=exam_name)
        settings = Settings([lesson.id for lesson in chosen], quiz.value, exam_name, student_id, uv_requirement())
        secret = (exam_secret or load_settings(course).exam_secret) if quiz is QuizMode.exam else None
        names = build_zip(course, out_file, settings, secret)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    extra = " It holds the exam pool and its signing secret: keep it private." if quiz is QuizMode.exam else ""
    out.print(f"wrote {out_file} ({len(names)} files, lessons {', '.join(settings.lessons)}): upload it as the "
              f"Gradescope autograder.{extra}", markup=False)
