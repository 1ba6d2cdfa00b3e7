"""The instructor's commands: `course release`, `course grade`, `course export gradescope`.

Registered on the main Typer app in `checker.cli.app`; kept apart so the student commands stay small.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from checker.cli.common import err, fail_usage
from checker.registry import Course, CourseError, Lesson, load_course
from checker.quiz.cli import ExamNameOpt, ExamSecretOpt, QuizMode, QuizModeOpt, quiz_grading
from checker.sandbox.preflight import Preflight

out = Console(highlight=False)


def _pick_lessons(course: Course, spec: Optional[str]) -> list[Lesson]:
    if spec:
        try:
            return [course.lesson(ref) for ref in spec.split(",") if ref.strip()]
        except CourseError as exc:
            fail_usage(str(exc))
    return [lesson for lesson in course.lessons if lesson.available]


def release(out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="A new folder for the student edition.")]) -> None:
    """Write the student edition. Starter code, clean notebooks, visible checks, hashed quiz key."""
    from checker.release import build_release

    try:
        written = build_release(load_course(), out_dir)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    out.print(f"wrote {len(written)} files to {out_dir}; push it as a template repository", markup=False)


def grade(
    submissions: Annotated[Path, typer.Argument(help="A folder holding one sub-folder or .zip per student.")],
    lessons: Annotated[Optional[str], typer.Option(help="Comma-separated lessons (default: every available one).")] = None,
    jobs: Annotated[int, typer.Option(help="Submissions graded at once (default: one per core).")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the gradebook and reports.")] = Path("grades"),
    no_hidden: Annotated[bool, typer.Option("--no-hidden", help="Skip the instructor-only checks.")] = False,
    timeout: Annotated[Optional[float], typer.Option(help="Seconds one check may take (default: course.toml).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Keep the students already graded into --out; grade the rest.")] = False,
    no_sandbox: Annotated[bool, typer.Option("--no-sandbox", help="Run student code unconfined, as you (trusted code only).")] = False,
    quiz: QuizModeOpt = QuizMode.none,
    exam_secret: ExamSecretOpt = None,
    exam_name: ExamNameOpt = None,
) -> None:
    """Grade a folder of submissions, in parallel. Writes CSV, JUnit, Gradescope, feedback and a report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from checker.grading.batch import grade_all, sandbox_check
    from checker.grading.exports import write_all
    from checker.grading.submissions import discover

    course = load_course()
    try:
        chosen, exam = quiz_grading(course, _pick_lessons(course, lessons), quiz, named=lessons is not None,
                                    secret=exam_secret, name=exam_name)
        found = discover(submissions)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    checked = sandbox_check(course, chosen, no_sandbox=no_sandbox, private=[submissions.resolve(), out_dir.resolve()])
    _preflight_table(checked)
    if checked.refusal:
        fail_usage(checked.refusal)
    store = out_dir / "store"
    if not resume and store.is_dir():
        shutil.rmtree(store)  # a fresh batch: nothing of an earlier one is kept by accident
    with Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("grading", total=len(found))
        try:
            results = grade_all(course, found, chosen, jobs=jobs or (os.cpu_count() or 1), hidden=not no_hidden,
                                check_timeout=timeout, on_done=lambda _: progress.advance(task), checked=checked,
                                store=store, quiz_exam=exam)
        except CourseError as exc:
            fail_usage(str(exc))
            return
    assert checked.mode is not None
    write_all(results, out_dir, sandbox={"mode": checked.mode.value,
                                         "findings": [asdict(finding) for finding in checked.findings]})
    for sub in results:
        status = f"could not be graded: {sub.error}" if sub.error else f"{sub.earned:g}/{sub.available:g}"
        out.print(f"{sub.id}: {status}", markup=False)
    out.print(f"gradebook, JUnit, Gradescope results, feedback and report written to {out_dir}", markup=False)
    if no_sandbox:
        err.print("warning: graded WITHOUT a sandbox (--no-sandbox): student code ran as you, unconfined",
                  markup=False, soft_wrap=True)
    raise typer.Exit(1 if any(sub.error or any(l.error for l in sub.lessons) for sub in results) else 0)


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


SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope image build: Python, uv, and the course's locked dependencies.
set -euo pipefail
apt-get update && apt-get install -y python3 python3-pip python3-venv
python3 -m pip install uv
cd /autograder/source && python3 -m uv sync --frozen
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope run: grade /autograder/submission with the course's visible and hidden checks.
set -uo pipefail
rm -rf /tmp/course-submissions /tmp/course-grades
mkdir -p /tmp/course-submissions
cp -r /autograder/submission /tmp/course-submissions/student
cd /autograder/source
python3 -m uv run course grade /tmp/course-submissions --out /tmp/course-grades --jobs 1
cp /tmp/course-grades/gradescope/student.json /autograder/results/results.json
"""


def export(
    platform: Annotated[str, typer.Argument(help="gradescope")],
    out_file: Annotated[Path, typer.Argument(metavar="OUT.zip")] = Path("gradescope-autograder.zip"),
) -> None:
    """Package the autograder for a platform. Gradescope: setup.sh, run_autograder and the course."""
    if platform != "gradescope":
        fail_usage(f"unknown platform {platform!r}; supported: gradescope")
    course = load_course()
    skip = {"solutions", "tests", "bench", ".ci", ".course", ".venv", ".git", "__pycache__", ".ipynb_checkpoints"}
    with zipfile.ZipFile(out_file, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            archive.writestr(info, text)
        for path in sorted(course.root.rglob("*")):
            rel = path.relative_to(course.root)
            if path.is_file() and not skip.intersection(rel.parts) and not path.name.endswith(".pyc"):
                archive.write(path, rel.as_posix())
    out.print(f"wrote {out_file}: upload it as the Gradescope autograder", markup=False)
