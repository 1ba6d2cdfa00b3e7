"""A student's clone: with lessons 1-3 solved, the README's fast test command still passes.

The open-source route: someone clones the course to learn, writes lessons in `capstone/`, and
runs `uv run pytest`. A test of the course must never fail because they did their work. This
clones the last commit (uncommitted changes are not in it), copies the reference modules of
lessons 1-3 into the clone's `capstone/`, and runs the README's command there, in a virtual
environment of the clone's own, as a student would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import COURSE

pytestmark = pytest.mark.full  # runs the whole fast suite inside: the full suite only


def test_a_clone_with_lessons_1_to_3_solved_passes_the_fast_suite(tmp_path: Path) -> None:
    if shutil.which("git") is None or shutil.which("uv") is None:
        pytest.skip("needs git and uv")
    if subprocess.run(["git", "-C", str(COURSE.root), "rev-parse"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(COURSE.root), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(COURSE.root), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    package = COURSE.starter.relative_to(COURSE.root) / COURSE.package
    for number in (1, 2, 3):
        for module in COURSE.lesson(str(number)).modules:
            source = COURSE.solutions / COURSE.package / f"{module}.py"
            shutil.copy2(source, clone / package / f"{module}.py")
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "COURSE_ROOT", "UV_PROJECT_ENVIRONMENT", "PYTEST_ADDOPTS")}
    proc = subprocess.run(["uv", "run", "pytest"], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=1800)
    summary = proc.stdout.strip().splitlines()[-1:] or [""]
    assert proc.returncode == 0, (f"`uv run pytest` in a clone with lessons 1-3 solved exited {proc.returncode}: "
                                  f"{summary[0]}\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    assert "passed" in summary[0] and "failed" not in summary[0], summary[0]
