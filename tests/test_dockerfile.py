"""The grader's container image builds, where this machine has a container engine to build it with."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)


def _engine() -> str | None:
    for name in ("docker", "podman"):
        if shutil.which(name) and subprocess.run([name, "info"], capture_output=True).returncode == 0:
            return name
    return None


@pytest.mark.skipif(_engine() is None, reason="no running container engine on this machine")
def test_the_grader_image_builds_and_runs_course() -> None:
    engine = _engine()
    assert engine is not None
    tag = "course-grader-test"
    built = subprocess.run([engine, "build", "-t", tag, str(COURSE.root)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    ran = subprocess.run([engine, "run", "--rm", tag, "list"], capture_output=True, text=True)
    assert ran.returncode == 0 and "lesson-1" in ran.stdout, ran.stderr[-2000:]
