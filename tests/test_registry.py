"""course.toml is the one registry: each lesson fact is written once and every other place either
reads it or is held to it here.

- titles: the notebooks' headings, the quiz notebook's sections and the README's lesson table;
- needs: the programs a lesson's checks start, which `course doctor`, the grading preflight, the
  Classroom workflow, the Gradescope image, the checks' skip messages and .ci/run all follow;
- points: never written down, derived from the checks (and the quiz bank) as the runner counts them.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from checker.classroom import workflow
from checker.grading.gradescope import Settings, setup_sh
from checker.quiz.bank import load_bank, load_settings
from checker.registry import CourseError, load_course
from checker.runner.catalog import lesson_catalog, lesson_points, read_catalog
from checker.student.doctor import run_doctor
from tests.conftest import CODE_LESSONS, COURSE

RAW = tomllib.loads((COURSE.root / "course.toml").read_text(encoding="utf-8"))


def _markdown_headings(notebook: Path, level: str) -> list[str]:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = ["".join(cell["source"]).splitlines() for cell in cells if cell["cell_type"] == "markdown"]
    return [line for cell in lines for line in cell if line.startswith(level + " ")]


# ---------------------------------------------------------------- titles

@pytest.mark.parametrize("lesson", COURSE.lessons, ids=[lesson.id for lesson in COURSE.lessons])
def test_a_notebook_opens_with_its_registry_title(lesson) -> None:
    first = _markdown_headings(COURSE.root / lesson.notebook, "#")[0]
    assert first == f"# Lesson {lesson.number} — {lesson.title}", (
        f"{lesson.notebook} opens with {first!r}; course.toml's title is {lesson.title!r}")


def test_the_readme_lesson_table_uses_the_registry_titles() -> None:
    readme = (COURSE.root / "README.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| ([^|]+?) \|", readme, flags=re.MULTILINE))
    assert {int(n): title for n, title in rows.items()} == {lesson.number: lesson.title for lesson in COURSE.lessons}


def test_the_quiz_notebook_names_each_lesson_by_its_registry_title() -> None:
    quiz = next(lesson for lesson in COURSE.lessons if lesson.kind == "quiz")
    sections = _markdown_headings(COURSE.root / quiz.notebook, "##")
    named = [line for line in sections if re.match(r"## Lesson \d+ — ", line)]
    assert named == [f"## Lesson {lesson.number} — {lesson.title}" for lesson in CODE_LESSONS]


# ---------------------------------------------------------------- needs

def _programs_started_by(path: Path) -> set[str]:
    """Programs a check file looks up by name: installed_or_skip("x") or shutil.which("x")."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in ("installed_or_skip", "which") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _with_their_helpers(files: list[Path]) -> list[Path]:
    """`files` and every module of checker/checks/ (support/, kit/) they import, and those import."""
    found = [path for path in files if path.is_file()]
    for path in found:  # grows as helpers are found
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("checker.checks."):
                helper = COURSE.checks_dir.joinpath(*node.module.split(".")[2:]).with_suffix(".py")
                if helper.is_file() and helper not in found:
                    found.append(helper)
    return found


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=[lesson.id for lesson in CODE_LESSONS])
def test_a_lesson_needs_every_program_its_checks_start(lesson) -> None:
    files = _with_their_helpers([*COURSE.checks_files(lesson), *COURSE.hidden_checks_files(lesson)])
    started = set().union(*(_programs_started_by(path) for path in files))
    assert started <= set(lesson.needs), f"{lesson.id}'s checks start {sorted(started - set(lesson.needs))}: add to needs"


def test_every_need_says_how_to_install_it() -> None:
    for program in COURSE.needed_programs:
        assert program.apt or program.pip, f"[programs.{program.name}] names no apt or pip package"
        assert program.skip_message().startswith(f"needs {program.name}: ") and "install" in program.skip_message()


