"""Every lesson notebook runs top to bottom against the reference solutions (nbval-lax), is
committed clean (no outputs) so students start from a blank page, and on the untouched starter
stops only with `checker.needs`' one line wherever it needs the student's code."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import COURSE, pristine_starter

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
    if lesson.kind == "code":
        assert "%load_ext checker.needs" in code[0], f"{lesson.notebook}: its first cell loads checker.needs"
    assert any("```mermaid" in c.source for c in nb.cells if c.cell_type == "markdown"), "each lesson has a diagram"


@pytest.mark.full
@pytest.mark.parametrize("lesson", NOTEBOOK_LESSONS, ids=[l.id for l in NOTEBOOK_LESSONS])
def test_notebook_runs_against_solutions(lesson, tmp_path) -> None:
    env = dict(os.environ, PYTHONPATH=str(COURSE.solutions), COURSE_NOTEBOOK_STRICT="1",
               PYTEST_DISABLE_PLUGIN_AUTOLOAD="1", COURSE_ROOT=str(COURSE.root),
               TMPDIR=str(tmp_path))  # the folders the lesson's demos make go where pytest cleans up
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nbval", "--nbval-lax", "--nbval-cell-timeout=120",
         "-p", "no:cacheprovider", "-q", str(COURSE.root / lesson.notebook)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{lesson.notebook} failed under nbval-lax:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


ANSI = re.compile(r"\x1b\[[0-9;]*m")
NEEDS_LINE = re.compile(r"This cell needs your code: TODO\(lesson-\d+\) in \S+(?: \S+)* \(.+\)"
                        r"(?:\. Write it, then re-run this cell\.|, where an earlier cell stopped\. "
                        r"Write it, then re-run from that cell\.)")


@pytest.mark.full
@pytest.mark.parametrize("lesson", NOTEBOOK_LESSONS, ids=[l.id for l in NOTEBOOK_LESSONS])
def test_notebook_on_the_starter_stops_only_with_one_line(lesson, tmp_path) -> None:
    """Top to bottom on the untouched starter: every failing cell says, in one line, which TODO it
    needs; no traceback, no NameError from an earlier failed cell, no exception group on stderr."""
    nb = nbformat.read(COURSE.root / lesson.notebook, as_version=4)
    env = dict(os.environ, PYTHONPATH=str(pristine_starter()), COURSE_ROOT=str(COURSE.root), TMPDIR=str(tmp_path))
    env.pop("COURSE_NOTEBOOK_STRICT", None)
    client = NotebookClient(nb, timeout=180, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str((COURSE.root / lesson.notebook).parent)}})
    client.execute(env=env)
    problems, needed = [], []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for output in cell.outputs:
            if output.output_type == "error":
                lines = [ANSI.sub("", line) for line in output.traceback]
                if len(lines) == 1 and NEEDS_LINE.fullmatch(lines[0]):
                    needed.append(lines[0])
                else:
                    problems.append(f"cell {index}: {output.ename}: {output.evalue[:200]} ({len(lines)} lines)")
            elif output.output_type == "stream" and output.name == "stderr" and re.search(
                    r"Traceback|Exception Group|Error:", output.text):
                problems.append(f"cell {index} wrote an error to stderr: {output.text.strip()[:300]}")
    assert not problems, f"{lesson.notebook} on the starter:\n" + "\n".join(problems)
    if lesson.kind == "code":
        assert any(f"TODO({lesson.id})" in line for line in needed), (
            f"{lesson.notebook} never reached its own exercise on the starter: {needed}")
    check_cell = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert check_cell.outputs and not any(o.output_type == "error" for o in check_cell.outputs), (
        "the check cell reports on the starter without failing itself")


def test_lesson_1_says_where_the_clients_name_lives() -> None:
    """The exercise names the request-context path a student needs (not only `course hint 1`)."""
    nb = nbformat.read(COURSE.root / COURSE.lesson("1").notebook, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "ctx.session.client_params.client_info.name" in text


@pytest.mark.parametrize("lesson", NOTEBOOK_LESSONS, ids=[l.id for l in NOTEBOOK_LESSONS])
def test_notebook_metadata_is_what_the_kernel_reports(lesson) -> None:
    """JupyterLab rewrites a kernelspec or language_info that differs from the kernel's, which marks
    the notebook unsaved the moment it opens (tests/test_browser.py watches that in a browser). Only
    the Python patch version may differ from machine to machine."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    metadata = nbformat.read(COURSE.root / lesson.notebook, as_version=4).metadata
    assert metadata["kernelspec"] == {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
    reported = {**IPythonKernel.language_info, "version": metadata["language_info"].get("version")}
    assert metadata["language_info"] == reported
