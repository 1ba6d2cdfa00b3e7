"""What a student reads or copies fits an 80-column terminal (and still reads well at 120).

For `course`, `check`, `next`, `watch`, `quiz` and `--help`: no line is wider than the terminal,
no word is broken across lines, no command to type is cut or split, nothing ends in "…".
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pexpect
import pytest
from rich.console import Console

from checker.registry import load_course
from checker.runner.catalog import lesson_catalog, lesson_points
from checker.runner.lesson import run_lesson
from checker.student.watch import Watcher, hints_for, render_run
from tests.conftest import CODE_LESSONS, COURSE, pristine_starter
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env

WIDTHS = [80, 120]
ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
COMMAND = re.compile(r"uv run course [a-z][\w\-./ ]*?(?=\s{2,}|[`)]|$)")


def _course(root: Path, width: int, *args: str) -> str:
    env = course_env(root)
    env["COLUMNS"] = str(width)
    proc = subprocess.run([COURSE_SCRIPT, *args], capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


BARE = re.compile(r"(?<!uv run )\bcourse (?:check|hint|open|reset|solution|watch|next|quiz|list|doctor)\b")


def fits(text: str, width: int, words_from: list[str] = ()) -> list[str]:
    """Problems with `text` at `width`: long lines, ellipses, words of `words_from` that were split,
    and commands not in the README's form (`uv run course ...`)."""
    lines = [line.rstrip() for line in ANSI.sub("", text).splitlines()]
    problems = [f"{len(line)} columns: {line!r}" for line in lines if len(line) > width]
    problems += [f"not `uv run course`: {line!r}" for line in lines if BARE.search(line)]
    problems += [f"cut short: {line!r}" for line in lines if "…" in line and not line.endswith("checker…")]
    tokens = set(re.split(r"[\s│┃|]+", "\n".join(lines)))
    for source in words_from:
        for word in source.split():
            if word not in tokens and not any(word in token for token in tokens):
                problems.append(f"word broken across lines: {word!r}")
    return problems


def commands_whole(text: str, expected: list[str]) -> list[str]:
    """Each expected command appears complete on one line."""
    lines = [line.rstrip() for line in ANSI.sub("", text).splitlines()]
    return [command for command in expected if not any(command in line for line in lines)]


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A course copy where lesson 1 passed and lesson 2 is in progress, failing its second check."""
    root = copy_course(tmp_path_factory.mktemp("narrow") / "course")
    (root / "quiz").mkdir()
    for name in ("bank.toml", "key.hashed.toml"):  # the practice quiz, as a student edition has it
        (root / "quiz" / name).write_bytes((COURSE.root / "quiz" / name).read_bytes())
    first, second = CODE_LESSONS[0], CODE_LESSONS[1]
    failing = lesson_catalog(COURSE, second)[1]
    (root / ".course").mkdir(exist_ok=True)
    (root / ".course" / "progress.json").write_text(json.dumps({
        first.id: {"status": "passed", "passed_once": True, "earned": lesson_points(COURSE, first)},
        second.id: {"status": "in progress", "failing": [failing.id], "earned": 0}}))
    return root


@pytest.mark.parametrize("width", WIDTHS)
def test_the_lessons_table(student: Path, width: int) -> None:
    shown = _course(student, width)
    titles = [lesson.title for lesson in COURSE.lessons]
    assert not fits(shown, width, titles), fits(shown, width, titles)
    expected = [f"uv run course hint {CODE_LESSONS[1].number}"]
    expected += [f"uv run course open {lesson.number}" for lesson in COURSE.lessons[2:] if lesson.available]
    assert not commands_whole(shown, expected), shown


@pytest.mark.parametrize("width", WIDTHS)
def test_next(student: Path, width: int) -> None:
    shown = _course(student, width, "next")
    second = CODE_LESSONS[1]
    failing = lesson_catalog(COURSE, second)[1]
    assert not fits(shown, width, [second.title, failing.title, failing.hint]), shown
    assert not commands_whole(shown, [f"uv run course open {second.number}", f"uv run course check {second.number}",
                                      f"uv run course watch {second.number}"]), shown
    assert second.notebook in shown, "the notebook path is whole"


@pytest.mark.parametrize("width", WIDTHS)
def test_check(student: Path, width: int) -> None:
    shown = _course(student, width, "check", "1")
    catalog = lesson_catalog(COURSE, CODE_LESSONS[0])
    assert not fits(shown, width, [c.title for c in catalog] + [c.hint for c in catalog]), shown
    lines = [line for line in ANSI.sub("", shown).splitlines() if line.strip()]
    at_margin = [line for line in lines[1:-1] if not line.startswith(" ")]
    assert not at_margin, f"a wrapped title or message went back to column 0: {at_margin}"


def _render(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


@pytest.mark.parametrize("width", WIDTHS)
def test_watch(tmp_path: Path, width: int) -> None:
    lesson = COURSE.lesson("1")
    result = run_lesson(COURSE, lesson, str(pristine_starter()))
    catalog = lesson_catalog(COURSE, lesson)
    titles, hints = [c.title for c in catalog], [c.hint for c in catalog]
    first_run = _render(render_run(None, result, "context.py saved"), width)
    assert not fits(first_run, width, titles), first_run
    pressed_h = _render(hints_for(result), width)
    assert not fits(pressed_h, width, titles + hints), pressed_h

    root = copy_course(tmp_path / "course")
    course = load_course(root)
    console = Console(width=width, record=True, file=open(os.devnull, "w"))

    def no_events(*paths: Path, **kwargs: Any) -> Any:
        return iter(())

    watcher = Watcher(course, course.lesson("1"), console, watch_fn=no_events, interactive=False)
    assert watcher.run() == 0
    watcher._advance()  # the lines shown when a lesson passes  # noqa: SLF001
    shown = console.export_text()
    assert not fits(shown, width, ["Starting the checker…", course.lesson("2").title]), shown
    assert not commands_whole(shown, ["uv run course solution 1", "uv run course open 2"]), shown


@pytest.mark.parametrize("width", WIDTHS)
def test_quiz(student: Path, width: int) -> None:
    env = course_env(student)
    env.pop("COLUMNS", None)
    env["TERM"] = "xterm"
    child = pexpect.spawn(COURSE_SCRIPT, ["quiz", "--lesson", "2"], env=env, cwd=str(student), encoding="utf-8",
                          timeout=60, dimensions=(60, width))
    child.expect("Your answer|A–D")
    for _ in range(4):  # a ^C that lands while the prompt is still setting up the terminal can be lost
        child.sendcontrol("c")
        if child.expect([pexpect.EOF, pexpect.TIMEOUT], timeout=15) == 0:
            break
    assert not child.isalive(), "the quiz did not stop on ^C"
    child.close()
    shown = ANSI.sub("", (child.before or "")).replace("\r", "")
    assert not fits(shown, width), shown
    assert not commands_whole(shown, ["uv run course quiz"]), shown


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", [[], ["quiz"], ["dev"], ["check"], ["reset"]], ids=["course", "quiz", "dev",
                                                                                       "check", "reset"])
def test_help(student: Path, width: int, command: list[str]) -> None:
    shown = _course(student, width, *command, "--help")
    lines = ANSI.sub("", shown).splitlines()
    cut = [line for line in lines[1:] if line.rstrip().endswith("...")]
    assert not cut, f"help cut short: {cut}"
    assert all(len(line.rstrip()) <= width for line in lines), shown
