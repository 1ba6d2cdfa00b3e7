"""A submission that rewrites, in its own process, whatever the check might run there gains nothing.

Checks once ran helpers of their own inside the process hosting student code (`Target.in_host`),
and student code could replace the machinery that runs them: with no code written, a starter
that answered every helper call with what the check wanted to see collected the lesson-3 points
for its logging and its progress bar. The checks now observe from their own process, so the
same forgery must earn nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from checker.grading.batch import grade_all
from checker.grading.submissions import discover
from tests.conftest import COURSE, pristine_starter

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

MODULE = f"{COURSE.package}/progress.py"
FUTURE = "from __future__ import annotations\n"

# Prepended to the lesson-3 starter: every helper a check asks the host to run returns the
# observation that check passes on, computed from the check's own arguments.
FORGERY = '''
import checker.host.host as _host


async def _forged(self, path, name, args, kwargs):
    if name == "_configure_logging_twice":
        return ["", f"x INFO research_desk.progress: {args[1]} indexed\\n"]
    if name == "_log_beside_root_handler":
        return {"out": "", "err": f"{args[2]}-info\\n{args[2]}-debug\\n", "returned": [True, True]}
    if name == "_stale_updates":
        width, total, ahead, late = args[1:]
        return {"drawn": "bar", "redrawn": "bar", "late": False, "repeated": False, "after_late": [ahead, "newest"],
                "updates": 1, "forward": True, "end": [total, "newest", ahead + 1, 2]}
    raise NotImplementedError(name)


_host.Host.op_helper = _forged
'''


def test_a_starter_that_forges_the_hosts_helpers_scores_nothing(tmp_path: Path) -> None:
    edition = tmp_path / "class" / "forger" / "capstone" / "src"
    shutil.copytree(pristine_starter(), edition, ignore=shutil.ignore_patterns("__pycache__"))
    module = edition / MODULE
    module.write_text(module.read_text().replace(FUTURE, FUTURE + FORGERY, 1))
    lesson = COURSE.lesson("lesson-3")
    result, = grade_all(COURSE, discover(tmp_path / "class"), [lesson], jobs=1, hidden=True)
    assert not result.error, result.error
    graded, = result.lessons
    assert not graded.error, graded.error
    passed = [c.id for c in graded.checks if c.outcome == "passed"]
    assert not passed, f"with no code written, the forged helpers passed {passed}"
