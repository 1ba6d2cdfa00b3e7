"""`course grade` on an adversarial class: every submission scores what its honest work earns.

Submissions are copies of the reference solution or the starter with one hostile change to the
lesson-1 module. The cases that could harm the machine (fork bombs, deleting files) run only when
the grader can put checks under sandbox users (root, with a readable interpreter), as in CI.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from checker.runner.catalog import read_catalog
from checker.grading.exports import write_all
from checker.grading.batch import (LAST_SANDBOX_UID, SANDBOX_UID, Submission, discover, grade_all, hidden_checks_exposed,
                             sandbox_problem)
from checker.sandbox.forking import is_zombie
from tests.conftest import COURSE

LESSON = COURSE.lesson("lesson-1")
VISIBLE = {c.id for c in read_catalog(COURSE.checks_file(LESSON))}
MODULE = f"{COURSE.package}/context.py"
SOLVED = (COURSE.solutions / MODULE).read_text()
FUTURE = "from __future__ import annotations\n"
SANDBOXED = not sandbox_problem(COURSE)


def at_import(code: str, base: str = SOLVED) -> str:
    return base.replace(FUTURE, FUTURE + code, 1)


def in_lifespan(code: str) -> str:
    return SOLVED.replace("    root = Path(root)\n", code, 1)


CANARY_DIR = Path("/tmp/course-grader-canary")

# name -> (module source, expected score on the visible lesson-1 checks, needs the sandbox).
# The hidden checks run too (so a submission has something to leak) but are not scored here.
# A hostile line inside open_desk breaks every check (each one opens the desk), so it earns 0.
CASES: dict[str, tuple[str, int, bool]] = {
    "honest": (SOLVED, 20, False),
    "starter": ((COURSE.starter / MODULE).read_text(), 0, False),
    "infinite-loop": (in_lifespan("    while True:\n        pass\n"), 0, False),
    "memory-hog": (in_lifespan("    hog = bytearray(64 * 1024 ** 3)\n"), 0, False),
    "output-flood": (in_lifespan("    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n"), 0, False),
    "os-exit": (in_lifespan("    import os\n    os._exit(0)\n"), 0, False),
    "exit-0-at-import": (at_import("import sys\nsys.exit(0)\n"), 0, False),
    "environment-tamper": (at_import(
        f"import os\nos.environ['COURSE_EDITION'] = {str(COURSE.solutions)!r}\n",
        (COURSE.starter / MODULE).read_text()), 0, False),
    "json-forgery": (at_import(
        "import json\n_real = json.dumps\n"
        "json.dumps = lambda o, *a, **k: _real({'outcome': 'passed', 'message': ''} if isinstance(o, dict) else o)\n",
        (COURSE.starter / MODULE).read_text()), 0, False),
    # The one-line cheats: rewrite pytest's verdict, the checker's, or the result channel itself.
    "pytest-report-forgery": (at_import(
        "import _pytest.reports as r\nr.BaseReport.failed = property(lambda self: False)\n",
        (COURSE.starter / MODULE).read_text()), 0, False),
    "checker-forgery": (at_import(
        "import checker.runner.worker as w\n"
        "w.ForkPerCheck._run_one = lambda self, item: {'outcome': 'passed', 'message': ''}\n",
        (COURSE.starter / MODULE).read_text()), 0, False),
    "result-channel-forgery": (at_import(
        "import os\nfor fd in range(3, 256):\n    try:\n"
        "        os.write(fd, b'outcome\\0passed\\0message\\0')\n    except OSError:\n        pass\n"
        "os._exit(0)\n", (COURSE.starter / MODULE).read_text()), 0, False),
    # An answer that equals anything: only the two checks that compare document_names lose their points.
    "always-equal": (SOLVED + "\n\nclass _Anything(list):\n    def __eq__(self, other):\n        return True\n\n"
                     "    __hash__ = None\n\n\nDeskState.document_names = lambda self: _Anything()\n", 15, False),
    "fork-bomb": (at_import("import os\nwhile True:\n    os.fork()\n"), 0, True),
    "vandal": (at_import(
        "import os, shutil\n"
        f"shutil.rmtree({str(CANARY_DIR)!r}, ignore_errors=True)\n"
        "for root, dirs, files in os.walk('/tmp'):\n"
        "    for name in files:\n"
        "        if name.endswith('.json') and 'course-grade' in root:\n"
        "            try:\n"
        "                open(os.path.join(root, name), 'w').write('{\"checks\": []}')\n"
        "            except OSError:\n"
        "                pass\n",
        (COURSE.starter / MODULE).read_text()), 0, True),
    # Reads the hidden checks (from the course, or the grader's working copy) to leak them in a message.
    "reads-hidden-checks": (at_import(
        "import glob, os, checker\n"
        "_leak = glob.glob(os.path.join(os.path.dirname(checker.__file__), 'checks', 'hidden', '*.py'))\n"
        "_leak += glob.glob('/tmp/course-grade-*/checks/*.py')\n"
        "for _path in _leak:\n    try:\n        _source = open(_path).read()\n    except OSError:\n        continue\n"
        "    raise RuntimeError(_source[:2000])\n"), 20, True),
    "outlives-its-check": (at_import(
        "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)\n"), 20, True),
}


def _make_submission(folder: Path, source: str) -> None:
    edition = folder / "capstone" / "src"
    shutil.copytree(COURSE.solutions, edition, ignore=shutil.ignore_patterns("__pycache__"))
    (edition / MODULE).write_text(source)


def _sandbox_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if SANDBOX_UID <= entry.stat().st_uid <= LAST_SANDBOX_UID and not is_zombie(entry):
                    pids.append(int(entry.name))  # a zombie has ended; only its reaping is pending
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("class")
    CANARY_DIR.mkdir(exist_ok=True)
    (CANARY_DIR / "grader-file.txt").write_text("keep me")
    for name, (source, _, needs_sandbox) in CASES.items():
        if needs_sandbox and not SANDBOXED:
            continue
        _make_submission(root / name, source)
    (root / "no-package").mkdir()
    (root / "broken.zip").write_bytes(b"this is not a zip")
    hidden = COURSE.checks_dir / "hidden"
    mode = hidden.stat().st_mode
    hidden.chmod(0o700)  # as `course grade` asks an instructor to
    started = time.monotonic()
    try:
        results = grade_all(COURSE, discover(root), [LESSON], jobs=2, hidden=True, sandbox=SANDBOXED, check_timeout=4)
    finally:
        hidden.chmod(mode)
    elapsed = time.monotonic() - started
    out = tmp_path_factory.mktemp("grades")
    write_all(results, out)
    return {"results": {r.id: r for r in results}, "elapsed": elapsed, "out": out}


@pytest.mark.parametrize("case", list(CASES))
def test_each_submission_scores_its_honest_work(graded: dict, case: str) -> None:
    source, expected, needs_sandbox = CASES[case]
    if needs_sandbox and not SANDBOXED:
        pytest.skip(f"needs sandbox users: {sandbox_problem(COURSE)}")
    result = graded["results"][case]
    assert not result.error, result.error
    lesson = result.lessons[0]
    assert not lesson.error, lesson.error
    visible = [c for c in lesson.checks if c.id in VISIBLE]
    earned = sum(c.points for c in visible if c.outcome == "passed")
    assert earned == expected, f"{case}: scored {earned}, expected {expected}: " + "; ".join(
        f"{c.id}={c.outcome} {c.message[:200]}" for c in visible)
    assert not any("instructor-only" in c.message for c in lesson.checks), f"{case}: a message leaks the hidden checks"


def test_unreadable_submissions_are_reported_not_fatal(graded: dict) -> None:
    results = graded["results"]
    assert "no capstone/src/research_desk" in results["no-package"].error
    assert "not a readable zip" in results["broken.zip".removesuffix(".zip")].error


def test_the_batch_finishes_within_its_bound(graded: dict) -> None:
    assert graded["elapsed"] < 240, f"grading the adversarial class took {graded['elapsed']:.0f} s"


@pytest.mark.skipif(not SANDBOXED, reason="needs sandbox users (root with a readable interpreter)")
def test_no_sandboxed_process_outlives_grading(graded: dict) -> None:
    assert not _sandbox_processes(), "a process started by student code is still running after grading"


@pytest.mark.skipif(not SANDBOXED, reason="needs sandbox users (root with a readable interpreter)")
def test_student_code_cannot_touch_the_graders_files(graded: dict) -> None:
    assert (CANARY_DIR / "grader-file.txt").read_text() == "keep me"


def test_gradebook_exports_are_well_formed(graded: dict) -> None:
    out: Path = graded["out"]
    rows = list(csv.DictReader((out / "gradebook.csv").open(encoding="utf-8")))
    by_student = {row["student"]: row for row in rows}
    full = graded["results"]["honest"].available
    assert float(by_student["honest"]["total"]) == full > 20 and by_student["starter"]["total"] == "0"
    assert by_student["no-package"]["error"]
    suites = ET.parse(out / "junit.xml").getroot()
    assert suites.tag == "testsuites" and len(suites) >= len(rows)
    for path in (out / "gradescope").glob("*.json"):
        data = json.loads(path.read_text())
        assert set(data) >= {"score", "tests"} and isinstance(data["score"], float)
        for test in data["tests"]:
            assert set(test) <= {"name", "number", "score", "max_score", "status", "output", "visibility", "tags"}
            assert test["status"] in {"passed", "failed"} and test["score"] <= test["max_score"]
    assert (out / "histogram.svg").read_text().startswith("<svg") and "pass rate" in (out / "report.html").read_text()
    assert (out / "feedback" / "starter.md").read_text().count("hint:") >= 6


def test_grade_command_exit_codes(tmp_path: Path) -> None:
    _make_submission(tmp_path / "subs" / "ok", SOLVED)
    env = dict(os.environ, COURSE_ROOT=str(COURSE.root))
    cmd = [sys.executable, "-m", "checker.cli.app", "grade", str(tmp_path / "subs"), "--lessons", "1", "--out", str(tmp_path / "g")]
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    (tmp_path / "subs" / "empty").mkdir()
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 1
    assert subprocess.run([*cmd[:4], str(tmp_path / "nowhere")], env=env, capture_output=True).returncode == 2


@pytest.mark.skipif(not SANDBOXED, reason="needs sandbox users (root with a readable interpreter)")
def test_grading_warns_when_anyone_can_read_the_hidden_checks() -> None:
    hidden = COURSE.checks_dir / "hidden"
    mode = hidden.stat().st_mode
    try:
        hidden.chmod(0o755)
        assert "chmod o-rwx" in hidden_checks_exposed(COURSE)
        hidden.chmod(0o700)
        assert hidden_checks_exposed(COURSE) == ""
    finally:
        hidden.chmod(mode)
