"""What checks a lesson has, read from its checks file without running (or importing) it.

`course list` and `course hint` need titles, points and hints instantly; importing the checks
would import the SDK (a second or more). Each check declares its metadata as literal arguments
of `@check(...)`, so the source is enough.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from checker.registry import Course, Lesson


@dataclass(frozen=True)
class CheckInfo:
    id: str
    title: str
    points: int
    hint: str


def check_id(function_name: str) -> str:
    """`test_index_matches_workspace` -> `index_matches_workspace`: the id students type."""
    return function_name.removeprefix("test_")


def _is_check_decorator(node: ast.expr) -> bool:
    func = node.func if isinstance(node, ast.Call) else None
    return (isinstance(func, ast.Name) and func.id == "check") or (
        isinstance(func, ast.Attribute) and func.attr == "check")


def read_catalog(path: Path) -> list[CheckInfo]:
    """The checks declared in `path`, in file order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[CheckInfo] = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            if _is_check_decorator(deco):
                assert isinstance(deco, ast.Call)
                args = [ast.literal_eval(a) for a in deco.args]
                kwargs = {k.arg: ast.literal_eval(k.value) for k in deco.keywords if k.arg}
                title = args[0] if args else kwargs["title"]
                found.append(CheckInfo(id=check_id(node.name), title=title,
                                       points=int(kwargs.get("points", 1)), hint=kwargs.get("hint", "")))
    return found


def lesson_catalog(course: Course, lesson: Lesson, *, hidden: bool = False) -> list[CheckInfo]:
    """Every check of `lesson`, in run order: its visible files, then (with `hidden`, when this copy
    of the course has them) the instructor-only ones."""
    files = [*course.checks_files(lesson)]
    if hidden:
        files += course.hidden_checks_files(lesson)
    return [info for path in files if path.is_file() for info in read_catalog(path)]


def lesson_points(course: Course, lesson: Lesson, *, hidden: bool = False) -> int:
    """What checking `lesson` can award, counted as the runner counts it: the points of its checks
    (with `hidden`, also the instructor-only ones, when this copy of the course has them); a quiz,
    its bank's. course.toml states no points: they are derived here, so they cannot disagree."""
    if lesson.kind == "quiz":
        from checker.quiz.bank import load_bank, load_settings

        return load_bank(load_settings(course, lesson).bank).points
    return sum(info.points for info in lesson_catalog(course, lesson, hidden=hidden))
