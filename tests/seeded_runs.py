"""Many seeded runs of one lesson's checks in one warm process: the engine of the mutant tests.

    python tests/seeded_runs.py PLAN.json

PLAN holds `jobs` and `runs`, each a check request (`checker.runner.request.Request`, with its
edition and result file) and the `seed` to run it with. Starting the check worker costs about a
second (pytest, the SDK, the lesson's checks); a lesson has dozens of mutants, each run five
times, so this process pays that once and runs every request in a fork of itself, `jobs` at a
time, exactly as the worker would (`grade_and_write`), with `COURSE_CHECK_SEED` set to the run's
seed. Like the worker, it never imports student code itself: only the check forks do.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from checker.runner.request import Request
from checker.runner.worker import SEED_VARIABLE, _pytest_args, grade_and_write
from checker.sandbox.forking import run_forked
from checker.sandbox.limits import Limits


def _run(request: Request, seed: str) -> dict[str, str]:
    os.environ[SEED_VARIABLE] = seed
    grade_and_write(request)
    return {}


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    runs = [(Request(**run["request"]), str(run["seed"])) for run in plan["runs"]]
    if not runs:
        return
    first = runs[0][0]
    # Import the checks here, once, so every run's fork finds them loaded (as the grading worker does).
    pytest.main([*_pytest_args(first), "--collect-only", "-q", "-p", "no:terminal"])
    budget = Limits(first.lesson_timeout + 30, 64 * 1024, first.output_mb)
    outcomes = run_forked([(index, (lambda r=request, s=seed: _run(r, s))) for index, (request, seed) in enumerate(runs)],
                          budget, jobs=int(plan["jobs"]))
    for index, outcome in outcomes.items():
        if outcome.problem:  # the result file is missing: say why, where the test reads it
            print(f"run {index}: {outcome.problem}\n{outcome.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
