"""The checks' own code stays readable: small files, no helper written twice (issue 20).

A checks file reads as its lesson's requirements; plumbing lives once, in `support/` (one
lesson) or `kit/` (several). These tests hold the layout docs/authoring.md describes."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import COURSE

CHECKS = COURSE.checks_dir
LONGEST = 500  # lines: past this a checks file no longer reads as a list of requirements


def _code_files() -> list[Path]:
    return sorted(p for p in CHECKS.rglob("*.py") if "__pycache__" not in p.parts)


def _definitions(path: Path) -> list[tuple[str, str]]:
    """(name, shape) of each top-level helper: its AST with the name left out, so that the same
    code under another name is still the same helper."""
    found = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name.startswith("test_"):
                continue
            body = ast.Module(body=node.body, type_ignores=[])
            shape = ast.dump(body) + ast.dump(node.args) if not isinstance(node, ast.ClassDef) else ast.dump(body)
            if len(ast.unparse(body).splitlines()) >= 2 or "return" in ast.unparse(body):
                found.append((node.name, shape))
        elif (isinstance(node, ast.Assign) and isinstance(node.value, (ast.Dict, ast.Tuple, ast.List, ast.Set))
              and not ast.unparse(node.targets[0]).startswith("__")):  # `__all__` declares, it defines nothing
            found.append((ast.unparse(node.targets[0]), ast.dump(node.value)))
    return found


@pytest.mark.parametrize("path", _code_files(), ids=lambda p: p.relative_to(CHECKS).as_posix())
def test_every_checks_file_is_short_enough_to_read(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines < LONGEST, (f"{path.relative_to(COURSE.root)} has {lines} lines: move its plumbing to support/ or "
                             "kit/, or split its requirements by topic into part files (docs/authoring.md)")


def test_no_helper_is_written_twice() -> None:
    seen: dict[str, list[str]] = defaultdict(list)
    for path in _code_files():
        for name, shape in _definitions(path):
            seen[shape].append(f"{path.relative_to(CHECKS).as_posix()}:{name}")
    repeated = [places for places in seen.values() if len({p.split(':')[0] for p in places}) > 1]
    assert not repeated, f"the same helper in several files (put it in kit/ or support/ once): {repeated}"


def test_support_and_kit_define_no_checks() -> None:
    """pytest would collect a `test_*` function again in every checks file that imports it."""
    for folder in (CHECKS / "kit", CHECKS / "support"):
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            assert not [n for n in names if n.startswith("test_")], f"{path}: checks belong in lessonNN*.py"
