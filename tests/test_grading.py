"""`course grade` on an adversarial class: every submission scores what its honest work earns.

Submissions are copies of the reference solution or the starter with one hostile change to the
lesson-1 module. The class is graded twice, as an instructor would on two kinds of machine: in
bubblewrap sandboxes, and in the fallback that runs each submission as its own user with no
namespaces (as in an unprivileged container). Each attack must earn exactly what the honest work
in it earns, hurt no classmate, and leave the batch running. Cases that could harm the machine
(fork bombs, deleting files) run only sandboxed.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from checker.grading import batch
from checker.grading.batch import grade_all, sandbox_check
from checker.grading.exports import write_all
from checker.grading.submissions import Submission, discover
from checker.runner.catalog import lesson_catalog, lesson_points, read_catalog
from checker.sandbox.limits import is_zombie
from checker.sandbox.submission import Mode
from tests.conftest import COURSE, pristine_starter

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

LESSON = COURSE.lesson("lesson-1")
QUIZ = COURSE.lesson("lesson-10")
VISIBLE = {c.id for c in lesson_catalog(COURSE, LESSON)}
FULL = lesson_points(COURSE, LESSON)  # every visible check of lesson 1 (the hidden ones come on top)
POINTS = {c.id: c.points for c in lesson_catalog(COURSE, LESSON)}
HIDDEN_TITLES = [c.title for path in COURSE.hidden_checks_files(LESSON) for c in read_catalog(path)]
MODULE = f"{COURSE.package}/context.py"
SOLVED = (COURSE.solutions / MODULE).read_text()
STARTER = (pristine_starter() / MODULE).read_text()
FUTURE = "from __future__ import annotations\n"
ROOT = os.geteuid() == 0


def at_import(code: str, base: str = SOLVED) -> str:
    return base.replace(FUTURE, FUTURE + code, 1)


def in_lifespan(code: str) -> str:
    return SOLVED.replace("    root = Path(root)\n", code, 1)


CANARY_DIR = Path("/tmp/course-grader-canary")

# Looks where a finished lesson-1 module would be (the course checkout it is graded from, with its
# solutions/, and the temp folder where classmates' copies are unpacked) and runs one in place of
# its own stubs: full marks if anything is readable.
BORROW = r'''
import os as _os, time as _time
import checker as _checker
_deadline = _time.monotonic() + 4
_course = _os.path.dirname(_os.path.dirname(_os.path.abspath(_checker.__file__)))
def _finished(path):
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError):
        return None
    stubs = [line for line in text.splitlines() if line.strip().startswith("raise NotImplementedError")]
    return text if "lifespan_context.document_names()" in text and not stubs else None
for _top, _dirs, _files in (step for start in (_course, "/tmp") for step in _os.walk(start)):
    _dirs[:] = [d for d in _dirs if d not in (".venv", ".git")]
    if _time.monotonic() > _deadline:
        break
    if "context.py" in _files and _top.endswith("research_desk") and _top != _os.path.dirname(__file__):
        _code = _finished(_os.path.join(_top, "context.py"))
        if _code:
            exec(compile(_code, __file__, "exec"), globals())
            break
'''

# Plants a broken research_desk package in every folder it may write to, for whoever comes next.
PLANT = r'''
import os as _os, time as _time
_deadline = _time.monotonic() + 3
for _top, _dirs, _files in _os.walk("/"):
    _dirs[:] = [d for d in _dirs if _top != "/" or d not in ("proc", "sys", "dev")]
    if _time.monotonic() > _deadline:
        break
    if _os.access(_top, _os.W_OK) and "research_desk" not in _top:
        try:
            _os.makedirs(_os.path.join(_top, "research_desk"), exist_ok=True)
            for _name in ("__init__.py", "context.py"):
                with open(_os.path.join(_top, "research_desk", _name), "w") as _f:
                    _f.write("raise ImportError('planted by another submission')\n")
        except OSError:
            pass
'''

# Trickles a byte at a time into every Unix socket it can find (a shared launcher, say), for 8 s.
TRICKLE = r'''
import os as _os, socket as _socket, stat as _stat, threading as _threading, time as _time
def _trickle():
    found = []
    for _top, _dirs, _files in _os.walk("/tmp"):
        for _name in _files:
            try:
                if _stat.S_ISSOCK(_os.stat(_os.path.join(_top, _name)).st_mode):
                    found.append(_os.path.join(_top, _name))
            except OSError:
                pass
    held = []
    for path in found[:20]:
        try:
            sock = _socket.socket(_socket.AF_UNIX)
            sock.connect(path)
            held.append(sock)
        except OSError:
            pass
    end = _time.monotonic() + 8
    while _time.monotonic() < end:
        for sock in held:
            try:
                sock.send(b"\0")
            except OSError:
                pass
        _time.sleep(0.5)
_threading.Thread(target=_trickle, daemon=True).start()
'''

# Reads whatever of the hidden checks this process holds and puts it in a message.
HIDDEN_FROM_MEMORY = r'''
import gc as _gc, sys as _sys
_leak = [name for name in list(_sys.modules) if "hidden" in name or name.startswith("_course_checks")]
for _obj in _gc.get_objects():
    _code = getattr(_obj, "__code__", None)
    if _code is not None and "hidden" in _code.co_filename:
        _leak.append(_code.co_filename + ":" + repr(_code.co_consts)[:300])
if _leak:
    raise RuntimeError("leaked: " + " | ".join(_leak)[:3000])
'''

# How long the daemonising cases sleep: a number no other process on the machine sleeps for.
SLEEP = f"600.{os.getpid()}"
DAEMON = f"""
import os as _os, time as _time
if _os.fork() == 0:
    _os.setsid()
    if _os.fork() == 0:
        _os.execvp("sleep", ["sleep", "{SLEEP}"])
    _os._exit(0)
