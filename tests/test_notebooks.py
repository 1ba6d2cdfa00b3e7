"""Every lesson notebook runs top to bottom against the reference solutions (nbval-lax), and
is committed clean (no outputs) so students start from a blank page."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

from tests.conftest import COURSE

NOTEBOOK_LESSONS = [l for l in COURSE.lessons if l.available and (COURSE.root / l.notebook).is_file()]


def test_every_available_lesson_has_its_notebook() -> None:
    missing = [l.notebook for l in COURSE.lessons if l.available and not (COURSE.root / l.notebook).is_file()]
    assert not missing, f"available lessons without a notebook: {missing}"


@pytest.mark.parametrize("lesson", NOTEBOOK_LESSONS, ids=[l.id for l in NOTEBOOK_LESSONS])
def test_notebook_is_clean_and_valid(lesson) -> None:
    nb = nbformat.read(COURSE.root / lesson.notebook, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{lesson.notebook}: cells {dirty} have stored outputs; clear them before committing"
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code and f'check("{lesson.id}")' in code[-1], f"{lesson.notebook} must end with the check cell"
    assert any("```mermaid" in c.source for c in nb.cells if c.cell_type == "markdown"), "each lesson has a diagram"


@pytest.mark.full
@pytest.mark.parametrize("lesson", NOTEBOOK_LESSONS, ids=[l.id for l in NOTEBOOK_LESSONS])
def test_notebook_runs_against_solutions(lesson, tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(COURSE.solutions), COURSE_NOTEBOOK_STRICT="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", COURSE_ROOT=str(COURSE.root))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval", "--nbval-lax", "--nbval-cell-timeout=120",
         "-p", "no:cacheprovider", "-q", str(COURSE.root / lesson.notebook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{lesson.notebook} failed under nbval-lax:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
