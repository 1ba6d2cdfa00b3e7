"""Grading throughput: seconds per submission and per lesson-submission, 1 worker vs 2.

    uv run python bench/grade_throughput.py [--copies 20] [--lessons lesson-1,lesson-2]

Grades N copies of the reference solution and N copies of the starter (every available code
lesson unless --lessons says otherwise) with one worker slot and with one per core, first running
one check of a lesson-submission at a time (how the pool scales), then `course grade`'s default
of several at once; all in the same run. Prints per-lesson costs and the speed-ups.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checker.grading.batch import CHECKS_AT_ONCE, discover, grade_all, sandbox_problem  # noqa: E402
from checker.registry import load_course  # noqa: E402


def build_class(root: Path, copies: int) -> None:
    course = load_course()
    for edition, name in ((course.solutions, "solved"), (course.starter, "starter")):
        for i in range(copies):
            dest = root / f"{name}-{i:02d}" / "capstone"  # the whole project, as a student submits it
            shutil.copytree(edition.parent, dest, ignore=shutil.ignore_patterns("__pycache__", ".venv"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--lessons", default="")
    args = parser.parse_args()
    course = load_course()
    lessons = ([course.lesson(ref) for ref in args.lessons.split(",")] if args.lessons
               else [l for l in course.lessons if l.available and l.kind == "code"])
    sandbox = not sandbox_problem(course)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        build_class(Path(tmp), args.copies)
        submissions = discover(Path(tmp))
        timings: dict[tuple[int, int], float] = {}
        per_lesson: dict[str, list[float]] = {}
        # (worker slots, checks at once per lesson-submission): the pool's scaling with one check
        # at a time, then course grade's default.
        for jobs, at_once in dict.fromkeys([(1, 1), (cores, 1), (1, CHECKS_AT_ONCE), (cores, CHECKS_AT_ONCE)]):
            started = time.perf_counter()
            results = grade_all(course, submissions, lessons, jobs=jobs, hidden=True, sandbox=sandbox,
                                checks_at_once=at_once)
            timings[jobs, at_once] = time.perf_counter() - started
            bad = [r.id for r in results if r.error or any(l.error for l in r.lessons)]
            if bad:
                sys.exit(f"grading failed for {bad[:3]}")
            if (jobs, at_once) == (cores, CHECKS_AT_ONCE):
                for result in results:
                    for lesson in result.lessons:
                        per_lesson.setdefault(lesson.lesson, []).append(lesson.duration)
    n = len(submissions)
    print(f"{cores} cores; {n} submissions x {len(lessons)} lessons; sandbox users: {'yes' if sandbox else 'no'}")
    for (jobs, at_once), seconds in timings.items():
        print(f"  {jobs} worker slot(s), {at_once} check(s) at once: {seconds:7.1f} s total, "
              f"{seconds / n:5.2f} s per submission, {seconds / (n * len(lessons)):5.2f} s per lesson-submission")
    for at_once in sorted({a for _, a in timings}):
        if (1, at_once) in timings and (cores, at_once) in timings and cores > 1:
            print(f"  speed-up 1 -> {cores} slots, {at_once} check(s) at once: "
                  f"{timings[1, at_once] / timings[cores, at_once]:.2f}x")
    print("  check time inside one lesson-submission (median, includes pytest start-up in its fork):")
    for lesson_id, values in per_lesson.items():
        values.sort()
        print(f"    {lesson_id:<10} {values[len(values) // 2]:5.2f} s")


if __name__ == "__main__":
    main()