_os.wait()
"""
# This run's own range of sandbox users, so graders running beside it (other checkouts) do not count.
UID_BASE = 61000 + 64 * (os.getpid() % 60)

# name -> (module source, expected score on the visible lesson-1 checks, run only sandboxed).
# The hidden checks run too (so a submission has something to leak) but are not scored here.
# A hostile line inside open_desk breaks every check (each one opens the desk), so it earns 0.
CASES: dict[str, tuple[str, int, bool]] = {
    "honest": (SOLVED, FULL, False),
    "starter": (STARTER, 0, False),
    "infinite-loop": (in_lifespan("    while True:\n        pass\n"), 0, False),
    "memory-hog": (in_lifespan("    hog = bytearray(64 * 1024 ** 3)\n"), 0, False),
    "output-flood": (in_lifespan("    import sys\n    while True:\n        sys.stdout.write('x' * 65536)\n"), 0, False),
    "os-exit": (in_lifespan("    import os\n    os._exit(0)\n"), 0, False),
    "exit-0-at-import": (at_import("import sys\nsys.exit(0)\n"), 0, False),
    "environment-tamper": (at_import(f"import os\nos.environ['COURSE_EDITION'] = {str(COURSE.solutions)!r}\n",
                                     STARTER), 0, False),
    "json-forgery": (at_import(
        "import json\n_real = json.dumps\n"
        "json.dumps = lambda o, *a, **k: _real({'outcome': 'passed', 'message': ''} if isinstance(o, dict) else o)\n",
        STARTER), 0, False),
    # The one-line cheats: rewrite pytest's verdict, the checker's, or the result channel itself.
    "pytest-report-forgery": (at_import(
        "import _pytest.reports as r\nr.BaseReport.failed = property(lambda self: False)\n", STARTER), 0, False),
    "checker-forgery": (at_import(
        "import checker.runner.worker as w\n"
        "w.ForkPerCheck._run_one = lambda self, item: {'outcome': 'passed', 'message': ''}\n", STARTER), 0, False),
    "result-channel-forgery": (at_import(
        "import os\nfor fd in range(3, 256):\n    try:\n"
        "        os.write(fd, b'outcome\\0passed\\0message\\0')\n    except OSError:\n        pass\n"
        "os._exit(0)\n", STARTER), 0, False),
    # An answer that equals anything: only the two checks that compare document_names lose their points.
    "always-equal": (SOLVED + "\n\nclass _Anything(list):\n    def __eq__(self, other):\n        return True\n\n"
                     "    __hash__ = None\n\n\nDeskState.document_names = lambda self: _Anything()\n",
                     FULL - POINTS["index_matches_workspace"] - POINTS["tools_read_lifespan_state"], False),
    # What the sandbox is for: a classmate's copy and the instructor's solutions are out of sight...
    "borrows-finished-code": (STARTER + BORROW, 0, True),
    # ...nothing planted reaches another student, and a stalled socket stalls only its own caller.
    "plants-a-package": (at_import(PLANT, STARTER), 0, True),
    "trickles-into-sockets": (at_import(TRICKLE), FULL, True),
    "reads-hidden-checks-from-memory": (at_import(HIDDEN_FROM_MEMORY), FULL, False),
    "reads-hidden-checks": (at_import(
        "import glob, os, checker\n"
        "_leak = glob.glob(os.path.join(os.path.dirname(checker.__file__), 'checks', 'hidden', '*.py'))\n"
        "_leak += glob.glob('/tmp/course-grade-*/checks/*.py')\n"
        "for _path in _leak:\n    try:\n        _source = open(_path).read()\n    except OSError:\n        continue\n"
        "    raise RuntimeError(_source[:2000])\n"), FULL, True),
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
        "                pass\n", STARTER), 0, True),
    "outlives-its-check": (at_import(
        f"import subprocess\nsubprocess.Popen(['sleep', '{SLEEP}'], start_new_session=True)\n"), FULL, True),
    "daemonizes": (at_import(DAEMON), FULL, True),
}


def test_a_submission_reaches_no_network_but_its_own(tmp_path: Path) -> None:
    """Sandboxed with bubblewrap, the grading machine's own loopback services are out of reach."""
    checked = sandbox_check(COURSE, [LESSON])
    if checked.mode is not Mode.BUBBLEWRAP:
        pytest.skip("a private network comes with bubblewrap's namespaces")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        probe = (f"import socket as _s\ntry:\n    _s.create_connection(('127.0.0.1', {port}), timeout=2).close()\n"
                 f"except OSError:\n    pass\nelse:\n    raise RuntimeError('reached the grading machine on port {port}')\n")
        _make_submission(tmp_path / "subs" / "prober", at_import(probe))
        (result,) = grade_all(COURSE, discover(tmp_path / "subs"), [LESSON], jobs=1, hidden=False, checked=checked)
    messages = [c.message for c in result.lessons[0].checks]
    assert not any("reached the grading machine" in m for m in messages), messages[0]
    assert sum(c.points for c in result.lessons[0].checks if c.passed) == FULL


