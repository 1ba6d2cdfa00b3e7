"""The starter is generated from the solutions (DESIGN.md decision 4) and must not drift."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from checker.starter import MarkerError, expected_starter, strip_solutions, write_starter
from checker.registry import Course, load_course
from tests.conftest import COURSE
from tests.coursecopy import copy_course

GENERATOR_INPUTS = ("solutions", "checker/starter.py")  # what the starter is made from


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True).stdout


def _blob_id(data: bytes) -> str:
    """The id git gives a file with these bytes (so no checkout is needed to compare)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _committed_starters(course: Course) -> list[dict[str, str]]:
    """capstone/ as committed since the generator's inputs last changed: path -> blob id, per commit.

    A student's own lesson work lives in their working copy (and maybe in later commits of
    theirs); the starter the course shipped is in the commit that last changed `solutions/`, or in
    a later one that regenerated it. Either is what the generator must reproduce.
    """
    root = course.root
    inputs = [str(root / p) for p in GENERATOR_INPUTS]
    since = _git(root, "log", "-1", "--format=%H", "--", *inputs).strip() or "HEAD"
    starter = str(course.starter.parent)
    later = _git(root, "rev-list", f"{since}..HEAD", "--", starter).split()
    trees = []
    for commit in [since, *later]:
        tree = {}
        for line in _git(root, "ls-tree", "-r", "--full-name", commit, "--", starter).splitlines():
            meta, path = line.split("\t", 1)
            tree[path] = meta.split()[2]
        trees.append(tree)
    return trees


def committed_drift(course: Course) -> list[str]:
    """Starter files whose committed version is not what the generator makes from `solutions/`.

    The student's working copy is not the reference (their solved lessons are not drift); a file
    regenerated but not committed yet counts as in step, so a developer can test before committing.
    """
    prefix = _git(course.root, "rev-parse", "--show-prefix").strip() + course.starter.parent.name + "/"
    trees = _committed_starters(course)
    drifted = []
    for rel, data in expected_starter(course.solutions.parent, course.solutions_only).items():
        working = course.starter.parent / rel
        if any(tree.get(prefix + rel) == _blob_id(data) for tree in trees):
            continue
        if not (working.is_file() and working.read_bytes() == data):
            drifted.append(rel)
    return drifted


def _in_git(root: Path) -> bool:
    return shutil.which("git") is not None and subprocess.run(
        ["git", "-C", str(root), "rev-parse"], capture_output=True).returncode == 0


def test_committed_starter_matches_the_generator() -> None:
    if not _in_git(COURSE.root):
        pytest.skip("not a git checkout: the committed starter cannot be told apart from your own work "
                    "(CI checks it on a clone)")
    drifted = committed_drift(COURSE)
    assert not drifted, (f"{COURSE.starter.parent.name}/ in git drifted from solutions/ in {drifted}: "
                         "run `uv run course dev sync-starter` and commit the result")


