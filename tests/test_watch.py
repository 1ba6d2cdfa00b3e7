"""`course watch` as a student meets it, under a real pseudo-terminal, plus its pure parts.

The pty tests run the real command on a copy of the course and edit the copy's "student"
package the way an editor does: a broken save (syntax error), a save that kills the process
importing it, then the solution. The watcher must survive each one, show only what changed,
and move on to the next lesson when this one passes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from checker.registry import load_course
from checker.runner.results import CheckResult, LessonResult
from checker.runner.warm import descendants
from checker.student.watch import Watcher, compare, next_lesson, polling_reason, render_run
from tests.conftest import COURSE
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env

SOLUTION = (COURSE.solutions / COURSE.package / "context.py").read_text()


def _result(**outcomes: str) -> LessonResult:
    checks = [CheckResult(id=name, title=f"title of {name}", points=1, outcome=outcome,  # type: ignore[arg-type]
                          message=f"{name} broke" if outcome == "failed" else "", hint=f"hint for {name}")
              for name, outcome in outcomes.items()]
    return LessonResult(lesson="lesson-1", title="t", edition="starter", checks=checks)


def test_compare_sorts_checks_by_how_they_moved() -> None:
    before = _result(a="failed", b="passed", c="failed", d="failed")
    now = _result(a="passed", b="failed", c="failed", d="failed")
    now.checks[3].message = "d broke differently"
    change = compare(before, now)
    assert [c.id for c in change.fixed] == ["a"]
    assert [c.id for c in change.broken] == ["b"]
    assert [c.id for c in change.different] == ["d"]
    assert [c.id for c in change.still] == ["c"]


def _text(renderable: Any) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open(os.devnull, "w"))
    console.print(renderable)
    return console.export_text()


def test_a_rerun_shows_only_what_changed() -> None:
    before = _result(a="failed", b="failed", c="passed")
    now = _result(a="passed", b="failed", c="passed")
    shown = _text(render_run(before, now, "context.py saved"))
    assert "fixed: title of a" in shown
    assert "title of c" not in shown, "an unchanged passing check must not be repeated"
    assert "1 still failing as before: b" in shown and "b broke" not in shown


def test_one_import_error_is_said_once_not_once_per_check() -> None:
    before = _result(a="passed", b="passed")
    now = _result(a="failed", b="failed")
    for check in now.checks:
        check.message = "importing research_desk.context failed: SyntaxError: invalid syntax"
    shown = _text(render_run(before, now, "saved"))
    assert shown.count("SyntaxError") == 1 and "now failing: title of a" in shown and "now failing: title of b" in shown


def test_polling_is_chosen_for_network_and_wsl_drives(tmp_path: Path) -> None:
    mounts = f"/dev/sda1 / ext4 rw 0 0\nserver:/home {tmp_path} nfs4 rw 0 0\n"
    assert "nfs4" in polling_reason([tmp_path / "capstone"], mounts)
    assert polling_reason([Path("/usr/lib")], mounts) == ""
    assert "9p" in polling_reason([Path("/mnt/c/Users/me/course")], "C:\\134 /mnt/c 9p rw 0 0\n")


def test_polling_sees_two_saves_within_one_second(tmp_path: Path) -> None:
    """Two quick saves (a typo, then its fix) are two changes, even where mtimes are coarse."""
    from checker.student.watch import poll_files

    target = tmp_path / "context.py"
    target.write_text("x = 1\n")
    ticks = poll_files(tmp_path, watch_filter=lambda change, path: True, poll_delay_ms=20, rust_timeout=20)
    next(ticks)
    seen = []
    for text in ("x = (\n", "x = 2\n"):
        _save(target, text)
        seen.append(next(ticks))
    assert all({path for _, path in batch} == {str(target)} for batch in seen), seen


def test_next_lesson_prefers_later_lessons_then_earlier_gaps() -> None:
    course = load_course()
    available = [l for l in course.lessons if l.available and l.kind == "code"]
    first, second = available[0], available[1]
    assert next_lesson(course, first, {first.id}) == second
    everything_but_first = {l.id for l in available} - {first.id}
    assert next_lesson(course, available[-1], everything_but_first | {available[-1].id}) == first
    assert next_lesson(course, first, {l.id for l in available}) is None


class _Refused(OSError):
    pass


def test_falls_back_to_polling_when_file_events_are_refused(tmp_path: Path) -> None:
    """watchfiles raises when the OS will not watch (inotify limit): the watcher polls instead."""
    from rich.console import Console

    root = copy_course(tmp_path / "course")
    calls: list[str] = []

    def fake_watch(*paths: Path, **kwargs: Any) -> Any:
        calls.append("events")
        raise _Refused("OS file watch limit reached")
        yield set()  # a generator, as watchfiles.watch is

    def fake_poll(*paths: Path, **kwargs: Any) -> Any:
        calls.append("polling")
        yield set()  # one quiet tick, then the student quits (the generator ends)

    course = load_course(root)
    record = Console(record=True, width=200, file=open(os.devnull, "w"))
    watcher = Watcher(course, course.lesson("1"), record, watch_fn=fake_watch, poll_fn=fake_poll, interactive=False)
    assert watcher.run() == 0
    assert calls == ["events", "polling"]
    assert "polling instead" in record.export_text()
    assert not watcher.worker.running


def _spawn(root: Path, *args: str) -> pexpect.spawn:
    return pexpect.spawn(COURSE_SCRIPT, ["watch", *args], env=course_env(root), cwd=str(root),
                         encoding="utf-8", timeout=180, dimensions=(60, 220))


def _save(path: Path, text: str) -> None:
    """Save like an editor that writes a temporary file and renames it over the original."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stop(child: pexpect.spawn) -> int:
    pids = descendants(child.pid)
    child.send("q")
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    time.sleep(0.2)
    left = [pid for pid in pids if Path(f"/proc/{pid}").exists()
            and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not left, f"watch left processes behind: {left}"
    return int(child.exitstatus)


@pytest.mark.parametrize("poll", [False, True], ids=["file-events", "polling"])
def test_watch_survives_broken_code_and_moves_on_when_the_lesson_passes(tmp_path: Path, poll: bool) -> None:
    root = copy_course(tmp_path / "course")
    module = root / "capstone" / "src" / COURSE.package / "context.py"
    child = _spawn(root, "1", *(["--poll"] if poll else []))
    child.expect("polling" if poll else "file events")
    child.expect(r"lesson-1  0/\d+ checks")
    child.expect("failing: ")  # the first run lists what fails

    _save(module, "def open_desk(:\n")
    child.expect("context.py saved")
    child.expect("SyntaxError")

    _save(module, "import os\nos._exit(3)\n")
    child.expect("context.py saved")
    child.expect("still failing, new reason|ended abruptly")

    _save(module, SOLUTION)
    child.expect("context.py saved")
    child.expect("fixed: ")
    child.expect("lesson-1 passes")
    following = next_lesson(COURSE, COURSE.lesson("1"), {"lesson-1"})
    assert following is not None
    child.expect(f"Moving on to {following.id}")
    child.expect(rf"{following.id}  \d+/\d+ checks")
    assert _stop(child) == 0
    progress = (root / ".course" / "progress.json").read_text()
    assert '"passed_once": true' in progress


def test_watch_ignores_unrelated_files_and_reruns_on_r(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    child = _spawn(root, "1")
    child.expect("h hints · r re-run · q quit")
    child.expect(r"lesson-1  0/\d+ checks")
    (root / "README-notes.txt").write_text("not the package")
    (root / "capstone" / "src" / COURSE.package / "__pycache__").mkdir(exist_ok=True)
    (root / "capstone" / "src" / COURSE.package / "__pycache__" / "x.pyc").write_bytes(b"")
    with pytest.raises(pexpect.TIMEOUT):
        child.expect("saved", timeout=3)
    child.send("r")
    child.expect("re-run")
    child.expect("no change")
    child.send("h")
    child.expect("hint: ")
    assert _stop(child) == 0


def test_ctrl_c_during_a_run_stops_everything(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    child = _spawn(root, "1")
    child.expect(r"lesson-1  0/\d+ checks")
    pids = descendants(child.pid)
    _save(root / "capstone" / "src" / COURSE.package / "context.py", SOLUTION)
    child.expect("checking lesson-1")
    deadline = time.monotonic() + 30
    while len(descendants(child.pid)) <= len(pids) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the run's forks are there
    running = descendants(child.pid)
    child.sendintr()
    child.expect(pexpect.EOF, timeout=60)
    child.close()
    time.sleep(0.3)
    left = [pid for pid in running if Path(f"/proc/{pid}").exists()
            and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not left and child.exitstatus == 0


def test_watch_rejects_a_lesson_without_checks(tmp_path: Path) -> None:
    root = copy_course(tmp_path / "course")
    quiz = next(l for l in COURSE.lessons if l.kind == "quiz")
    child = _spawn(root, quiz.id)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 2 and "no code checks" in child.before
