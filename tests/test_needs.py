"""`checker.needs`: a cell that needs unwritten student code fails with one line, and only real errors
show a traceback. Run in a real kernel, as a notebook runs."""

from __future__ import annotations

import os
import re

import nbformat
from nbclient import NotebookClient

from checker.needs import Todo, find_todo, names_in
from tests.conftest import COURSE, pristine_starter

ANSI = re.compile(r"\x1b\[[0-9;]*m")

CELLS = [
    "%load_ext checker.needs",
    # 1: the starter's own exercise, raised in a cell
    "from research_desk.context import open_desk\nworkspace = '.'\nstate = await open_desk(workspace).__aenter__()",
    # 2: a later cell using what cell 1 never made
    "print(state)",
    # 3: a real mistake: the usual traceback
    "1 / 0",
    # 4: the exercise raised inside a task group (as every MCP client runs it)
    "import anyio\nasync def go():\n    async with anyio.create_task_group() as tg:\n"
    "        tg.start_soon(lambda: anyio.to_thread.run_sync(lambda: (_ for _ in ()).throw(\n"
    "            NotImplementedError('TODO(lesson-4): write is_path_allowed'))))\nawait go()",
    # 5: asked for explicitly, for work that cannot raise by itself
    "needs({}, 'lesson-7', 'ANNOTATIONS')",
    # 6: the name written after all: no more cascade
    "state = 'written'\nprint(state)",
    # 7: a NameError for a name no cell stopped at is a real mistake
    "print(never_defined)",
]


def _run(cells: list[str]) -> list[list[str]]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    env = dict(os.environ, PYTHONPATH=str(pristine_starter()), COURSE_ROOT=str(COURSE.root))
    NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True).execute(env=env)
    shown = []
    for cell in nb.cells:
        errors = [o for o in cell.outputs if o.output_type == "error"]
        shown.append([ANSI.sub("", line) for o in errors for line in o.traceback])
    return shown


def test_one_line_for_unwritten_code_and_tracebacks_for_real_errors() -> None:
    shown = _run(CELLS)
    assert shown[1] == ["This cell needs your code: TODO(lesson-1) in research_desk/context.py (open_desk). "
                        "Write it, then re-run this cell."]
    assert shown[2] == ["This cell needs your code: TODO(lesson-1) in research_desk/context.py (open_desk), "
                        "where an earlier cell stopped. Write it, then re-run from that cell."]
    assert len(shown[3]) > 1 and "ZeroDivisionError" in "".join(shown[3]), "a real error keeps its traceback"
    assert shown[4] == ["This cell needs your code: TODO(lesson-4) in research_desk/roots.py (is_path_allowed). "
                        "Write it, then re-run this cell."]
    assert shown[5] == ["This cell needs your code: TODO(lesson-7) in research_desk/errors.py (ANNOTATIONS). "
                        "Write it, then re-run this cell."]
    assert shown[6] == [], "a cell that sets the name again runs"
    assert len(shown[7]) > 1 and "NameError" in "".join(shown[7])


def test_the_todo_is_found_in_groups_causes_and_quoted_output() -> None:
    inner = NotImplementedError("TODO(lesson-9): write the capstone lifespan")
    group = ExceptionGroup("outer", [ValueError("x"), ExceptionGroup("inner", [inner])])
    assert find_todo(group) == Todo("lesson-9", "the capstone lifespan")
    try:
        try:
            raise inner
        except NotImplementedError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as wrapped:
        assert find_todo(wrapped) == Todo("lesson-9", "the capstone lifespan")
    quoted = RuntimeError("server exited:\n  File 'x.py'\nNotImplementedError: TODO(lesson-8): write load_settings\n")
    assert find_todo(quoted) == Todo("lesson-8", "load_settings")
    assert find_todo(ValueError("nothing to do with it")) is None


def test_names_a_cell_sets_and_reads() -> None:
    stored, computed, loaded = names_in(
        "import os\nfrom a import b as c\nx = f(y)\nfor i in z: pass\nasync with g() as h:\n    w = 1\n"
        "def k():\n    local = q\n    return local\n")
    assert stored == {"os", "c", "x", "i", "h", "w", "k"}
    assert computed == {"x", "i", "h", "w"}, "imports and definitions cannot fail on a missing exercise"
    assert {"f", "y", "z", "g", "q"} <= loaded and "local" not in stored