def test_drift_is_judged_on_git_not_on_the_students_work(tmp_path: Path) -> None:
    """Solved lessons (committed or not) are not drift; a solutions change never regenerated is,
    until the regenerated starter is committed, and then a student who merges it is in step too."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    root = copy_course(tmp_path / "course")
    commit = ["-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam"]
    _git(root, "init", "-q", "-b", "student")
    _git(root, "add", "-A")
    _git(root, *commit, "the course as shipped")
    local = load_course(root)
    package = f"src/{local.package}"
    mine = local.starter.parent / package / "context.py"
    mine.write_text((local.solutions.parent / package / "context.py").read_text())
    assert committed_drift(local) == [], "solved in the working copy"
    _git(root, *commit, "my lesson 1")
    assert committed_drift(local) == [], "solved and committed"

    _git(root, "checkout", "-q", "-b", "course", "HEAD~1")  # the course moves on
    reference = local.solutions.parent / package / "roots.py"
    reference.write_text(reference.read_text() + "\nCHANGED = True\n")
    _git(root, *commit, "a solutions change, starter not regenerated")
    assert committed_drift(local) == [f"{package}/roots.py"]
    write_starter(local.solutions.parent, local.starter.parent, local.state_dir, exclude=local.solutions_only)
    assert committed_drift(local) == [], "regenerated, not committed yet"
    _git(root, *commit, "regenerate the starter")
    _git(root, "checkout", "-q", "student")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@example.org", "merge", "-q", "--no-edit", "course")
    assert mine.read_text() == (local.solutions.parent / package / "context.py").read_text()
    assert committed_drift(local) == [], "the student merged the course's update"


def test_blob_ids_are_gits_own(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_bytes(b"print('hi')\n")
    made = subprocess.run(["git", "hash-object", str(sample)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip("git is not installed")
    assert made.stdout.strip() == _blob_id(sample.read_bytes())


def test_solutions_only_files_never_reach_the_starter() -> None:
    assert COURSE.solutions_only, "course.toml lists the reference quiz answers as solutions-only"
    for rel in COURSE.solutions_only:
        assert (COURSE.solutions.parent / rel).exists(), f"{rel} is listed but missing from solutions/"
        assert not (COURSE.starter.parent / rel).exists(), f"{rel} leaked into the starter"


def test_region_becomes_todo_and_raise() -> None:
    source = (
        "def f(x):\n"
        "    # BEGIN SOLUTION lesson-3: double it\n"
        "    return 2 * x\n"
        "    # END SOLUTION\n"
    )
    starter = strip_solutions(source)
    assert "return 2 * x" not in starter
    assert "# TODO(lesson-3): double it" in starter
    assert 'raise NotImplementedError("TODO(lesson-3): write f")' in starter


def test_a_wrapped_description_is_one_todo_and_leaves_the_reference_clean() -> None:
    from checker.starter import reference_text

    wrapped = (
        "def f(x):\n"
        "    # BEGIN SOLUTION lesson-3: double it the long way round, so the description needs\n"
        "    #   a second line\n"
        "    total = x + x\n"
        "    return total\n"
        "    # END SOLUTION\n"
    )
    one_line = wrapped.replace("needs\n    #   a second", "needs a second")
    assert strip_solutions(wrapped) == strip_solutions(one_line), "wrapping a description changes nothing"
    assert "TODO(lesson-3): double it the long way round, so the description needs a second line" in (
        " ".join(strip_solutions(wrapped).replace("#   ", "").split()))
    assert reference_text(wrapped) == "def f(x):\n    total = x + x\n    return total\n"
    # A comment that opens the code, indented differently, stays code.
    code_comment = wrapped.replace("    total = x + x\n", "    total = x + x\n        #   why\n")
    assert "        #   why" in reference_text(code_comment)


def test_stub_lines_are_comments_in_the_solution_and_code_in_the_starter() -> None:
    source = (
        "async def g():\n"
        "    # BEGIN SOLUTION lesson-1: yield the state\n"
        "    yield 1\n"
        "    # STUB\n"
        "    # raise NotImplementedError('no')\n"
        "    # yield\n"
        "    # END SOLUTION\n"
    )
    starter = strip_solutions(source)
    assert "    raise NotImplementedError('no')\n    yield\n" in starter
    assert "yield 1" not in starter


@pytest.mark.parametrize("source", [
    "# BEGIN SOLUTION lesson-1: x\ncode\n",                  # never closed
    "code\n# END SOLUTION\n",                               # never opened
    "# BEGIN SOLUTION lesson-1: x\n# STUB\nlive code\n# END SOLUTION\n",  # stub that would run in the solution
])
def test_broken_markers_are_reported(source: str) -> None:
    with pytest.raises(MarkerError):
        strip_solutions(source, "example.py")


def test_sync_keeps_a_backup_of_what_it_replaces(tmp_path) -> None:
    solutions = tmp_path / "solutions"
    starter = tmp_path / "starter"
    (solutions / "pkg").mkdir(parents=True)
    (solutions / "pkg" / "m.py").write_text("def f():\n    # BEGIN SOLUTION lesson-1: do it\n    return 1\n    # END SOLUTION\n")
    (starter / "pkg").mkdir(parents=True)
    (starter / "pkg" / "m.py").write_text("def f():\n    return 'my own work'\n")
    changed, backup = write_starter(solutions, starter, tmp_path / ".course")
    assert changed == ["pkg/m.py"]
    assert backup is not None and (backup / "pkg" / "m.py").read_text() == "def f():\n    return 'my own work'\n"
    assert "NotImplementedError" in (starter / "pkg" / "m.py").read_text()
