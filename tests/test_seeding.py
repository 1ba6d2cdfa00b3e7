"""COURSE_CHECK_SEED makes a check's random inputs repeatable (checker.runner.worker.seed_randomness).

The mutant and correct-alternative tests run every check several times with different seeds;
a run that goes wrong is only worth reporting if its seed repeats it exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from checker.runner.lesson import run_lesson
from tests.conftest import COURSE, pristine_starter

DRAWS = """
import json, os, random, sys
from checker.runner.worker import seed_randomness
for check, seed in json.loads(sys.argv[1]):
    if os.fork() == 0:  # each scenario in a fresh copy of this warm process
        os.environ.pop("COURSE_CHECK_SEED", None)
        if seed is not None:
            os.environ["COURSE_CHECK_SEED"] = seed
        seed_randomness(check)
        print(json.dumps([random.randint(0, 10**9), random.Random().random(), random.Random().random(),
                          random.Random(5).random()]), flush=True)
        os._exit(0)
    os.wait()
"""


def _draws(*scenarios: tuple[str, str | None]) -> list[list[float]]:
    """What each (check id, seed or None) scenario draws, each in its own fork of one process."""
    out = subprocess.run([sys.executable, "-c", DRAWS, json.dumps(scenarios)], capture_output=True, text=True,
                         check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_a_seed_repeats_every_draw_and_only_its_own() -> None:
    check, other = "index_matches_workspace", "tools_read_lifespan_state"
    base, again, other_seed, other_check, unseeded, unseeded_again = _draws(
        (check, "1234"), (check, "1234"), (check, "1235"), (other, "1234"), (check, None), (check, None))
    assert base == again, "the same seed and check must draw the same inputs"
    assert base[1] != base[2], "two unseeded Random() in one check must still differ from each other"
    assert base[:3] != other_seed[:3] and base[:3] != other_check[:3], "another seed or check must draw others"
    assert base[3] == other_seed[3] == unseeded[3], "an explicit seed (Random(5)) is the caller's and is kept"
    assert unseeded[:3] != unseeded_again[:3], "without a seed, every run draws afresh"


def test_a_seeded_failure_says_how_to_repeat_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_CHECK_SEED", "4242")
    result = run_lesson(COURSE, COURSE.lesson("lesson-1"), str(pristine_starter()))
    failed = [c for c in result.checks if c.outcome == "failed"]
    assert failed and all("COURSE_CHECK_SEED=4242" in c.message for c in failed), [c.message for c in failed]
