"""Grading throughput: seconds per lesson-submission with the sandbox, and without it, in one run.

    uv run python bench/grade_throughput.py [--copies 10] [--lessons lesson-1,lesson-2] [--rounds 3] [--shards 2]

Grades N copies of the reference solution and N of the starter (every available code lesson
unless --lessons says otherwise) the way `course grade` does (one slot per core, hidden checks
on), once sandboxed as the preflight chooses and once with `--no-sandbox`, alternating the order
round by round. Prints the median per lesson-submission of each, the sandbox's cost as a ratio,
and each lesson's median inside one lesson-submission.

With --shards N it then grades the same class through the `course grade` command twice more:
whole, and as N shards started at once as separate processes (the cores shared between them, as
N machines would each have their own), merged with `course grade merge`. It prints both wall
times and whether the merged gradebook equals the unsharded one (it must: exit code 1 if not).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
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


def _course(*args: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "checker.cli.app", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _decisions(out: Path) -> dict[str, object]:
    """What grading decided per student (error, and each check's outcome), not how long it took."""
    data = json.loads((out / "results.json").read_text())
    return {sub["id"]: (sub["error"], [(lesson["lesson"], [(c["id"], c["outcome"]) for c in lesson["checks"]])
                                       for lesson in sub["lessons"]]) for sub in data["submissions"]}


def compare_shards(submissions: Path, lessons: list[str], shards: int, cores: int, work: Path) -> list[str]:
    """Grade the class whole and as `shards` shards at once (then merged): the lines to print, the last
    saying whether the merged gradebook equals the unsharded one."""
    spec = ",".join(lessons)
    started = time.perf_counter()
    _course("grade", submissions, "--lessons", spec, "--out", work / "whole", "--jobs", cores).wait()
    whole = time.perf_counter() - started
    started = time.perf_counter()
    running = [_course("grade", submissions, "--lessons", spec, "--shard", f"{i}/{shards}", "--out",
                       work / f"shard-{i}", "--jobs", max(1, cores // shards)) for i in range(1, shards + 1)]
    for process in running:
        process.wait()
    graded = time.perf_counter() - started
    merge = _course("grade", "merge", *(work / f"shard-{i}" for i in range(1, shards + 1)), "--out", work / "merged")
    merge.wait()
    total = time.perf_counter() - started
    same = (merge.returncode == 0
            and (work / "merged" / "gradebook.csv").read_bytes() == (work / "whole" / "gradebook.csv").read_bytes()
            and _decisions(work / "merged") == _decisions(work / "whole"))
    return [f"  unsharded `course grade`: {whole:6.1f} s",
            f"  {shards} shards at once:       {graded:6.1f} s grading, {total:6.1f} s with the merge "
            f"(one machine: the shards share its {cores} cores)",
            f"  merged gradebook equals the unsharded one: {'yes' if same else 'NO'}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--lessons", default="")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shards", type=int, default=0, help="also grade the class as this many shards and merge")
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
        build_class(Path(tmp) / "class", args.copies)
        submissions = discover(Path(tmp) / "class")
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
        sharding = compare_shards(Path(tmp) / "class", [l.id for l in lessons], args.shards, cores,
                                  Path(tmp)) if args.shards else []
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
    if sharding:
        print(f"sharding ({len(submissions)} submissions x {len(lessons)} lessons, `course grade` as the preflight "
              f"chooses):")
        print("\n".join(sharding))
        if not sharding[-1].endswith("yes"):
            sys.exit(1)


if __name__ == "__main__":
    main()
