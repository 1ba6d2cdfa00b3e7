"""The GitHub Classroom workflow a release ships: valid for GitHub, in the form Classroom's reporter reads,
and scoring a student lesson by lesson when each of its steps is run here as the runner would run it.

The graded steps are run the way education/autograding-command-grader@v1 runs them (its command
through a shell, with only PATH, HOME and a few fixed variables; a zero exit code earns max-score),
and the points are added up the way education/autograding-grading-reporter@v1 does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from checker.classroom import GRADER, REPORTER, lesson_points
from checker.release import build_release
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

AVAILABLE = [lesson for lesson in COURSE.lessons if lesson.available]
# The inputs each action declares in its action.yml (v1).
INPUTS = {GRADER: {"test-name", "setup-command", "command", "timeout", "max-score"}, REPORTER: {"runners", "token"}}


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("classroom") / "student"
    build_release(COURSE, out)
    return out


def _workflow(release: Path) -> dict:
    return yaml.safe_load((release / ".github" / "workflows" / "classroom.yml").read_text())


def test_workflow_is_valid_and_in_the_form_classroom_reads(release: Path) -> None:
    path = release / ".github" / "workflows" / "classroom.yml"
    schema = subprocess.run([str(Path(sys.executable).with_name("check-jsonschema")), "--builtin-schema",
                             "vendor.github-workflows", str(path)], capture_output=True, text=True)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    workflow = _workflow(release)
    assert set(workflow[True]) >= {"push", "workflow_dispatch", "repository_dispatch"}  # YAML reads `on` as true
    assert workflow["permissions"] == {"checks": "write", "actions": "read", "contents": "read"}
    job = workflow["jobs"]["run-autograding-tests"]  # the check run the reporter writes "Points X/Y" onto
    steps = job["steps"]
    for step in (s for s in steps if "uses" in s):
        assert step["uses"].rsplit("@", 1)[1].startswith("v"), f"{step['uses']}: pin a major version"
        if step["uses"] in INPUTS:
            assert set(step["with"]) <= INPUTS[step["uses"]], f"{step['uses']} has no input {set(step['with'])}"
    setup_uv = next(s for s in steps if s.get("uses", "").startswith("astral-sh/setup-uv@"))
    assert setup_uv["with"]["enable-cache"] is True, "uv's downloads are cached between runs"
    needs = {need for lesson in AVAILABLE for need in lesson.needs} - {"uv"}
    assert all(any(need in s.get("run", "") for s in steps) for need in needs), "services the checks start"
    graders = [s for s in steps if s.get("uses") == GRADER]
    assert [s["with"]["command"].split()[2] for s in graders] == [lesson.id for lesson in AVAILABLE], \
        "one graded test per available lesson"
    for step, lesson in zip(graders, AVAILABLE):
        assert step["id"].isalnum() and step["with"]["max-score"] == lesson_points(COURSE, lesson) > 0
    (reporter,) = [s for s in steps if s.get("uses") == REPORTER]
    ids = [s["id"] for s in graders]
    assert reporter["with"]["runners"].split(",") == ids
    assert reporter["env"] == {f"{i.upper()}_RESULTS": f"${{{{ steps.{i}.outputs.result }}}}" for i in ids}
    assert reporter.get("continue-on-error") is True, "partial credit is a green run with its points, not a red one"


def _grader(command: str, cwd: Path, minutes: float) -> int:
    """Exit code of `command` run as autograding-command-grader runs it."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "FORCE_COLOR": "true",
           "DOTNET_CLI_HOME": "/tmp", "DOTNET_NOLOGO": "true"}
    return subprocess.run(command, shell=True, cwd=cwd, env=env, timeout=minutes * 60,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode


def test_every_step_runs_here_and_scores_the_lessons_done(release: Path) -> None:
    done = ["lesson-1", "lesson-4"]  # the student has finished these two: the reference code in their modules
    for lesson_id in done:
        for module in COURSE.lesson(lesson_id).modules:
            rel = Path(COURSE.package) / f"{module}.py"
            shutil.copyfile(COURSE.solutions / rel, release / COURSE.starter.relative_to(COURSE.root) / rel)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "COURSE_ROOT", "PYTHONPATH")}
    shim = 'sudo() { "$@"; }\n' if os.geteuid() == 0 else ""  # the runner's passwordless sudo, when we are root
    results = []
    for step in _workflow(release)["jobs"]["run-autograding-tests"]["steps"]:
        if "run" in step:
            if "sudo" in step["run"] and os.geteuid() != 0:
                pytest.skip("the package step needs root here")
            ran = subprocess.run(["bash", "-euo", "pipefail", "-c", shim + step["run"]], cwd=release, env=env,
                                 capture_output=True, text=True, timeout=900)
            assert ran.returncode == 0, f"{step['name']}: {ran.stderr[-2000:]}"
        elif step.get("uses") == GRADER:
            code = _grader(step["with"]["command"], release, step["with"]["timeout"])
            results.append((step["id"], step["with"]["max-score"], step["with"]["max-score"] if code == 0 else 0))
    earned = {lesson_id.replace("-", ""): score for lesson_id, _, score in results}
    total, maximum = sum(score for _, _, score in results), sum(points for _, points, _ in results)
    expected = sum(lesson_points(COURSE, COURSE.lesson(lesson_id)) for lesson_id in done)
    assert total == expected, f"Points {total}/{maximum}: expected {expected} for {done}; per test {earned}"
    assert maximum == sum(lesson_points(COURSE, lesson) for lesson in AVAILABLE)