def _make_submission(folder: Path, source: str, answers: str | None = None) -> None:
    edition = folder / "capstone" / "src"
    shutil.copytree(COURSE.solutions, edition, ignore=shutil.ignore_patterns("__pycache__"))
    (edition / MODULE).write_text(source)
    if answers is not None:
        (folder / "quiz").mkdir()
        (folder / "quiz" / "answers.toml").write_text(answers)


def _sandbox_processes() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if UID_BASE <= entry.stat().st_uid < UID_BASE + 64 and not is_zombie(entry):
                    pids.append(int(entry.name))  # a zombie has ended; only its reaping is pending
            except OSError:
                pass
    return pids


def _sleepers() -> list[int]:
    """This run's sleepers: what the daemonising cases leave behind if anything escaped."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == f"sleep\x00{SLEEP}\x00".encode() and not is_zombie(entry):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


MODES = {"bubblewrap": {}, "users": {"without_bubblewrap": True}}


@pytest.fixture(scope="module", params=list(MODES))
def graded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    checked = sandbox_check(COURSE, [LESSON], **MODES[request.param])
    if checked.refusal or checked.mode is None or checked.mode.value != request.param:
        pytest.skip(f"{request.param} cannot run here: {checked.refusal or [f.detail for f in checked.findings]}")
    root = tmp_path_factory.mktemp("class")
    CANARY_DIR.mkdir(exist_ok=True)
    (CANARY_DIR / "grader-file.txt").write_text("keep me")
    for name, (source, _, _) in CASES.items():
        _make_submission(root / name, source)
    (root / "no-package").mkdir()
    (root / "broken.zip").write_bytes(b"this is not a zip")
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch, "SANDBOX_UID", UID_BASE)
        results = grade_all(COURSE, discover(root), [LESSON], jobs=2, hidden=True, check_timeout=4, checked=checked)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # a process killed at the very end is reaped a moment later
    out = tmp_path_factory.mktemp("grades")
    write_all(results, out, sandbox={"mode": checked.mode.value})
    return {"results": {r.id: r for r in results}, "elapsed": elapsed, "out": out, "mode": request.param,
            "leftovers": _sandbox_processes(), "sleepers": _sleepers()}


@pytest.mark.parametrize("case", list(CASES))
def test_each_submission_scores_its_honest_work(graded: dict, case: str) -> None:
    source, expected, _ = CASES[case]
    result = graded["results"][case]
    assert not result.error, result.error
    lesson = result.lessons[0]
    assert not lesson.error, lesson.error
    visible = [c for c in lesson.checks if c.id in VISIBLE]
    earned = sum(c.points for c in visible if c.outcome == "passed")
    assert earned == expected, f"{graded['mode']}, {case}: scored {earned}, expected {expected}: " + "; ".join(
        f"{c.id}={c.outcome} {c.message[:200]}" for c in visible)
    messages = " ".join(c.message for c in lesson.checks)
    leaked = [title for title in HIDDEN_TITLES if title in messages]
    assert not leaked and "instructor-only" not in messages, f"{case}: a message leaks the hidden checks: {leaked}"


def test_unreadable_submissions_are_reported_not_fatal(graded: dict) -> None:
    results = graded["results"]
    assert "no capstone/src/research_desk" in results["no-package"].error
    assert "not a readable zip" in results["broken.zip".removesuffix(".zip")].error


def test_the_batch_finishes_within_its_bound(graded: dict) -> None:
    assert graded["elapsed"] < 240, f"grading the adversarial class took {graded['elapsed']:.0f} s"


def test_no_process_of_student_code_outlives_grading(graded: dict) -> None:
    assert not graded["leftovers"], f"processes of sandbox users still run after grading: {graded['leftovers']}"
    assert not graded["sleepers"], f"a daemonised process of a submission still runs: {graded['sleepers']}"


def test_student_code_cannot_touch_the_graders_files(graded: dict) -> None:
    assert (CANARY_DIR / "grader-file.txt").read_text() == "keep me"


def test_gradebook_exports_are_well_formed(graded: dict) -> None:
    out: Path = graded["out"]
    rows = list(csv.DictReader((out / "gradebook.csv").open(encoding="utf-8")))
    by_student = {row["student"]: row for row in rows}
    full = graded["results"]["honest"].available
    assert float(by_student["honest"]["total"]) == full > FULL and by_student["starter"]["total"] == "0"
    assert by_student["no-package"]["error"]
    suites = ET.parse(out / "junit.xml").getroot()
    assert suites.tag == "testsuites" and len(suites) >= len(rows)
    for path in (out / "gradescope").glob("*.json"):
        data = json.loads(path.read_text())
        assert set(data) >= {"score", "tests"} and isinstance(data["score"], float)
        for test in data["tests"]:
            assert set(test) <= {"name", "number", "score", "max_score", "status", "output", "visibility", "tags"}
            assert test["status"] in {"passed", "failed"} and test["score"] <= test["max_score"]
            assert test.get("number"), f"every Gradescope test is numbered (sortable, linkable): {test['name']}"
    assert (out / "histogram.svg").read_text().startswith("<svg") and "pass rate" in (out / "report.html").read_text()
    assert (out / "feedback" / "starter.md").read_text().count("hint:") >= 6
    assert json.loads((out / "results.json").read_text())["sandbox"]["mode"] == graded["mode"]


def test_the_attacks_are_real_without_a_sandbox(tmp_path: Path) -> None:
    """Unconfined, the borrower really finds the instructor's solutions: the sandbox is what stops it."""
    _make_submission(tmp_path / "subs" / "borrower", CASES["borrows-finished-code"][0])
    checked = sandbox_check(COURSE, [LESSON], no_sandbox=True)
    (result,) = grade_all(COURSE, discover(tmp_path / "subs"), [LESSON], jobs=1, hidden=False, checked=checked)
    earned = sum(c.points for c in result.lessons[0].checks if c.passed)
    assert earned == FULL, "without a sandbox the borrowing attack should find a finished module (is it still real?)"


