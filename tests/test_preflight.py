"""A module that does not import is reported once, before any check runs: file, line, code, fix.

Attacks first: the ways a student's package stops importing (a syntax error, a deleted file, code
at module level that raises, exits, kills its process or hangs), each checked through
`course check`'s path, and once through `course grade`'s sandbox.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checker.cli.render import lesson_report
from checker.notebook import CheckReport
from checker.runner.lesson import run_lesson
from checker.runner.results import LessonResult
from checker.student.watch import render_run
from tests.conftest import COURSE, pristine_starter

LESSON = COURSE.lesson("lesson-1")
MODULE = f"{COURSE.package}/context.py"
SOLVED = (COURSE.solutions / MODULE).read_text()
FUTURE = "from __future__ import annotations\n"


def line_of(source: str, code: str) -> int:
    return source.splitlines().index(code) + 1


def edition(tmp_path: Path, source: str | None) -> Path:
    """A copy of the solutions whose lesson-1 module is `source` (None: deleted)."""
    root = tmp_path / "src"
    shutil.copytree(COURSE.solutions, root, ignore=shutil.ignore_patterns("__pycache__"))
    if source is None:
        (root / MODULE).unlink()
    else:
        (root / MODULE).write_text(source)
    return root


def _text(renderable: object, width: int = 80) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def _check(tmp_path: Path, source: str | None, timeout: float | None = None) -> LessonResult:
    result = run_lesson(COURSE, LESSON, str(edition(tmp_path, source)), check_timeout=timeout)
    assert not result.error, result.error
    assert len(result.broken) == 1, result.broken
    assert all(c.outcome == "failed" and c.message.startswith("not run:") and not c.hint for c in result.checks)
    shown = _text(lesson_report(result), width=250)
    assert shown.count(result.broken[0].error) == 1, f"the error is said once:\n{shown}"
    assert "hint:" not in shown, "no hint about something else"
    return result


def test_a_syntax_error_names_file_line_code_and_caret(tmp_path: Path) -> None:
    broken = SOLVED.replace("def register(server: MCPServer) -> None:", "def register(server: MCPServer) -> None", 1)
    line = line_of(broken, "def register(server: MCPServer) -> None")
    result = _check(tmp_path, broken)
    (report,) = result.broken
    assert (report.file, report.line, report.code) == (MODULE, line, "def register(server: MCPServer) -> None")
    assert report.error == "SyntaxError: expected ':'" and f"line {line}" in report.fix
    shown = _text(lesson_report(result))
    assert f"{line} | def register(server: MCPServer) -> None" in shown and "^" in shown


def test_a_deleted_module_says_which_reset_brings_it_back(tmp_path: Path) -> None:
    result = _check(tmp_path, None)
    (report,) = result.broken
    assert report.file == MODULE and "is missing" in report.error
    assert "uv run course reset 1" in report.fix
    cell = html.unescape(re.sub(r"<[^>]+>", "", CheckReport(result)._repr_html_()))  # the notebook's check cell
    assert cell.count("is missing") == 1 and "uv run course reset 1" in cell


def test_code_that_raises_at_import_names_its_line(tmp_path: Path) -> None:
    source = SOLVED.replace(FUTURE, FUTURE + "INDEX = build_index_now()\n", 1)
    (report,) = _check(tmp_path, source).broken
    assert (report.line, report.code) == (line_of(source, "INDEX = build_index_now()"), "INDEX = build_index_now()")
    assert report.error == "NameError: name 'build_index_now' is not defined"


def test_an_import_that_hangs_is_stopped_where_it_waits(tmp_path: Path) -> None:
    source = SOLVED.replace(FUTURE, FUTURE + "import time\ntime.sleep(600)\n", 1)
    (report,) = _check(tmp_path, source, timeout=4).broken
    line = line_of(source, "time.sleep(600)")
    assert (report.line, report.code) == (line, "time.sleep(600)")
    assert "did not finish" in report.error and f"move line {line} into a function" in report.fix


@pytest.mark.parametrize("ending", ["import sys\nsys.exit(0)\n", "import os\nos._exit(3)\n"], ids=["exit", "_exit"])
def test_code_that_ends_the_process_at_import(tmp_path: Path, ending: str) -> None:
    (report,) = _check(tmp_path, SOLVED.replace(FUTURE, FUTURE + ending, 1)).broken
    assert report.file == MODULE
    assert "SystemExit" in report.error or "exit code 3" in report.error


def test_one_broken_module_shared_by_a_lessons_modules_is_reported_once(tmp_path: Path) -> None:
    """Lesson 9's server imports every module: a broken lesson-1 module is one report, not one per import."""
    capstone = COURSE.lesson("lesson-9")
    root = edition(tmp_path, SOLVED.replace(FUTURE, FUTURE + "1 / 0\n", 1))
    result = run_lesson(COURSE, capstone, str(root))
    assert [b.file for b in result.broken] == [MODULE], result.broken


