"""Plausible wrong implementations (tests/mutants/lessonNN.toml) must each be caught.

A mutant is the reference solution with one mistake a student would plausibly make; the checks
it names must fail on it. This is what makes "the checks cannot be fooled" more than a claim.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from checker.runner.lesson import run_lesson
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

MUTANTS_DIR = Path(__file__).parent / "mutants"


def _mutants() -> list[tuple[str, dict]]:
    """Every mutant: `[[mutant]]` edits a module of the package, `[[project_mutant]]` any file of
    the server's project (e.g. its pyproject.toml, for the packaging lesson)."""
    found = []
    for path in sorted(MUTANTS_DIR.glob("lesson*.toml")):
        lesson_id = f"lesson-{int(path.stem.removeprefix('lesson'))}"
        if not COURSE.lesson(lesson_id).available:
            continue
        data = tomllib.loads(path.read_text())
        for mutant in data.get("mutant", []):
            found.append((lesson_id, {**mutant, "file": f"src/{COURSE.package}/{mutant['module']}.py"}))
        found.extend((lesson_id, mutant) for mutant in data.get("project_mutant", []))
    return found


MUTANTS = _mutants()


def apply_mutant(project: Path, mutant: dict) -> None:
    target = project / mutant["file"]
    source = target.read_text()
    count = source.count(mutant["replace"])
    assert count == 1, f"mutant {mutant['name']!r}: its `replace` text occurs {count} times in {target.name}; it must occur once"
    target.write_text(source.replace(mutant["replace"], mutant["with"]))


@pytest.mark.parametrize(("lesson_id", "mutant"), MUTANTS, ids=[f"{l}:{m['name']}" for l, m in MUTANTS])
def test_checks_catch_the_mutant(lesson_id: str, mutant: dict, tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(COURSE.solutions.parent, project, ignore=shutil.ignore_patterns("__pycache__"))
    apply_mutant(project, mutant)
    edition = project / COURSE.solutions.relative_to(COURSE.solutions.parent)
    lesson = COURSE.lesson(lesson_id)
    result = run_lesson(COURSE, lesson, str(edition), select=list(mutant["kills"]), hidden=True)
    assert not result.error, result.error
    outcomes = {c.id: c.outcome for c in result.checks}
    survived = [check for check in mutant["kills"] if outcomes.get(check) != "failed"]
    if survived and all(outcomes.get(c) == "skipped" for c in survived):
        pytest.skip(f"service missing for {survived}")
    assert not survived, f"the mistake {mutant['name']!r} was not caught by {survived} (outcomes: {outcomes})"


def test_every_available_lesson_has_mutants() -> None:
    covered = {lesson for lesson, _ in MUTANTS}
    missing = [l.id for l in COURSE.lessons if l.available and l.kind == "code" and l.id not in covered]
    assert not missing, f"lessons without mutants in tests/mutants/: {missing}"
