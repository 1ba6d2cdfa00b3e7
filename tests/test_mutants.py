"""Plausible wrong implementations (tests/mutants/lessonNN.toml) must each be caught, every run.

A mutant is the reference solution with one mistake a student would plausibly make; the VISIBLE
checks it names must fail on it: a student sees at home what grading would find, and a hidden
check only re-tests a requirement with other inputs. Each mutant runs several times with
different seeds (`tests/variants.py`), so a mistake caught only by a lucky random draw fails
this test instead of slipping past a student now and then.
"""

from __future__ import annotations

import pytest

from checker.runner.catalog import lesson_catalog
from tests.conftest import CODE_LESSONS, COURSE
from tests.variants import Run, Variant, load_variants, parallel_runs, seeded_runs, selected

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

MUTANTS = load_variants("mutant")

_runs: dict[str, dict[str, list[Run]]] = {}


def _lesson_runs(request: pytest.FixtureRequest, mutant: Variant) -> list[Run]:
    """This mutant's runs; the first mutant of a lesson runs all of the lesson's selected mutants."""
    if mutant.lesson not in _runs:
        folder = request.getfixturevalue("tmp_path_factory").mktemp(f"mutants-{mutant.lesson_file}")
        _runs[mutant.lesson] = seeded_runs(COURSE.lesson(mutant.lesson), selected(request, mutant.lesson, "mutant"),
                                           folder, hidden=False, jobs=parallel_runs())
    return _runs[mutant.lesson][mutant.name]


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_visible_checks_catch_the_mutant(mutant: Variant, request: pytest.FixtureRequest) -> None:
    visible = {c.id for c in lesson_catalog(COURSE, COURSE.lesson(mutant.lesson))}
    assert mutant.kills, f"mutant {mutant.name!r} names no check that catches it (`kills`)"
    not_visible = sorted(set(mutant.kills) - visible)
    assert not not_visible, (f"mutant {mutant.name!r}: {not_visible} are not visible checks of {mutant.lesson}; "
                             "a mistake must be caught by a check the student can run")
    all_skipped = True
    for run in _lesson_runs(request, mutant):
        assert not run.result.error, f"{run.result.error}\n{run.repeat()}"
        outcomes = {c.id: c.outcome for c in run.result.checks}
        survived = [check for check in mutant.kills if outcomes.get(check) != "failed"]
        if survived and all(outcomes.get(c) == "skipped" for c in survived):
            continue
        all_skipped = False
        assert not survived, (f"the mistake {mutant.name!r} was not caught by {survived} with seed {run.seed} "
                              f"(outcomes: {outcomes}); {run.repeat()}")
    if all_skipped:
        pytest.skip(f"service missing for {list(mutant.kills)}")


def test_every_available_lesson_has_mutants() -> None:
    covered = {m.lesson for m in MUTANTS}
    missing = [lesson.id for lesson in CODE_LESSONS if lesson.id not in covered]
    assert not missing, f"lessons without mutants in tests/mutants/: {missing}"


def test_mutants_have_unique_names() -> None:
    names = [(m.lesson, m.name) for m in MUTANTS]
    doubles = sorted({n for n in names if names.count(n) > 1})
    assert not doubles, f"two mutants share a name (results are kept by name): {doubles}"

