"""Grading throughput: seconds per lesson-submission with the sandbox, and without it, in one run.

    uv run python bench/grade_throughput.py [--copies 10] [--lessons lesson-1,lesson-2] [--rounds 3]

Grades N copies of the reference solution and N of the starter (every available code lesson
unless --lessons says otherwise) the way `course grade` does (one slot per core, hidden checks
on), once sandboxed as the preflight chooses and once with `--no-sandbox`, alternating the order
round by round. Prints the median per lesson-submission of each, the sandbox's cost as a ratio,
and each lesson's median inside one lesson-submission.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checker.grading.batch import grade_all, sandbox_check  # noqa: E402
from checker.grading.submissions import discover  # noqa: E402
from checker.registry import load_course  # noqa: E402


def build_class(root: Path, copies: int) -> None:
    course = load_course()
    for edition, name in ((course.solutions, "solved"), (course.starter, "starter")):
        for i in range(copies):
            dest = root / f"{name}-{i:02d}" / "capstone"  # the whole project, as a student submits it
            shutil.copytree(edition.parent, dest, ignore=shutil.ignore_patterns("__pycache__", ".venv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--lessons", default="")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    course = load_course()
    lessons = ([course.lesson(ref) for ref in args.lessons.split(",")] if args.lessons
               else [l for l in course.lessons if l.available and l.kind == "code"])
    checks = {"sandbox": sandbox_check(course, lessons), "no sandbox": sandbox_check(course, lessons, no_sandbox=True)}
    if checks["sandbox"].refusal:
        sys.exit(f"no sandbox on this machine: {checks['sandbox'].refusal}")
    cores = os.cpu_count() or 1
    seconds: dict[str, list[float]] = {name: [] for name in checks}
    per_lesson: dict[str, dict[str, list[float]]] = {name: {} for name in checks}
    with tempfile.TemporaryDirectory() as tmp:
        build_class(Path(tmp), args.copies)
        submissions = discover(Path(tmp))
        units = len(submissions) * len(lessons)
        for round_ in range(args.rounds):
            order = list(checks) if round_ % 2 == 0 else list(reversed(checks))
            for name in order:
                started = time.perf_counter()
                results = grade_all(course, submissions, lessons, jobs=cores, hidden=True, checked=checks[name])
                seconds[name].append((time.perf_counter() - started) / units)
                bad = [r.id for r in results if r.error or any(l.error for l in r.lessons)]
                if bad:
                    sys.exit(f"grading failed for {bad[:3]}: {results[0].error or results[0].lessons[0].error}")
                for result in results:
                    for lesson in result.lessons:
                        per_lesson[name].setdefault(lesson.lesson, []).append(lesson.duration)
    mode = checks["sandbox"].mode.value if checks["sandbox"].mode else "?"
    print(f"{cores} cores; {len(submissions)} submissions x {len(lessons)} lessons; {args.rounds} rounds; "
          f"sandbox: {mode}")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"  {name:<10} {median:5.2f} s per lesson-submission (median of {args.rounds}: "
              f"{', '.join(f'{v:.2f}' for v in seconds[name])})")
    print(f"  the sandbox costs {medians['sandbox'] / medians['no sandbox']:.2f}x no sandbox")
    print("  one lesson-submission's own time (median; its checks, two at once):")
    for lesson_id in per_lesson["sandbox"]:
        cells = [f"{name} {statistics.median(per_lesson[name][lesson_id]):5.2f} s" for name in checks]
        print(f"    {lesson_id:<10} " + "   ".join(cells))


if __name__ == "__main__":
    main()
