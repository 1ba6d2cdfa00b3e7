"""`course quiz` and its instructor commands, registered on the main app by `checker.cli.app`.

    course quiz [--lesson N] [--redo] [--review]    the practice quiz in the terminal
    course quiz --exam FILE                         answer an exam file (no score: the key is not here)
    course quiz exam --roster roster.csv --out exams/   one signed exam file per student
    course quiz export --format qti|gift|moodle-xml     the exam pool (or one form) for an LMS

For `course grade`, `QuizModeOpt`, `ExamSecretOpt`, `ExamNameOpt` and `quiz_grading` give the
batch grader its quiz options (see grading.grade_submission_quiz).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from checker.cli.common import course_or_exit, fail_usage
from checker.registry import Course, CourseError, Lesson

if TYPE_CHECKING:
    from checker.quiz.grading import ExamSetup

quiz_app = typer.Typer(
    help="The chapter quiz: practice, exams and LMS exports. Practice in the terminal, answer "
    "an exam, and (instructors) write exams and LMS exports.",
    invoke_without_command=True,
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
out = Console(highlight=False, soft_wrap=False)


@quiz_app.callback()
def quiz(
    ctx: typer.Context,
    lesson: Annotated[
        str | None, typer.Option("--lesson", help="Only the questions about this lesson (3, lesson-3).")
    ] = None,
    redo: Annotated[bool, typer.Option("--redo", help="Ask the questions you have already answered again.")] = False,
    review: Annotated[
        bool, typer.Option("--review", help="Ask nothing; score your practice answers and explain what you missed.")
    ] = False,
    exam: Annotated[
        Path | None,
        typer.Option(
            "--exam", metavar="FILE", help="Answer this exam file from your instructor (kept as quiz/exam.toml)."
        ),
    ] = None,
) -> None:
    """Take the practice quiz (lesson 10) in the terminal: saved as you go, resumable, reviewed at the end."""
    if ctx.invoked_subcommand is not None:
        return
    from checker.quiz.ui import take_exam, take_quiz

    course = course_or_exit()
    try:
        if exam is not None:
            if review:
                fail_usage("an exam has no review: its key stays with your instructor")
            code = take_exam(course, out, exam.expanduser(), lesson=lesson, redo=redo)
        else:
            code = take_quiz(course, out, lesson=lesson, redo=redo, review_only=review)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    raise typer.Exit(code)


@quiz_app.command("exam")
def write_exams(
    roster: Annotated[
        Path,
        typer.Option(
            "--roster",
            help="CSV with a header row; the id, student, login, username, github or email column names each student.",
        ),
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the exam files (one <student>.exam.toml each).")
    ] = Path("exams"),
    name: Annotated[
        str, typer.Option("--name", help="The exam's name: a new name draws new variants for everyone.")
    ] = "exam",
    secret: Annotated[
        Path | None,
        typer.Option("--secret", help="The signing secret (default: course.toml exam_secret; created if missing)."),
    ] = None,
) -> None:
    """Write one signed exam file per student. Their own variants of every question, in their own order."""
    from checker.quiz.bank import QuizError, load_bank, load_settings
    from checker.quiz.forms import build_exam, ensure_secret, exam_text, read_roster
    from checker.quiz.pool import load_pool
    from checker.student.progress import write_atomically

    course = course_or_exit()
    try:
        settings = load_settings(course)
        bank = load_bank(settings.bank)
        pool = load_pool(settings.exam_pool, bank)
        students = read_roster(roster)
        key, created = ensure_secret(secret or settings.exam_secret)
        forms = {student: build_exam(course.title, bank, pool, key, name, student) for student in students}
    except (QuizError, CourseError, OSError) as exc:
        fail_usage(str(exc))
        return
    if created:
        out.print(f"created the exam secret {secret or settings.exam_secret}: keep it private and keep it until "
                  f"the exams are graded (`uv run course grade --quiz exam` needs it)", style="yellow", markup=False)
    out_dir.mkdir(parents=True, exist_ok=True)
    for student, data in forms.items():
        write_atomically(out_dir / f"{student}.exam.toml", exam_text(data, f"{student}.exam.toml"))
    out.print(f"wrote {len(forms)} exam files ({len(pool.ideas(bank))} questions, {pool.points(bank)} points each) "
              f"to {out_dir}; give each student their own file", markup=False)


class Format(StrEnum):
    qti = "qti"
    gift = "gift"
    moodle_xml = "moodle-xml"


SUFFIX = {Format.qti: ".zip", Format.gift: ".gift.txt", Format.moodle_xml: ".xml"}


@quiz_app.command("export")
def export(
    fmt: Annotated[Format, typer.Option("--format", help="qti (Canvas QTI 1.2 zip), gift or moodle-xml.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Where to write it (default: quiz-exam.<format>).")
    ] = None,
    exam: Annotated[
        Path | None,
        typer.Option("--exam", metavar="FILE", help="Export this exam form only, instead of the whole pool."),
    ] = None,
    secret: Annotated[
        Path | None, typer.Option("--secret", help="The secret the exam form was signed with (with --exam).")
    ] = None,
) -> None:
    """Write the exam pool, or one exam form, for a learning platform. Every variant, grouped by question."""
    from checker.quiz.bank import QuizError, load_bank, load_settings
    from checker.quiz.forms import load_secret, read_exam, verify
    from checker.quiz.lms import form_items, pool_items, to_gift, to_moodle_xml, to_qti
    from checker.quiz.pool import load_pool

    course = course_or_exit()
    try:
        settings = load_settings(course)
        bank = load_bank(settings.bank)
        pool = load_pool(settings.exam_pool, bank)
        if exam is not None:
            form = read_exam(exam)
            problem = verify(form, load_secret(secret or settings.exam_secret))
            if problem:
                raise QuizError(f"{exam}: {problem}")
            items, title = form_items(form, pool), f"{course.title}: exam {form.name} ({form.student})"
        else:
            items, title = pool_items(bank, pool), f"{course.title}: exam pool"
    except (QuizError, CourseError, ValueError) as exc:
        fail_usage(str(exc))
        return
    target = out_file or Path(f"quiz-exam{SUFFIX[fmt]}")
    if fmt is Format.qti:
        target.write_bytes(to_qti(items, course.title, title))
    else:
        text = to_gift(items, course.title) if fmt is Format.gift else to_moodle_xml(items, course.title)
        target.write_text(text, encoding="utf-8")
    groups = "" if exam else f" ({len(pool.ideas(bank))} groups, one drawn from each)"
    out.print(
        f"wrote {target}: {len(items)} questions{groups}. It holds the answers: upload it, do not share it.",
        markup=False,
    )


# ---------------------------------------------------------------- `course grade`'s quiz options

class QuizMode(StrEnum):
    none = "none"
    exam = "exam"
    practice = "practice"


QuizModeOpt = Annotated[QuizMode, typer.Option("--quiz", help="How lesson 10 counts: none (default: left out), exam "
                                               "(signed exam files, graded from your key) or practice (the students' "
                                               "self-checked quiz, whose key they hold).")]
ExamSecretOpt = Annotated[Path | None, typer.Option("--exam-secret", help="The secret the exams were signed with "
                                                       "(default: course.toml exam_secret).")]
ExamNameOpt = Annotated[str | None, typer.Option("--exam-name", help="Accept only this exam (default: any signed "
                                                    "with the secret).")]


def quiz_grading(course: Course, lessons: list[Lesson], mode: QuizMode, *, named: bool = False,
                 secret: Path | None = None, name: str | None = None) -> tuple[list[Lesson], ExamSetup | None]:
    """The lessons `course grade` grades, and the `exam` argument for `grade_submission_quiz`.

    none: the quiz lesson is left out (asking for it by name, `named`, without saying how it counts is a
    usage error); practice: it is graded from each submission's practice answers (exam None); exam: from
    the signed exam files (an ExamSetup loaded once here). Raises CourseError, one line, for bad input.
    """
    from checker.quiz.grading import ExamSetup

    quizzes = [lesson for lesson in lessons if lesson.kind == "quiz"]
    if mode is QuizMode.none:
        if named and quizzes:
            raise CourseError(f"{quizzes[0].id} is the quiz: add --quiz exam (signed exam files) or --quiz practice "
                              f"(the self-checked practice quiz) to say how it counts")
        return [lesson for lesson in lessons if lesson.kind != "quiz"], None
    if not quizzes:
        lessons = [*lessons, *(lesson for lesson in course.lessons if lesson.kind == "quiz" and lesson.available)]
    if mode is QuizMode.practice:
        return lessons, None
    return lessons, ExamSetup.load(course, secret, name)
