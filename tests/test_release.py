"""`course release`: the student edition works as a student uses it and leaks nothing.

Leaks searched for: any line of reference code from a solution region, the hidden checks, the
plain quiz key, and the solutions folder itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from checker.release import build_release
from checker.starter import BEGIN, END, STUB
from tests.conftest import COURSE


RUN = 3  # this many consecutive lines of a solution region, found together, are a leak


def _code_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def solution_runs() -> set[tuple[str, ...]]:
    """Every run of RUN consecutive code lines inside a BEGIN/END SOLUTION region.

    Single lines are idioms a notebook may teach on a toy example; a run is the answer itself.
    """
    def windows(lines: list[str]) -> set[tuple[str, ...]]:
        code = _code_lines("\n".join(lines))
        return {tuple(code[i:i + RUN]) for i in range(len(code) - RUN + 1)}

    runs: set[tuple[str, ...]] = set()
    given: set[tuple[str, ...]] = set()  # runs that also appear in given code are public anyway
    for path in COURSE.solutions.parent.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        region: list[str] | None = None
        outside: list[str] = []
        for line in path.read_text(errors="replace").splitlines():
            if BEGIN.match(line):
                region = []
            elif (END.match(line) or STUB.match(line)) and region is not None:
                runs |= windows(region)
                region = None
            elif region is not None:
                region.append(line)
            elif not END.match(line):
                outside.append(line)
        given |= windows(outside)
    return runs - given


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("release") / "student-edition"
    build_release(COURSE, out)
    return out


def test_release_leaves_instructor_material_behind(release: Path) -> None:
    assert not (release / "solutions").exists()
    assert not (release / "tests").exists()
    assert not list(release.rglob("*_hidden.py")), "hidden checks leaked into the release"
    assert not (release / "quiz" / "key.toml").exists(), "the plain quiz key leaked into the release"
    assert (release / ".github" / "workflows" / "classroom.yml").is_file()


def test_release_readme_speaks_to_students(release: Path) -> None:
    readme = (release / "README.md").read_text()
    assert "uv run course check lesson-1" in readme and "## Student guide" in readme
    assert "uv run pytest" not in readme, "the release has no test suite to run"
    assert "## Instructor guide" not in readme and "course grade" not in readme


def test_release_contains_no_reference_code(release: Path) -> None:
    secrets = solution_runs()
    assert secrets, "expected solution regions to search for"
    leaks = []
    for path in release.rglob("*"):
        if path.is_file() and path.suffix in {".py", ".ipynb", ".toml", ".md", ".conf", ".txt", ".yml"}:
            text = path.read_text(errors="replace")
            if path.suffix == ".ipynb":
                import nbformat

                text = "\n".join(cell.source for cell in nbformat.reads(text, as_version=4).cells)
            code = _code_lines(text)
            found = {tuple(code[i:i + RUN]) for i in range(len(code) - RUN + 1)} & secrets
            leaks += [f"{path.relative_to(release)}: {' / '.join(run)}" for run in found]
    assert not leaks, f"reference code found in the release: {leaks[:3]}"


def test_release_notebooks_are_clean(release: Path) -> None:
    import nbformat

    for path in (release / "lessons").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def _course(release: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COURSE_ROOT=str(release), PYTHONPATH=str(release))
    return subprocess.run([sys.executable, "-m", "checker.cli.app", *args], cwd=release, env=env,
                          capture_output=True, text=True, timeout=300)


def test_release_runs_the_student_flow(release: Path) -> None:
    assert _course(release, "list").returncode == 0
    checked = _course(release, "check", "lesson-1")
    assert checked.returncode == 1 and "0 passed" in checked.stdout, checked.stdout[-1500:] + checked.stderr[-1500:]
    against = _course(release, "check", "lesson-1", "--against", "solutions")
    assert against.returncode == 2 and "no research_desk package" in against.stderr


def test_release_installs_no_development_tools(release: Path) -> None:
    """The dev group serves the course's own tests, which stay behind: `uv run` in the release must
    not install it, and the release's lock must still be current (`--locked`)."""
    plan = subprocess.run(["uv", "sync", "--locked", "--dry-run", "--offline"], cwd=release, capture_output=True,
                          text=True, timeout=300, env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"})
    assert plan.returncode == 0, plan.stderr[-2000:]
    planned = {line.split()[1].split("==")[0] for line in plan.stderr.splitlines() if line.startswith(" + ")}
    assert {"mcp", "pytest", "jupyterlab"} <= planned, sorted(planned)
    assert not planned & {"ruff", "mypy", "check-jsonschema", "lxml", "nbval"}, sorted(planned)


def test_release_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("mine")
    from checker.registry import CourseError

    with pytest.raises(CourseError):
        build_release(COURSE, tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "mine"
