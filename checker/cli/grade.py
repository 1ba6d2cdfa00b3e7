"""`course grade`: grade a class into a grade store, regrade part of it, or merge shards graded elsewhere.

    course grade SUBMISSIONS --out grades/ [--students a,b] [--lessons 3] [--shard I/N] [--roster roster.csv]
    course grade merge SHARD_OUTPUTS... --out grades/

Both end the same way: every export rebuilt from the whole store in `--out` (see
`checker.grading.exports`), so the gradebook always shows everyone graded there, whatever this
run touched.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
import typer.core
from rich.console import Console
from typer._click import Context as ClickContext  # typer vendors click: its contexts, not the click package's

from checker.cli.common import err, fail_usage
from checker.grading.record import SubmissionResult
from checker.grading.roster import Person, read_roster
from checker.grading.store import STORE_DIR, GradeStore, begin_run
from checker.grading.submissions import Submission
from checker.quiz.cli import ExamNameOpt, ExamSecretOpt, QuizMode, QuizModeOpt, quiz_grading
from checker.registry import Course, CourseError, Lesson, load_course
from checker.sandbox.preflight import Preflight

out = Console(highlight=False)
ROSTER_FILE = "roster.csv"  # kept in --out, so later regrades and merges name the students the same way
DEFAULT = "class"


class _AsGroup(ClickContext):
    """The default command calls itself `course grade` (usage, errors), never by its internal name."""

    @property
    def command_path(self) -> str:
        return self.parent.command_path if self.parent is not None else super().command_path


class _Usage(typer.core.TyperCommand):
    context_class = _AsGroup


class _GradeGroup(typer.core.TyperGroup):
    """`course grade merge ...` is the merge; anything else (`course grade SUBMISSIONS ...`) grades."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if not args or args[0] not in self.commands:
            args = [DEFAULT, *args]
        return super().parse_args(ctx, args)


grade_app = typer.Typer(cls=_GradeGroup, help="Grade a class of submissions (or merge shards graded elsewhere).",
                        no_args_is_help=False, add_completion=False, pretty_exceptions_enable=False,
                        rich_markup_mode=None)


def _pick_lessons(course: Course, spec: str | None) -> list[Lesson]:
    if spec:
        return [course.lesson(ref) for ref in spec.split(",") if ref.strip()]
    return [lesson for lesson in course.lessons if lesson.available]


def _pick_students(found: list[Submission], spec: str | None) -> list[Submission]:
    """The submissions `--students a,b` names (case-insensitively); an unknown name is a usage error."""
    if not spec:
        return found
    by_id = {submission.id.casefold(): submission for submission in found}
    wanted = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in wanted if name.casefold() not in by_id]
    if unknown:
        raise CourseError(f"no submission named {unknown[0]!r} in the submissions folder (students: "
                          f"{', '.join(s.id for s in found[:8])}{', ...' if len(found) > 8 else ''})")
    return [by_id[name.casefold()] for name in dict.fromkeys(wanted)]


def _roster(out_dir: Path, given: Path | None) -> dict[str, Person]:
    """The roster given now (kept in --out for later runs), or the one kept there before, or none."""
    kept = out_dir / ROSTER_FILE
    if given is not None:
        people = read_roster(given)
        out_dir.mkdir(parents=True, exist_ok=True)
        if given.resolve() != kept.resolve():
            shutil.copyfile(given, kept)
        return people
    return read_roster(kept) if kept.is_file() else {}


def _exam_private(course: Course, secret: Path | None) -> list[Path]:
    """The exam pool (its key) and signing secret: never readable to student code while grading."""
    from checker.quiz.bank import load_settings

    settings = load_settings(course)
    return [path.resolve() for path in (settings.exam_pool, secret or settings.exam_secret) if path.exists()]


