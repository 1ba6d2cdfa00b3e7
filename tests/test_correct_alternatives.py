"""Correct code in another style must pass: every `[[correct]]` in tests/mutants/ passes every check.

A correct alternative is the reference solution with one part written as a good student might
(another library, structure or wording). It must pass every visible and hidden check, on every
seeded run in-process (`course check`), and when graded in the sandbox (`course grade`), where
its code runs in a host process and the checks read it over the wire. A check that rejects one
tests spelling, not behaviour.
"""

from __future__ import annotations

import os

import pytest

from checker.grading.batch import grade_all, sandbox_check
from checker.grading.record import SubmissionResult
from checker.grading.submissions import discover
from checker.registry import Lesson
from tests.conftest import CODE_LESSONS, COURSE
from tests.variants import SEED_VARIABLE, SEEDS, Run, Variant, load_variants, make_project, parallel_runs, seeded_runs, selected

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

CORRECT = load_variants("correct")
AT_LEAST = 3  # alternatives per lesson

_runs: dict[str, dict[str, list[Run]]] = {}
_graded: dict[str, dict[str, SubmissionResult | str]] = {}


def _lesson_runs(request: pytest.FixtureRequest, variant: Variant) -> list[Run]:
    if variant.lesson not in _runs:
        folder = request.getfixturevalue("tmp_path_factory").mktemp(f"correct-{variant.lesson_file}")
        chosen = selected(request, variant.lesson, "variant")
        _runs[variant.lesson] = seeded_runs(COURSE.lesson(variant.lesson), chosen, folder, hidden=True,
                                            jobs=parallel_runs())
    return _runs[variant.lesson][variant.name]


@pytest.mark.parametrize("variant", CORRECT, ids=[v.id for v in CORRECT])
def test_correct_alternative_passes_every_check(variant: Variant, request: pytest.FixtureRequest) -> None:
    assert not variant.kills, f"correct alternative {variant.name!r} names checks to fail (`kills`): it is a mutant"
    skipped: set[str] = set()
    for run in _lesson_runs(request, variant):
        assert not run.result.error, f"{run.result.error}\n{run.repeat()}"
        failing = {c.id: c.message for c in run.result.checks if c.outcome == "failed"}
        assert not failing, f"correct code {variant.name!r} fails {failing} with seed {run.seed}; {run.repeat()}"
        skipped |= {c.id for c in run.result.checks if c.outcome == "skipped"}
    if skipped:
        pytest.skip(f"not proven: service missing for {sorted(skipped)}")


def _graded_class(request: pytest.FixtureRequest, lesson_id: str) -> dict[str, SubmissionResult | str]:
    """`course grade` over one class made of the lesson's selected alternatives (or why it cannot run)."""
    if lesson_id not in _graded:
        lesson = COURSE.lesson(lesson_id)
        chosen = selected(request, lesson_id, "variant")
        root = request.getfixturevalue("tmp_path_factory").mktemp(f"class-{lesson_id}")
        names = {}
        for index, variant in enumerate(chosen):
            try:
                make_project(variant, root / f"alt{index}" / "capstone")
            except AssertionError as exc:
                names[variant.name] = str(exc)
                continue
            names[variant.name] = f"alt{index}"
        checked = sandbox_check(COURSE, [lesson])
        if checked.refusal:
            _graded[lesson_id] = {name: f"skip: no sandbox here: {checked.refusal}" for name in names}
            return _graded[lesson_id]
        previous = os.environ.get(SEED_VARIABLE)
        os.environ[SEED_VARIABLE] = SEEDS[0]  # the judges inherit it: a failure can be repeated
        try:
            results = {r.id: r for r in grade_all(COURSE, discover(root), [lesson], jobs=2, hidden=True,
                                                   checked=checked)}
        finally:
            if previous is None:
                os.environ.pop(SEED_VARIABLE)
            else:
                os.environ[SEED_VARIABLE] = previous
        _graded[lesson_id] = {name: results.get(sub, f"no grade came back for submission {sub}")
                              for name, sub in names.items()}
    return _graded[lesson_id]


@pytest.mark.parametrize("variant", CORRECT, ids=[v.id for v in CORRECT])
def test_correct_alternative_passes_when_graded(variant: Variant, request: pytest.FixtureRequest) -> None:
    graded = _graded_class(request, variant.lesson)[variant.name]
    if isinstance(graded, str):
        if graded.startswith("skip: "):
            pytest.skip(graded.removeprefix("skip: "))
        pytest.fail(graded)
    assert not graded.error, graded.error
    lesson = graded.lesson(variant.lesson)
    assert lesson is not None and not lesson.error, lesson.error if lesson else "the lesson was not graded"
    failing = {c.id: c.message for c in lesson.checks if c.outcome != "passed"}
    assert not failing, (f"correct code {variant.name!r}, graded in the sandbox with {SEED_VARIABLE}={SEEDS[0]}, "
                         f"does not pass {failing}")


@pytest.mark.parametrize("lesson", CODE_LESSONS, ids=[f"lesson{int(l.id.removeprefix('lesson-')):02d}" for l in CODE_LESSONS])
def test_every_lesson_has_correct_alternatives(lesson: Lesson) -> None:
    names = [v.name for v in CORRECT if v.lesson == lesson.id]
    assert len(names) >= AT_LEAST, (f"{lesson.id} has {len(names)} correct alternatives in tests/mutants/; "
                                    f"it needs at least {AT_LEAST}, so checks are seen to accept other styles")
    assert len(set(names)) == len(names), f"{lesson.id}: two correct alternatives share a name"
