"""Grade one lesson: start the worker in a child process, bound it in time, read its result.

This side never imports pytest, the SDK or student code, so it starts fast and nothing a
check does can crash it. All it trusts is the JSON file the worker writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from checker.registry import Course, CourseError, Lesson
from checker.runner.catalog import lesson_catalog
from checker.runner.prestart import take_prestarted, worker_env
from checker.runner.request import Request
from checker.runner.results import CheckResult, LessonResult

TIMINGS = "timings.json"


def edition_path(course: Course, against: str) -> tuple[Path, str]:
    """`starter` (the student's package), `solutions`, or a path to another copy's src/ folder."""
    if against == "starter":
        path, name = course.starter, "starter"
    elif against == "solutions":
        path, name = course.solutions, "solutions"
    else:
        path, name = Path(against).resolve(), against
    if not (path / course.package).is_dir():
        raise CourseError(f"no {course.package} package found in {path}")
    return path, name


def _start_worker(request_file: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """The pre-started worker if there is one, else a new one, working on `request_file`."""
    proc = take_prestarted()
    if proc is not None and proc.poll() is None and proc.stdin is not None:
        proc.stdin.write(f"{request_file}\n".encode())
        proc.stdin.close()
        proc.stdin = None  # handed over: communicate() must not touch it again
        return proc
    return subprocess.Popen([sys.executable, "-m", "checker.runner.start", "--request", str(request_file)],
                            cwd=cwd, env=worker_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


def build_request(course: Course, lesson: Lesson, edition: Path, edition_name: str, out: Path, *,
                  jobs: int | None = None, select: list[str] | None = None,
                  check_timeout: float | None = None, hidden: bool = False) -> Request:
    """Everything a worker needs to check `lesson` against the package in `edition`.

    `hidden` adds the instructor-only checks, when this copy of the course has them.
    """
    checks_file = course.checks_file(lesson)
    if not checks_file.is_file():
        raise CourseError(f"the checks for {lesson.id} are missing ({checks_file})")
    extra = [*course.checks_files(lesson)[1:]]
    if hidden:
        extra += course.hidden_checks_files(lesson)
    seconds, busy = past_timings(course.state_dir, lesson.id)
    known = {c.id for c in lesson_catalog(course, lesson, hidden=hidden)}
    unknown = sorted(set(select or ()) - known)
    if unknown:
        raise CourseError(f"{lesson.id} has no check {unknown[0]!r}; its checks are {', '.join(sorted(known))}")
    return Request(
        lesson=lesson.id, title=lesson.title, checks_file=str(checks_file), edition=str(edition),
        edition_name=edition_name, package=course.package, modules=list(lesson.modules),
        out=str(out), check_timeout=check_timeout or course.check_timeout,
        lesson_timeout=course.lesson_timeout, memory_mb=course.memory_limit_mb,
        output_mb=course.output_limit_mb, jobs=jobs or checks_at_once(), select=list(select or ()),
        expected=seconds, busy=busy,
        extra_checks=[str(path) for path in extra],
        owners={module: other.number for other in course.lessons for module in other.modules},
        builds_package=lesson.builds_package,
    )


def checks_at_once() -> int:
    """How many checks a self-check runs at once: one more than the cores, at most four.

    Most checks spend much of their time waiting (for a server to start or stop, a subprocess,
    a timeout they provoke on purpose), so one check more than there are cores keeps the cores
    busy while the others wait; more would only make the busy ones take turns.
    """
    return min(4, (os.cpu_count() or 1) + 1)


class LessonRun:
    """One lesson being checked in a worker process; `wait()` gives its result.

    Starting and waiting are separate so a caller can do its own work (the CLI imports its
    renderer) on the other core while the worker imports the SDK.
    """

    _quiz: LessonResult | None = None  # a quiz lesson's result, graded without a worker

    def __init__(self, course: Course, lesson: Lesson, against: str = "starter",
                 select: list[str] | None = None, jobs: int | None = None,
                 check_timeout: float | None = None, hidden: bool = False) -> None:
        if not lesson.available:
            raise CourseError(f"{lesson.id} ({lesson.title}) is coming soon: it has no checks yet")
        # BEGIN quiz dispatch (lesson 10): a quiz's answers are data, not code, so they are graded
        # here, in-process, against the hashed key; one CheckResult per question (checker/quiz/).
        if lesson.kind == "quiz":
            from checker.quiz.grading import grade_lesson

            self._quiz = grade_lesson(course, lesson, against, select)
            return
        # END quiz dispatch
        edition, self.edition_name = edition_path(course, against)
        self.course, self.lesson = course, lesson
        self.started = time.monotonic()
        self._tmp = tempfile.TemporaryDirectory(prefix="course-check-")
        tmp = Path(self._tmp.name)
        self.request = build_request(course, lesson, edition, self.edition_name, tmp / "result.json",
                                     jobs=jobs, select=select, check_timeout=check_timeout, hidden=hidden)
        request_file = tmp / "request.json"
        request_file.write_text(json.dumps(asdict(self.request)))
        self._proc = _start_worker(request_file, tmp)

    def wait(self) -> LessonResult:
        if self._quiz is not None:  # quiz dispatch (lesson 10), see __init__
            return self._quiz
        error = ""
        try:
            _, stderr = self._proc.communicate(timeout=self.course.lesson_timeout + 30)
            if self._proc.returncode != 0:
                tail = stderr.decode(errors="replace")[-1500:]
                error = f"the check runner exited with code {self._proc.returncode}: {tail}"
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            error = f"the lesson did not finish within its limit of {self.course.lesson_timeout:g} s"
        out = Path(self.request.out)
        if out.is_file():
            result = LessonResult.from_json(json.loads(out.read_text()))
        else:
            result = LessonResult(lesson=self.lesson.id, title=self.lesson.title, edition=self.edition_name,
                                  error=error or "the check runner produced no result")
        self._tmp.cleanup()
        result.duration = round(time.monotonic() - self.started, 3)
        if result.checks and not result.error:
            save_timings(self.course.state_dir, self.lesson.id, result.checks)
        return result


def run_lesson(course: Course, lesson: Lesson, against: str = "starter",
               select: list[str] | None = None, jobs: int | None = None,
               check_timeout: float | None = None, hidden: bool = False) -> LessonResult:
    """Run `lesson`'s graded checks against an edition and return the result."""
    return LessonRun(course, lesson, against, select, jobs, check_timeout, hidden).wait()


def load_timings(state_dir: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads((state_dir / TIMINGS).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def past_timings(state_dir: Path, lesson_id: str) -> tuple[dict[str, float], dict[str, float]]:
    """From the lesson's last run: each check's seconds, and its CPU seconds over those seconds.

    A check recorded as bare seconds (an older record) or with nonsense in it counts as busy.
    """
    seconds: dict[str, float] = {}
    busy: dict[str, float] = {}
    recorded = load_timings(state_dir).get(lesson_id)
    for check, value in (recorded.items() if isinstance(recorded, dict) else ()):
        wall, cpu = _wall_and_cpu(value)
        if wall > 0:
            seconds[check] = wall
            busy[check] = min(1.0, max(0.0, cpu / wall))
    return seconds, busy


def _wall_and_cpu(value: object) -> tuple[float, float]:
    """A recorded `[seconds, cpu]`; bare seconds (an older record) count as all CPU; (0, 0) for nonsense."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value), float(value)
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        return float(value[0]), float(value[1])
    return 0.0, 0.0


def save_timings(state_dir: Path, lesson_id: str, checks: list[CheckResult]) -> None:
    """Remember how long each check took and how much CPU it used: the next run starts the slowest
    first, and runs the ones that mostly wait beside the others."""
    from checker.student.progress import write_atomically

    data = load_timings(state_dir)
    data[lesson_id] = {c.id: [c.duration, c.cpu] for c in checks}
    with contextlib.suppress(OSError):  # a read-only course folder only costs the ordering hint
        write_atomically(state_dir / TIMINGS, json.dumps(data, indent=1, sort_keys=True))