@grade_app.command(DEFAULT, cls=_Usage, hidden=True)
def grade(
    submissions: Annotated[Path, typer.Argument(help="A folder holding one sub-folder or .zip per student.")],
    lessons: Annotated[str | None, typer.Option(help="Comma-separated lessons (default: every available one).")] = None,
    students: Annotated[
        str | None, typer.Option(help="Grade only these students (comma-separated); the store keeps everyone else.")
    ] = None,
    jobs: Annotated[int, typer.Option(help="Submissions graded at once (default: one per core).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="The grade store and its exports (kept across runs).")] = Path(
        "grades"
    ),
    shard: Annotated[
        str | None,
        typer.Option(help="Grade shard I of N (I/N): every N-th student; merge the shards with `course grade merge`."),
    ] = None,
    roster: Annotated[
        Path | None,
        typer.Option(help="CSV naming each student (name, sis_user_id, section...) for lms.csv and the report."),
    ] = None,
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="Skip the instructor-only checks.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds one check may take (default: course.toml).")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out: skip what it already graded.")
    ] = False,
    no_sandbox: Annotated[
        bool, typer.Option("--no-sandbox", help="Run student code unconfined, as you (trusted code only).")
    ] = False,
    quiz: QuizModeOpt = QuizMode.none,
    exam_secret: ExamSecretOpt = None,
    exam_name: ExamNameOpt = None,
) -> None:
    """Grade a folder of submissions into the grade store in --out and rebuild every export from it.

    Regrading keeps the rest of the store: --students a,b and --lessons 3 grade only what they
    name. `course grade merge SHARD_OUTPUTS... --out grades/` combines shards graded with --shard.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from checker.grading.batch import grade_all, sandbox_check
    from checker.grading.shards import parse_shard, shard_of, write_manifest
    from checker.grading.submissions import discover

    course = load_course()
    try:
        chosen, exam = quiz_grading(course, _pick_lessons(course, lessons), quiz, named=lessons is not None,
                                    secret=exam_secret, name=exam_name)
        everyone = discover(submissions)
        asked = _pick_students(everyone, students)
        slice_ = parse_shard(shard) if shard else None
        found = shard_of(asked, *slice_) if slice_ else asked
        people = _roster(out_dir, roster)
        private = [submissions.resolve(), out_dir.resolve(), *(_exam_private(course, exam_secret) if exam else [])]
    except CourseError as exc:
        fail_usage(str(exc))
        return
    checked = sandbox_check(course, chosen, no_sandbox=no_sandbox, private=private)
    _preflight_table(checked)
    if checked.refusal:
        fail_usage(checked.refusal)
    assert checked.mode is not None
    sandbox: dict[str, object] = {"mode": checked.mode.value,
                                  "findings": [asdict(finding) for finding in checked.findings]}
    try:
        run = begin_run(out_dir, [lesson.id for lesson in chosen], resume=resume)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    with Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("grading", total=len(found))
        try:
            results = grade_all(course, found, chosen, jobs=jobs or (os.cpu_count() or 1), hidden=not no_hidden,
                                check_timeout=timeout, on_done=lambda _: progress.advance(task), checked=checked,
                                store=out_dir / STORE_DIR, run=run, quiz_exam=exam)
        except CourseError as exc:
            fail_usage(str(exc))
            return
    if slice_:
        write_manifest(out_dir, *slice_, asked, found, [lesson.id for lesson in chosen], sandbox)
    for sub in results:
        status = f"could not be graded: {sub.error}" if sub.error else f"{sub.earned:g}/{sub.available:g}"
        out.print(f"{sub.id}: {status}", markup=False)
    records = GradeStore(out_dir / STORE_DIR).records()
    if not students and not slice_:
        _say_kept(records, {submission.id for submission in everyone}, out_dir)
    _write_exports(course, records, out_dir, sandbox, people)
    if no_sandbox:
        err.print("warning: graded WITHOUT a sandbox (--no-sandbox): student code ran as you, unconfined",
                  markup=False, soft_wrap=True)
    raise typer.Exit(1 if any(sub.error or any(lesson.error for lesson in sub.lessons) for sub in results) else 0)


@grade_app.command("merge")
def merge(
    shards: Annotated[list[Path], typer.Argument(metavar="SHARD_OUTPUTS", help="The --out folders of every shard.")],
    out_dir: Annotated[Path, typer.Option("--out", help="The combined grade store and its exports.")] = Path("grades"),
    roster: Annotated[
        Path | None, typer.Option(help="CSV naming each student (default: the one kept in --out or a shard).")
    ] = None,
) -> None:
    """Combine the shards of a class graded with --shard I/N into one store and one set of exports."""
    from checker.grading.shards import merge_shards

    course = load_course()
    try:
        records, sandbox = merge_shards(shards)
        given = roster or next((shard / ROSTER_FILE for shard in shards if (shard / ROSTER_FILE).is_file()), None)
        people = _roster(out_dir, given)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    store = GradeStore(out_dir / STORE_DIR)
    for record in records:
        store.put(record)
    everything = store.records()
    _say_kept(everything, {record.id for record in records}, out_dir)
    _write_exports(course, everything, out_dir, sandbox, people)
    out.print(f"merged {len(shards)} shards: {len(records)} students into {out_dir}", markup=False)


def _say_kept(records: list[SubmissionResult], graded_now: set[str], out_dir: Path) -> None:
    """Students the store keeps from earlier runs although this run did not see them: said, not dropped."""
    kept = [record.id for record in records if record.id not in graded_now]
    if kept:
        err.print(f"note: {out_dir} keeps {len(kept)} student(s) graded earlier who are not among these submissions "
                  f"({', '.join(kept[:5])}{', ...' if len(kept) > 5 else ''}); delete "
                  f"{out_dir / STORE_DIR}/<student>.json to drop one", markup=False, soft_wrap=True)


def _write_exports(course: Course, records: list[SubmissionResult], out_dir: Path, sandbox: dict[str, object],
                   people: dict[str, Person]) -> None:
    from checker.grading.exports import write_all

    write_all(records, out_dir, sandbox=sandbox, course=course, roster=people)
    if people:
        unknown = [record.id for record in records if record.id.casefold() not in people]
        if unknown:
            err.print(f"note: {len(unknown)} student(s) are not on the roster ({', '.join(unknown[:5])}): lms.csv "
                      f"names them by their submission", markup=False, soft_wrap=True)
    out.print(f"gradebook ({len(records)} students), LMS CSV, JUnit, Gradescope results, feedback and report "
              f"written to {out_dir}", markup=False)


def _preflight_table(checked: Preflight) -> None:
    """What grading here will be like, before any student code runs."""
    from rich.table import Table

    table = Table(title="grading machine", title_justify="left", show_header=False, box=None, padding=(0, 1))
    for finding in checked.findings:
        mark = "[green]ok[/]" if finding.ok else "[yellow]--[/]"
        table.add_row(mark, finding.name, finding.detail + (f"  (fix: {finding.fix})" if finding.fix else ""))
    err.print(table)
    if checked.mode is not None and checked.mode.value == "none":
        err.print("warning: grading WITHOUT a sandbox (--no-sandbox): student code runs as you, unconfined",
                  markup=False, soft_wrap=True)