def test_watch_shows_the_report_once_then_what_the_fix_fixed(tmp_path: Path) -> None:
    broken = _check(tmp_path, SOLVED.replace(FUTURE, FUTURE + "1 / 0\n", 1))
    shown = _text(render_run(None, broken, "context.py saved"))
    assert shown.count("ZeroDivisionError") == 1 and "does not import" in shown
    fixed = run_lesson(COURSE, LESSON, str(edition(tmp_path / "fixed", SOLVED)))
    assert fixed.ok
    assert _text(render_run(broken, fixed, "context.py saved")).count("fixed: ") == len(fixed.checks)


def test_the_command_line_and_the_starter_are_unaffected(tmp_path: Path) -> None:
    """The untouched starter imports: its checks run and fail on their own (no pre-flight report)."""
    starter = run_lesson(COURSE, LESSON, str(pristine_starter()))
    assert not starter.broken and all(c.hint for c in starter.checks)
    root = edition(tmp_path, None)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "checker.cli.app", "check", "1", "--against", str(root)],
                          capture_output=True, text=True, env=dict(env, COURSE_ROOT=str(COURSE.root), COLUMNS="80"))
    assert proc.returncode == 1
    assert proc.stdout.count("is missing") == 1 and "uv run course reset 1" in proc.stdout, proc.stdout


@pytest.mark.full
def test_grading_feedback_reports_a_broken_module_once(tmp_path: Path) -> None:
    """`course grade`: the import is tried by the host in the submission's sandbox, and the student's
    feedback says once what is wrong, instead of once per check (visible and hidden)."""
    from checker.grading.batch import grade_all, sandbox_check
    from checker.grading.exports import write_all
    from checker.grading.submissions import discover

    checked = sandbox_check(COURSE, [LESSON])
    if checked.refusal:
        pytest.skip(f"no sandbox for `course grade` here: {checked.refusal}")
    broken = SOLVED.replace("def register(server: MCPServer) -> None:", "def register(server: MCPServer) -> None", 1)
    line = line_of(broken, "def register(server: MCPServer) -> None")
    for name, source in (("typo", broken), ("deleted", None),
                         ("hangs", SOLVED.replace(FUTURE, FUTURE + "import time\ntime.sleep(600)\n", 1))):
        root = tmp_path / "class" / name / "capstone"
        root.mkdir(parents=True)
        edition(root, source)
    results = {r.id: r for r in grade_all(COURSE, discover(tmp_path / "class"), [LESSON], jobs=2, hidden=True,
                                          check_timeout=5, checked=checked)}
    out = tmp_path / "grades"
    write_all(list(results.values()), out, sandbox={"mode": checked.mode.value if checked.mode else "none"})
    typo = results["typo"].lessons[0]
    assert [(b.file, b.line, b.error) for b in typo.broken] == [(MODULE, line, "SyntaxError: expected ':'")]
    assert "uv run course reset 1" in results["deleted"].lessons[0].broken[0].fix
    hang = results["hangs"].lessons[0].broken[0]
    assert hang.code == "time.sleep(600)" and "did not finish" in hang.error
    feedback = (out / "feedback" / "typo.md").read_text()
    assert feedback.count("SyntaxError") == 1 and f"{line} | def register" in feedback, feedback
    assert "hint:" not in feedback
    assert len(typo.checks) > 8, "the hidden checks are graded (and not run) too"

