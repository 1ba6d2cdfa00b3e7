"""The warm worker: the checks `course check` runs, isolation intact, nothing left behind."""

from __future__ import annotations

import os
from pathlib import Path

from checker.runner.catalog import lesson_catalog
from checker.runner.warm import WarmWorker, descendants
from tests.conftest import COURSE, pristine_starter, solutions_with_spy

LESSON = COURSE.lesson("1")


def test_warm_results_match_cold_ones(tmp_path: Path) -> None:
    with WarmWorker(COURSE) as worker:
        solutions = worker.check(LESSON, "solutions")
        starter = worker.check(LESSON, str(pristine_starter()))
    assert solutions.ok and [c.id for c in solutions.checks] == [c.id for c in lesson_catalog(COURSE, LESSON)]
    assert not starter.ok and starter.failed == len(starter.checks)


def test_student_code_never_runs_in_the_warm_process(tmp_path: Path) -> None:
    """A module that records the pid importing it: only per-check forks may appear."""
    marks = tmp_path / "importers"
    marks.mkdir()
    edition = solutions_with_spy(tmp_path, f"import os as _os\nopen({str(marks)!r} + '/' + str(_os.getpid()), 'w').close()\n")
    with WarmWorker(COURSE) as worker:
        first = worker.check(LESSON, str(edition))
        assert worker._proc is not None
        warm_pid = worker._proc.pid
        second = worker.check(LESSON, str(edition))
        assert worker._proc.pid == warm_pid, "one warm process serves every run"
    assert first.ok and second.ok, (first.error, [c.message for c in first.checks if c.message])
    importers = {int(p.name) for p in marks.iterdir()}
    assert importers and warm_pid not in importers


def test_a_dead_worker_is_replaced_on_the_next_run() -> None:
    with WarmWorker(COURSE) as worker:
        worker.start()
        assert worker._proc is not None
        dead = worker._proc.pid
        os.kill(dead, 9)
        again = worker.check(LESSON, "solutions")
        assert again.ok, again.error
        assert worker._proc is not None and worker._proc.pid != dead


def test_closing_after_a_request_the_dead_worker_never_read_raises_nothing() -> None:
    """The request written to a dead worker stays in the pipe's buffer; closing must not flush it."""
    worker = WarmWorker(COURSE)
    worker.start()
    assert worker._proc is not None and worker._proc.stdin is not None
    os.kill(worker._proc.pid, 9)
    worker._proc.wait()
    worker._proc.stdin.write(b"x" * 100)  # buffered, unflushed: close() would flush it into a broken pipe
    worker.close()
    assert worker._proc is None


def test_close_leaves_no_process_behind() -> None:
    worker = WarmWorker(COURSE)
    worker.start()
    assert worker._proc is not None
    pid = worker._proc.pid
    tree = [pid, *descendants(pid)]
    worker.close()
    assert not [p for p in tree if Path(f"/proc/{p}").exists()]