# -- answers files: whatever is in them, the batch goes on -------------------------------------------

HOSTILE_ANSWERS = {
    "huge-integer": "[quiz]\nseed = \"x\"\n[answers]\nl1-lifespan-workers = " + "9" * 5000 + "\n",
    "deep-arrays": "[quiz]\nseed = \"x\"\n[answers]\nl1-context-schema = " + "[" * 5000 + "]" * 5000 + "\n",
    "not-toml": "\0\0 this is \xff not toml",
}


def test_no_answers_file_ends_the_batch(tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    reference = (COURSE.solutions.parent / "quiz-answers.toml").read_text()
    _make_submission(subs / "fine", SOLVED, reference)
    for name, text in HOSTILE_ANSWERS.items():
        _make_submission(subs / name, SOLVED, text)
    checked = sandbox_check(COURSE, [LESSON, QUIZ], no_sandbox=True)
    results = {r.id: r for r in grade_all(COURSE, discover(subs), [LESSON, QUIZ], jobs=2, hidden=False,
                                          checked=checked)}
    assert set(results) == {"fine", *HOSTILE_ANSWERS}
    for name in HOSTILE_ANSWERS:
        code, quiz = results[name].lessons
        assert sum(c.points for c in code.checks if c.passed) == FULL, f"{name}: the code lesson suffered"
        assert quiz.earned == 0, f"{name}: a hostile answers file earned quiz points"
    assert results["fine"].lessons[1].earned == results["fine"].lessons[1].available > 0


# -- limits that hold for a whole check -----------------------------------------------------------------

SPREAD = r'''
import os as _os, select as _select, signal as _signal, time as _time
_read, _write = _os.pipe()
_children = {}
for _index in range(4):
    _pid = _os.fork()
    if _pid == 0:
        _os.close(_read)
        _chunks = []
        for _ in range(8):
            _chunks.append(b"\x01" * (32 * 1024 * 1024))  # written, so every page is really held
            _os.write(_write, bytes([_index]))
        _time.sleep(30)  # hold it all
        _os._exit(0)
    _children[_pid] = _index
_os.close(_write)
_counts = [0, 0, 0, 0]
while _select.select([_read], [], [], 2)[0]:  # until no child has made progress for 2 s
    _got = _os.read(_read, 64)
    if not _got:
        break
    for _byte in _got:
        _counts[_byte] += 1
_alive = [index for pid, index in _children.items() if _os.waitpid(pid, _os.WNOHANG) == (0, 0)]
for _pid in _children:
    try:
        _os.kill(_pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass
raise RuntimeError(f"forked children held {sum(_counts[i] for i in _alive) * 32} MB together")
'''


@pytest.mark.skipif(not ROOT, reason="resource groups need root")
def test_memory_is_limited_for_a_check_as_a_whole(tmp_path: Path) -> None:
    """Four children of 256 MB each against a 512 MB limit: together they never get past it."""
    course = dataclasses.replace(COURSE, memory_limit_mb=512)
    _make_submission(tmp_path / "subs" / "spreader", at_import(SPREAD))
    checked = sandbox_check(course, [LESSON])
    if not any(f.name == "limits" and f.ok for f in checked.findings):
        pytest.skip("no resource groups on this machine")
    (result,) = grade_all(course, discover(tmp_path / "subs"), [LESSON], jobs=1, hidden=False, checked=checked)
    held = [int(m) for c in result.lessons[0].checks for m in re.findall(r"held (\d+) MB together", c.message)]
    assert held, f"the attack did not report: {[c.message[:200] for c in result.lessons[0].checks]}"
    assert max(held) <= 512, f"forked children held {max(held)} MB against a 512 MB limit for the check"


# -- the command itself ------------------------------------------------------------------------------


def test_grade_command_exit_codes(tmp_path: Path) -> None:
    _make_submission(tmp_path / "subs" / "ok", SOLVED)
    env = dict(os.environ, COURSE_ROOT=str(COURSE.root))
    cmd = [sys.executable, "-m", "checker.cli.app", "grade", str(tmp_path / "subs"), "--lessons", "1",
           "--out", str(tmp_path / "g")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "sandbox" in done.stderr, "the preflight table says how student code is confined"
    (tmp_path / "subs" / "empty").mkdir()
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 1
    assert subprocess.run([*cmd[:4], str(tmp_path / "nowhere")], env=env, capture_output=True).returncode == 2


def test_no_sandbox_is_said_at_the_top_and_the_bottom(tmp_path: Path) -> None:
    _make_submission(tmp_path / "subs" / "ok", SOLVED)
    env = dict(os.environ, COURSE_ROOT=str(COURSE.root))
    done = subprocess.run([sys.executable, "-m", "checker.cli.app", "grade", str(tmp_path / "subs"), "--lessons", "1",
                           "--out", str(tmp_path / "g"), "--no-sandbox"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "WITHOUT a sandbox" in line]
    assert len(warnings) == 2, done.stderr
    assert json.loads((tmp_path / "g" / "results.json").read_text())["sandbox"]["mode"] == "none"


def test_grading_refuses_untrusted_work_without_any_sandbox() -> None:
    checked = sandbox_check(COURSE, [LESSON], without_bubblewrap=True) if not ROOT else None
    if checked is None:  # as root the fallback exists; ask as a user would be asked
        from checker.sandbox.preflight import preflight, private_paths
        checked = preflight(COURSE, [LESSON], no_sandbox=False, probe_uid=None, scratch=Path("/tmp"),
                            private=private_paths(COURSE, []), without_bubblewrap=True)
    assert checked.refusal and "--no-sandbox" in checked.refusal
    with pytest.raises(Exception, match="no sandbox"):
        grade_all(COURSE, [Submission("x", Path("/nonexistent"))], [LESSON], jobs=1, checked=checked)


def test_a_stored_student_is_not_graded_again_on_resume(tmp_path: Path) -> None:
    subs, store = tmp_path / "subs", tmp_path / "store"
    _make_submission(subs / "first", SOLVED)
    checked = sandbox_check(COURSE, [LESSON], no_sandbox=True)
    grade_all(COURSE, discover(subs), [LESSON], jobs=1, hidden=False, checked=checked, store=store)
    stored = json.loads((store / "first.json").read_text())
    stored["lessons"][0]["checks"][0]["message"] = "kept from the first run"
    (store / "first.json").write_text(json.dumps(stored))
    _make_submission(subs / "second", STARTER)
    results = {r.id: r for r in grade_all(COURSE, discover(subs), [LESSON], jobs=1, hidden=False, checked=checked,
                                          store=store)}
    assert results["first"].lessons[0].checks[0].message == "kept from the first run"
    assert results["second"].lessons and (store / "second.json").is_file()

