"""What five seeded runs per mutant cost the test suite, next to one run per mutant the old way.

    uv run python bench/mutant_runs.py [--lesson lesson-1] [--seeds 5] [--rounds 3]

`tests/test_mutants.py` runs each mutant's killing checks once per seed, all of a lesson's runs
in one warm driver process (`tests/seeded_runs.py`), a few at a time. Measured here, in the same
session and interleaved so background load hits each alike:

- before: one `course check` worker per mutant, one run each (what the suite did before seeds);
- one worker per run: the same, once per seed (seeds without the shared driver);
- shared driver: every mutant on every seed through `tests/seeded_runs.py`.

Prints medians of wall time and of CPU time (this process's children), and the ratios.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker.runner.lesson import run_lesson  # noqa: E402
from tests.conftest import COURSE  # noqa: E402
from tests.variants import load_variants, make_project, parallel_runs, seeded_runs  # noqa: E402


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(work: Callable[[Path], int]) -> tuple[float, float, int]:
    """Wall seconds, children's CPU seconds, and how many runs `work` made in a fresh folder."""
    with tempfile.TemporaryDirectory(prefix="bench-mutants-") as folder:
        cpu, started = _children_cpu(), time.perf_counter()
        runs = work(Path(folder))
        return time.perf_counter() - started, _children_cpu() - cpu, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lesson", default="lesson-1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    lesson = COURSE.lesson(args.lesson)
    mutants = [m for m in load_variants("mutant") if m.lesson == lesson.id]
    if not mutants:
        sys.exit(f"{lesson.id} has no mutants")
    import tests.variants as variants

    variants.SEEDS = [str(seed) for seed in range(1, args.seeds + 1)]

    def worker_per_run(times: int) -> Callable[[Path], int]:
        def work(folder: Path) -> int:
            for index, mutant in enumerate(mutants):
                edition = make_project(mutant, folder / f"m{index}")
                for seed in range(times):
                    os.environ["COURSE_CHECK_SEED"] = str(seed + 1)
                    run_lesson(COURSE, lesson, str(edition), select=list(mutant.kills))
            os.environ.pop("COURSE_CHECK_SEED", None)
            return len(mutants) * times
        return work

    def shared_driver(folder: Path) -> int:
        runs = seeded_runs(lesson, mutants, folder, hidden=False, jobs=parallel_runs())
        return sum(len(r) for r in runs.values())

    ways = {"before: a worker per mutant, 1 run each": worker_per_run(1),
            f"a worker per run, {args.seeds} seeds": worker_per_run(args.seeds),
            f"shared driver, {args.seeds} seeds, {parallel_runs()} at a time": shared_driver}
    samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, work in ways.items():
            samples[name].append(measure(work))
    print(f"{lesson.id}: {len(mutants)} mutants, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"{args.rounds} rounds, medians:")
    base = statistics.median(wall for wall, _, _ in samples[next(iter(ways))])
    for name, values in samples.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"  {name:48} {values[0][2]:4d} runs  wall {wall:6.1f} s ({wall / base:4.2f}x)  cpu {cpu:6.1f} s")


if __name__ == "__main__":
    main()
