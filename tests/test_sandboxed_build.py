"""Lesson 8 builds the student's project: the build backend runs the project's own code.

Graded, that code must run inside the submission's sandbox, and what the build leaves behind
(its wheel, its sdist) must be read where it was made, so a link planted in its place cannot
lead the check to a file of the grader's. Two submissions show it: one whose build hook works
only inside the sandbox, and one whose hook swaps its sdist for a link to a clean sdist that
exists only outside the sandbox (with it, the check would pass a project that ships its `.env`).
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from checker.grading.batch import grade_all, sandbox_check
from checker.grading.submissions import discover
from checker.sandbox.submission import Mode
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

LESSON = COURSE.lesson("lesson-8")
SDIST_RULES = '[tool.hatch.build.targets.sdist]\nonly-include = ["src/research_desk", "pyproject.toml", "README.md", "LICENSE"]\n'

HOOK_INSIDE = '''
import socket

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if socket.gethostname() != "sandbox":
            raise SystemExit("this build hook ran outside the submission's sandbox")
'''

HOOK_LINK = '''
import os
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        for sdist in Path(self.directory).glob("*.tar.gz"):
            sdist.unlink()
            os.symlink(CLEAN_SDIST, sdist)
'''


def _clean_sdist() -> bytes:
    """An sdist that would pass the sdist check: the package and its pyproject, nothing stray."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as archive:
        for name in ("pyproject.toml", "src/research_desk/__init__.py", "src/research_desk/__main__.py"):
            info = tarfile.TarInfo(f"research_desk-0.1.0/{name}")
            archive.addfile(info, io.BytesIO(b""))
    return data.getvalue()


def _submission(folder: Path, hook: str, *, sdist_rules: bool) -> None:
    project = folder / "capstone"
    shutil.copytree(COURSE.solutions.parent, project, ignore=shutil.ignore_patterns("__pycache__", ".venv"))
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count(SDIST_RULES) == 1, "the reference pyproject's sdist rules changed: update this test"
    rules = SDIST_RULES.replace('"LICENSE"]', '"LICENSE", "hatch_build.py"]') if sdist_rules else ""
    text = text.replace(SDIST_RULES, rules)
    pyproject.write_text(text + '\n[tool.hatch.build.targets.wheel.hooks.custom]\npath = "hatch_build.py"\n')
    (project / "hatch_build.py").write_text(hook)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, tuple[str, str]]]:
    checked = sandbox_check(COURSE, [LESSON])
    if checked.mode is not Mode.BUBBLEWRAP or checked.lacks("uv"):
        pytest.skip(f"needs bubblewrap and uv (grading here would run in mode {checked.mode})")
    root = tmp_path_factory.mktemp("class")
    outside = Path(tempfile.mkdtemp(prefix="course-grader-canary-lesson8-"))  # absent in the sandbox
    outside.chmod(0o755)  # readable by the checks' user, as a file of the grader's may be
    clean = outside / "clean.tar.gz"
    clean.write_bytes(_clean_sdist())
    clean.chmod(0o644)
    _submission(root / "hook-inside", HOOK_INSIDE, sdist_rules=True)
    _submission(root / "link-out", f"CLEAN_SDIST = {str(clean)!r}\n" + HOOK_LINK, sdist_rules=False)  # ships .env
    try:
        results = grade_all(COURSE, discover(root), [LESSON], jobs=2, hidden=False, checked=checked)
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    return {r.id: {c.id: (c.outcome, c.message) for lesson in r.lessons for c in lesson.checks} for r in results}


def test_the_build_backend_runs_inside_the_sandbox(graded: dict) -> None:
    checks = graded["hook-inside"]
    for check_id in ("builds_wheel_and_sdist", "wheel_contents", "installed_command_serves_stdio"):
        assert checks[check_id][0] == "passed", f"{check_id}: {checks[check_id]}"


def test_a_link_from_the_build_never_leads_the_check_out(graded: dict) -> None:
    outcome, message = graded["link-out"]["builds_wheel_and_sdist"]
    assert outcome == "failed", "the check read the grader's clean sdist through the student's link"
    assert "could not be read back" in message, message
