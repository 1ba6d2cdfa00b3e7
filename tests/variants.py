"""Variants of the reference solution, and seeded runs of a lesson's checks against them.

`tests/mutants/lessonNN.toml` holds two kinds of variant, each one edit of the solutions:

- `[[mutant]]` (a module of the package) and `[[project_mutant]]` (any file of the server's
  project): a mistake a student would plausibly make; `kills` names the VISIBLE checks that
  must fail on it, on every run (`tests/test_mutants.py`);
- `[[correct]]` and `[[project_correct]]`: a correct alternative a good student would write
  (another style, library or structure); it must pass every visible and hidden check
  (`tests/test_correct_alternatives.py`).

Each has `name`, `module` (or `file`, relative to the project), `replace` (text that occurs
exactly once) and `with`.

Every run gets a seed (`COURSE_CHECK_SEED`, see `checker.runner.worker.seed_randomness`), so a
run that lets a mistake through or fails correct code can be repeated exactly. The seeds are
fresh for every test session, so over many runs the suite explores what one fixed set would
never see; `COURSE_TEST_SEEDS=11,12,13` pins them to repeat a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from checker.registry import CourseError, Lesson
from checker.runner.lesson import build_request
from checker.runner.prestart import worker_env
from checker.runner.results import LessonResult
from tests.conftest import COURSE

MUTANTS_DIR = Path(__file__).parent / "mutants"
DRIVER = Path(__file__).parent / "seeded_runs.py"
RUNS_PER_MUTANT = 5
SEED_VARIABLE = "COURSE_CHECK_SEED"  # what checker.runner.worker seeds each check from (not imported: it warms the SDK)


def _session_seeds() -> list[str]:
    pinned = [s.strip() for s in os.environ.get("COURSE_TEST_SEEDS", "").split(",") if s.strip()]
    if pinned:
        return pinned
    return [str(secrets.randbelow(10**9)) for _ in range(RUNS_PER_MUTANT)]


SEEDS = _session_seeds()


@dataclass(frozen=True)
class Variant:
    lesson: str     # "lesson-3"
    kind: str       # "mutant" or "correct"
    name: str
    file: str       # relative to the project folder (solutions/)
    replace: str
    with_: str
    kills: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.lesson_file}:{self.name}"

    @property
    def lesson_file(self) -> str:
        return f"lesson{int(self.lesson.removeprefix('lesson-')):02d}"


def load_variants(kind: str) -> list[Variant]:
    """Every variant of `kind` ("mutant" or "correct") of the available lessons."""
    found = []
    for path in sorted(MUTANTS_DIR.glob("lesson*.toml")):
        lesson_id = f"lesson-{int(path.stem.removeprefix('lesson'))}"
        if not COURSE.lesson(lesson_id).available:
            continue
        data = tomllib.loads(path.read_text())
        entries = [(e, f"src/{COURSE.package}/{e['module']}.py") for e in data.get(kind, [])]
        entries += [(e, e["file"]) for e in data.get(f"project_{kind}", [])]
        for entry, file in entries:
            found.append(Variant(lesson_id, kind, entry["name"], file, entry["replace"], entry["with"],
                                 tuple(entry.get("kills", ()))))
    return found


def make_project(variant: Variant, dest: Path) -> Path:
    """A copy of the solutions' project with `variant` applied; returns the copy's src/ folder."""
    shutil.copytree(COURSE.solutions.parent, dest, ignore=shutil.ignore_patterns("__pycache__"))
    target = dest / variant.file
    target.write_text(applied(variant, target.read_text()))
    return dest / COURSE.solutions.relative_to(COURSE.solutions.parent)


def applied(variant: Variant, source: str) -> str:
    """`source` with the variant's edit made; its `replace` text must occur exactly once."""
    count = source.count(variant.replace)
    assert count == 1, (f"{variant.kind} {variant.name!r}: its `replace` text occurs {count} times in "
                        f"{variant.file}; it must occur exactly once (update it to the solution as it is now)")
    return source.replace(variant.replace, variant.with_)


@dataclass
class Run:
    """One seeded run of a lesson's checks against one variant."""

    seed: str
    edition: Path  # the variant's src/ folder, kept so a failure can be repeated on it
    result: LessonResult

    def repeat(self) -> str:
        if not self.seed:  # never ran (the edit could not be applied)
            return ""
        number = int(self.result.lesson.removeprefix("lesson-"))
        return f"repeat it with: COURSE_CHECK_SEED={self.seed} uv run course check {number} --against {self.edition}"


def seeded_runs(lesson: Lesson, variants: list[Variant], folder: Path, *, hidden: bool,
                jobs: int) -> dict[str, list[Run]]:
    """Every variant checked once per seed, all in one warm process; runs by variant name.

    A mutant runs only the checks it names (they must catch it); a correct variant runs them all.
    """
    runs, outs = [], []
    results: dict[str, list[Run]] = {}
    for index, variant in enumerate(variants):
        try:
            edition = make_project(variant, folder / f"v{index}")
            requests = [(seed, build_request(COURSE, lesson, edition, f"{variant.kind} {variant.name!r}",
                                             folder / f"v{index}-{seed}.json", jobs=2,
                                             select=list(variant.kills) or None, hidden=hidden))
                        for seed in SEEDS]
        except (AssertionError, CourseError) as exc:  # this variant's own test reports it; the others still run
            results[variant.name] = [Run("", folder, LessonResult(lesson.id, lesson.title, variant.name, error=str(exc)))]
            continue
        for seed, request in requests:
            runs.append({"request": asdict(request), "seed": seed})
            outs.append((variant.name, seed, edition, Path(request.out)))
    if not runs:
        return results
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"runs": runs, "jobs": jobs}))
    limit = COURSE.lesson_timeout * len(runs) / jobs + 120
    proc = subprocess.run([sys.executable, "-P", str(DRIVER), str(plan)], cwd=folder, env=worker_env(),
                          capture_output=True, text=True, timeout=limit)
    for name, seed, edition, out in outs:
        if out.is_file():
            result = LessonResult.from_json(json.loads(out.read_text()))
        else:
            result = LessonResult(lesson.id, lesson.title, name,
                                  error=f"no result (driver exit {proc.returncode}): {proc.stderr[-2000:]}")
        results.setdefault(name, []).append(Run(seed, edition, result))
    return results


def parallel_runs() -> int:
    """Runs at once: each mostly waits (servers starting, clients connecting), so twice the cores.

    Measured on 2 cores: lesson 1's mutants (90 runs) took 56 s two at a time, 39 s four at a
    time, for the same CPU time.
    """
    return max(4, min(8, 2 * (os.cpu_count() or 1)))


def selected(request: pytest.FixtureRequest, lesson: str, argname: str) -> list[Variant]:
    """The variants of `lesson` this session will test (after -k), so one driver runs them all."""
    chosen = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.originalname == request.node.originalname and callspec is not None:
            variant = callspec.params.get(argname)
            if isinstance(variant, Variant) and variant.lesson == lesson:
                chosen.append(variant)
    return chosen
