"""The instructor's commands: `course release`, `course grade`, `course export gradescope`.

Registered on the main Typer app in `checker.cli`; kept apart so the student commands stay small.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from checker.cliutil import err, fail_usage
from checker.registry import Course, CourseError, Lesson, load_course

out = Console(highlight=False)


def _pick_lessons(course: Course, spec: Optional[str]) -> list[Lesson]:
    if spec:
        try:
            return [course.lesson(ref) for ref in spec.split(",") if ref.strip()]
        except CourseError as exc:
            fail_usage(str(exc))
    return [lesson for lesson in course.lessons if lesson.available]


def release(out_dir: Annotated[Path, typer.Argument(metavar="OUT", help="A new folder for the student edition.")]) -> None:
    """Write the student edition: starter code, clean notebooks, visible checks, hashed quiz key."""
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
) -> None:
    """Grade a folder of submissions in parallel; write CSV, JUnit, Gradescope, feedback and a report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from checker.exports import write_all
    from checker.grading import discover, grade_all, hidden_checks_exposed, sandbox_problem

    course = load_course()
    chosen = _pick_lessons(course, lessons)
    try:
        found = discover(submissions)
    except CourseError as exc:
        fail_usage(str(exc))
        return
    problem = sandbox_problem(course)
    if problem:
        err.print(f"warning: {problem}. Student code will run as your own user: grade untrusted "
                  "submissions in a disposable machine or container.", markup=False, soft_wrap=True)
    exposed = "" if no_hidden or problem else hidden_checks_exposed(course)
    if exposed:
        err.print(f"warning: {exposed}", markup=False, soft_wrap=True)
    with Progress(TextColumn("grading"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("eta"), TimeRemainingColumn(), console=err) as progress:
        task = progress.add_task("grading", total=len(found))
        results = grade_all(course, found, chosen, jobs=jobs or (os.cpu_count() or 1), hidden=not no_hidden,
                            sandbox=not problem, check_timeout=timeout, on_done=lambda _: progress.advance(task))
    write_all(results, out_dir)
    for sub in results:
        status = f"could not be graded: {sub.error}" if sub.error else f"{sub.earned:g}/{sub.available:g}"
        out.print(f"{sub.id}: {status}", markup=False)
    out.print(f"gradebook, JUnit, Gradescope results, feedback and report written to {out_dir}", markup=False)
    raise typer.Exit(1 if any(sub.error or any(l.error for l in sub.lessons) for sub in results) else 0)


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
    """Package the autograder for a platform (Gradescope: setup.sh, run_autograder and the course)."""
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