def test_a_need_without_a_programs_table_is_one_clear_error(tmp_path: Path) -> None:
    text = (COURSE.root / "course.toml").read_text(encoding="utf-8")
    (tmp_path / "course.toml").write_text(text.replace('needs = ["uv"]', 'needs = ["uv", "memcached"]'), encoding="utf-8")
    with pytest.raises(CourseError, match="lesson-8 needs memcached, which \\[programs\\] does not describe"):
        load_course(tmp_path)


def test_ci_installs_every_program_a_lesson_needs() -> None:
    script = (COURSE.root / ".ci" / "run").read_text(encoding="utf-8")
    installs = dict(re.findall(r"command -v (\S+) >/dev/null 2>&1 \|\| missing\+=\(([^)]+)\)", script))
    for program in COURSE.needed_programs:
        if program.pip:
            assert f"pip install --quiet {program.pip}" in script, f".ci/run does not install {program.name}"
        else:
            assert program.apt in installs.get(program.name, "").split(), f".ci/run does not install {program.name}"


def test_doctor_classroom_and_gradescope_follow_the_needs() -> None:
    system = [program for program in COURSE.needed_programs if not program.pip]
    doctor = {finding.name.split(" ")[0]: finding for finding in run_doctor(COURSE)}
    for program in system:
        lessons = ", ".join(str(lesson.number) for lesson in COURSE.lessons_needing(program.name))
        assert program.name in doctor and lessons in doctor[program.name].name, sorted(doctor)
    classroom = workflow(COURSE)
    gradescope = setup_sh(COURSE, Settings(lessons=[lesson.id for lesson in CODE_LESSONS]))
    for program in system:
        assert program.apt in classroom and program.apt in gradescope, program.name
    only_lesson_1 = setup_sh(COURSE, Settings(lessons=["lesson-1"]))
    assert not any(program.apt in only_lesson_1 for program in system), "lesson 1 needs no service"


# ---------------------------------------------------------------- points

def test_course_toml_states_no_points_and_no_checks_file_for_the_quiz() -> None:
    assert not [entry["id"] for entry in RAW["lessons"] if "points" in entry], "points are derived from the checks"
    quiz = next(entry for entry in RAW["lessons"] if entry.get("kind") == "quiz")
    assert "checks" not in quiz, "a quiz is graded from answers: it has no checks file"
    assert not (COURSE.checks_dir / f"lesson{int(quiz['id'].split('-')[1]):02d}.py").exists()


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=[lesson.id for lesson in CODE_LESSONS])
def test_points_are_the_checks_points(lesson) -> None:
    visible = sum(info.points for info in lesson_catalog(COURSE, lesson))
    hidden = sum(info.points for path in COURSE.hidden_checks_files(lesson) for info in read_catalog(path))
    assert lesson_points(COURSE, lesson) == visible > 0
    assert lesson_points(COURSE, lesson, hidden=True) == visible + hidden


def test_the_quiz_is_worth_its_bank() -> None:
    quiz = next(lesson for lesson in COURSE.lessons if lesson.kind == "quiz")
    bank = load_bank(load_settings(COURSE, quiz).bank)
    assert lesson_points(COURSE, quiz) == lesson_points(COURSE, quiz, hidden=True) == bank.points > 0


def test_course_list_shows_derived_points_without_importing_pytest_or_the_sdk() -> None:
    code = ("import json, sys\n"
            "from typer.testing import CliRunner\n"
            "from checker.cli.app import app\n"
            "out = CliRunner().invoke(app, ['list', '--json']).output\n"
            "print(json.dumps({'rows': json.loads(out)['lessons'],"
            " 'imported': sorted(n for n in ('pytest', 'mcp', 'checker.checks') if n in sys.modules)}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=COURSE.root, check=True)
    answer = json.loads(done.stdout)
    assert answer["imported"] == [], f"`course list` imported {answer['imported']}"
    assert {row["id"]: row["available"] for row in answer["rows"]} == {
        lesson.id: lesson_points(COURSE, lesson) for lesson in COURSE.lessons}
