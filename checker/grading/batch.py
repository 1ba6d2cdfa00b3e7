"""Batch grading for instructors: a folder of submissions in, one result per student out.

Each submission is copied into a folder of its own, then graded by the batch worker
(`checker.grading.worker`) in a sandbox of its own with the instructor's checks (visible and
hidden), never the submission's. This process never imports student code: it plans, watches
result files appear, and assembles each student's result as soon as their last lesson is in,
merging it over their record in the grade store (`checker.grading.store`) at once, so an
interrupted batch resumes where it stopped and a regrade keeps what it did not grade. Paths of
the grader's temporary folders are taken out of everything a student or instructor reads.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import checker
from checker.grading.record import SubmissionResult, merged, not_graded_message
from checker.grading.store import GradeStore
from checker.grading.submissions import Submission, locate_edition, unpack
from checker.quiz.grading import ExamSetup
from checker.registry import Course, CourseError, Lesson
from checker.runner.lesson import build_request
from checker.runner.prestart import worker_env
from checker.runner.request import Request
from checker.runner.results import CheckResult, LessonResult
from checker.sandbox.cgroups import Group, GroupsUnavailable, batch_groups
from checker.sandbox.preflight import Preflight, preflight, private_paths
from checker.sandbox.submission import Mode, SandboxPlan

SANDBOX_UID = 61000       # first uid for sandboxed submissions when grading as root
LAST_SANDBOX_UID = 65533  # below `nobody`, and within the 16-bit uids a container maps
UIDS_PER_SLOT = 8         # users each slot cycles through: a killed submission's leftovers count against its user
CHECKS_AT_ONCE = 2        # per lesson-submission: many checks mostly wait (servers starting), so overlap them


@dataclass
class _Planned:
    index: int
    submission: Submission
    result: SubmissionResult
    workdir: Path
    lessons: list[Lesson] = field(default_factory=list)  # what this run grades of it (the store may hold others)
    previous: SubmissionResult | None = None  # its stored record, which the new lessons are merged over
    requests: list[tuple[Lesson, Path]] = field(default_factory=list)  # lesson, its result file
    edition: Path | None = None  # the copy's src/ folder, once unpacked
    reported: bool = False

    def finished(self) -> bool:
        return all(out.is_file() for _, out in self.requests)


def sandbox_check(course: Course, lessons: list[Lesson], *, no_sandbox: bool = False,
                  private: list[Path] | None = None, without_bubblewrap: bool = False) -> Preflight:
    """The preflight for grading `lessons` here (see `checker.sandbox.preflight`)."""
    with tempfile.TemporaryDirectory(prefix="course-preflight-") as scratch:
        return preflight(course, lessons, no_sandbox=no_sandbox, probe_uid=SANDBOX_UID if os.geteuid() == 0 else None,
                         scratch=Path(scratch), private=private_paths(course, private or []),
                         without_bubblewrap=without_bubblewrap)


def grade_all(course: Course, submissions: list[Submission], lessons: list[Lesson], *, jobs: int,
              hidden: bool = True, sandbox: bool = True, check_timeout: float | None = None,
              on_done: Callable[[SubmissionResult], None] | None = None,
              checks_at_once: int = CHECKS_AT_ONCE, checked: Preflight | None = None,
              store: Path | None = None, run: str | None = None,
              quiz_exam: ExamSetup | None = None) -> list[SubmissionResult]:
    """Grade every submission's lessons; results come back in submission order.

    `checked` is the preflight already shown to the instructor (made here if not given);
    grading refuses to start when it found no safe way to run student code (`sandbox=False`
    means `--no-sandbox`). With `store` (a `grades/store/` folder), each student's result is
    merged over their stored record (lessons not graded now are kept) and written the moment it
    is complete. A lesson the store already holds is not graded again: any stored lesson when
    `run` is None, else only one that `run` graded (`--resume` of that run). A quiz lesson among
    `lessons` is graded from signed exam files with `quiz_exam`, else from the practice answers.
    """
    checked = checked or sandbox_check(course, lessons, no_sandbox=not sandbox)
    if checked.refusal:
        raise CourseError(checked.refusal)
    assert checked.mode is not None
    plans: list[_Planned] = []
    records = GradeStore(store) if store is not None else None
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp, \
            _reserved_uids(jobs, checked.mode is not Mode.NONE and os.geteuid() == 0) as uid_blocks, \
            _batch_groups(checked) as groups:
        workdir = Path(tmp)
        batch = _Batch(course, checked, quiz_exam, on_done, records, run or "", workdir)
        os.chmod(workdir, 0o711)  # a submission's user may pass through to its own folder, never list them
        results_dir = workdir / "results"
        results_dir.mkdir(mode=0o700)
        private_checks = workdir / "checks"
        private_checks.mkdir(mode=0o700)
        entries = []
        for index, submission in enumerate(submissions):
            previous = records.get(submission.id) if records is not None else None
            todo = [lesson for lesson in lessons if previous is None or not previous.has(lesson.id, run)]
            plan = _Planned(index, submission, SubmissionResult(submission.id, source=submission.source.name),
                            workdir / f"sub-{index}", todo, previous)
            plans.append(plan)
            if not todo:
                assert previous is not None
                plan.result, plan.reported = previous, True
                continue
            entries.append(_plan_submission(course, plan, results_dir, private_checks, hidden=hidden,
                                            check_timeout=check_timeout, checks_at_once=checks_at_once))
        for plan in plans:
            if plan.edition is None and not plan.reported:
                batch.report(plan)
        todo_entries = [entry for entry in entries if entry["requests"]]
        if todo_entries:
            work = {"plan": _plan_json(course, checked), "uid_blocks": uid_blocks, "parallel": max(1, jobs),
                    "private": [str(p) for p in checked.private], "view": checked.view,
                    "groups": [str(d) for d in groups.dirs] if groups else [], "groups_v2": bool(groups and groups.v2),
                    "limits": {"wall_seconds": check_timeout or course.check_timeout,
                               "memory_mb": course.memory_limit_mb, "output_mb": course.output_limit_mb},
                    "submissions": todo_entries}
            batch_file = results_dir / "batch.json"
            batch_file.write_text(json.dumps(work))
            _run_worker(course, batch_file, len(todo_entries), jobs, plans, batch.finish)
        for plan in plans:
            if not plan.reported:
                batch.finish(plan)
    return [plan.result for plan in plans]


def _plan_submission(course: Course, plan: _Planned, results_dir: Path, private_checks: Path,
                     *, hidden: bool, check_timeout: float | None, checks_at_once: int) -> dict[str, object]:
    """Copy one submission and write its lessons' requests; a submission that cannot be is reported."""
    entry: dict[str, object] = {"index": plan.index, "id": plan.submission.id, "workdir": str(plan.workdir),
                                "requests": []}
    try:
        plan.workdir.mkdir(mode=0o700)
        copy = unpack(plan.submission, plan.workdir / "copy")
        plan.edition = locate_edition(copy, course)
    except (CourseError, OSError, ValueError) as exc:
        plan.result.error = str(exc)
        return entry
    except Exception as exc:  # noqa: BLE001 - whatever a hostile archive does, the batch goes on
        plan.result.error = f"the submission could not be unpacked: {type(exc).__name__}: {exc}"
        return entry
    entry["edition"] = str(plan.edition)
    paths = []
    for lesson in plan.lessons:
        if lesson.kind == "quiz":
            continue  # graded from data, here: no student code runs
        out = results_dir / f"{plan.index}-{lesson.id}.json"
        request = build_request(course, lesson, plan.edition, plan.submission.id, out, jobs=checks_at_once,
                                hidden=hidden, check_timeout=check_timeout)
        _use_private_checks(request, private_checks)
        request_file = results_dir / f"{plan.index}-{lesson.id}.request.json"
        request_file.write_text(json.dumps(asdict(request)))
        paths.append(str(request_file))
        plan.requests.append((lesson, out))
    entry["requests"] = paths
    return entry


def _plan_json(course: Course, checked: Preflight) -> dict[str, object]:
    assert checked.mode is not None
    hidden = course.checks_dir / "hidden"
    return SandboxPlan(mode=checked.mode, runtime=checked.runtime, checker=str(Path(checker.__file__).resolve().parent),
                       hidden=str(hidden) if hidden.is_dir() else "", path_dirs=checked.path_dirs).to_json()


@contextmanager
def _batch_groups(checked: Preflight) -> Iterator[Group | None]:
    """This batch's resource groups when the machine gives them (root), else per-process limits only."""
    if checked.mode is Mode.NONE or os.geteuid() != 0:
        yield None
        return
    try:
        groups = batch_groups(f"course-grade-{os.getpid()}")
    except GroupsUnavailable:
        yield None  # the preflight has said so
        return
    try:
        yield groups
    finally:
        groups.remove()


@dataclass
class _Batch:
    """What finishing a student needs: how the batch was confined, where results go."""

    course: Course
    checked: Preflight
    quiz_exam: ExamSetup | None
    on_done: Callable[[SubmissionResult], None] | None
    store: GradeStore | None
    run: str
    workdir: Path

    def finish(self, plan: _Planned) -> None:
        """Assemble a student's result from their lessons' files (and quiz); report and store it."""
        by_lesson: dict[str, LessonResult] = {}
        for lesson, out in plan.requests:
            try:
                by_lesson[lesson.id] = LessonResult.from_json(json.loads(out.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                by_lesson[lesson.id] = LessonResult(lesson.id, lesson.title, plan.submission.id,
                                                    error="grading did not finish for this lesson")
        if plan.edition is not None:
            for lesson in (item for item in plan.lessons if item.kind == "quiz"):
                by_lesson[lesson.id] = _grade_quiz(self.course, lesson, plan, self.quiz_exam)
        plan.result.lessons = [by_lesson[item.id] for item in plan.lessons if item.id in by_lesson]
        code = {item.id for item in plan.lessons if item.kind == "code"}  # a quiz's skips are its grader's verdict
        for graded in plan.result.lessons:
            for check in graded.checks:
                if check.outcome == "skipped" and graded.lesson in code:
                    _judge_skip(check, self.checked)
            _scrub_lesson(graded, self.workdir, plan)
        plan.result.duration = round(sum(graded.duration for graded in plan.result.lessons), 3)
        self.report(plan)

    def report(self, plan: _Planned) -> None:
        """Stamp what this run graded, merge it over the stored record, store it, and tell the caller."""
        assert self.checked.mode is not None
        stamp = {"run": self.run, "sandbox": self.checked.mode.value}
        plan.result.graded = {lesson.lesson: dict(stamp) for lesson in plan.result.lessons}
        plan.result.error = _scrubbed(plan.result.error, self.workdir, plan)
        plan.result = merged(plan.previous, plan.result, [lesson.id for lesson in plan.lessons],
                             [lesson.id for lesson in self.course.lessons])
        plan.reported = True
        if self.store is not None:
            self.store.put(plan.result)
        if self.on_done is not None:
            self.on_done(plan.result)


def _judge_skip(check: CheckResult, checked: Preflight) -> None:
    """A skip while grading: the grading machine's problem (not graded, not counted), or the student's.

    Only a program the preflight found missing excuses a check. Anything else that made a check
    skip itself on a machine that has everything (a build that reports it is "offline", say)
    came from the submission, and counts against it like any failure.
    """
    lacking = [program for program in checked.missing if program in check.message]
    if lacking:
        check.message = not_graded_message(lacking[0])
        return
    check.outcome = "failed"
    check.message = f"the check could not run your code as it should: {check.message}"


_QUOTES = "\"'`"


def _scrubbed(text: str, workdir: Path, plan: _Planned) -> str:
    """`text` without the grader's temporary paths: a file of the submission by its path inside the
    submission, an instructor check file as such, anything else of the grading folder by its name."""
    if str(workdir) not in text:
        return text
    copy = f"{plan.workdir / 'copy'}/"

    def shown(match: re.Match[str]) -> str:
        path = match.group(0)
        if path.startswith(copy):
            return path[len(copy):]
        if path.startswith(f"{workdir / 'checks'}/"):
            return "(an instructor check file)"
        return f"(grading folder)/{Path(path).name}"

    return re.sub(re.escape(str(workdir)) + rf"[^\s{_QUOTES}]*", shown, text)


def _scrub_lesson(lesson: LessonResult, workdir: Path, plan: _Planned) -> None:
    lesson.edition = _scrubbed(lesson.edition, workdir, plan)
    lesson.error = _scrubbed(lesson.error, workdir, plan)
    lesson.title = _scrubbed(lesson.title, workdir, plan)
    for check in lesson.checks:
        check.title = _scrubbed(check.title, workdir, plan)
        check.message = _scrubbed(check.message, workdir, plan)
        check.hint = _scrubbed(check.hint, workdir, plan)
    for report in lesson.broken:
        report.code = _scrubbed(report.code, workdir, plan)
        report.error = _scrubbed(report.error, workdir, plan)
        report.fix = _scrubbed(report.fix, workdir, plan)


@contextmanager
def _reserved_uids(jobs: int, needed: bool) -> Iterator[list[int] | None]:
    """One block of sandbox uids per parallel slot, none of them used by another `course grade` here.

    Each block of UIDS_PER_SLOT uids has its own lock file, held while grading, so two batches
    (whatever their --jobs) never share a uid.
    """
    if not needed:
        yield None
        return
    with contextlib.ExitStack() as held:
        blocks: list[int] = []
        for start in range(SANDBOX_UID, LAST_SANDBOX_UID - UIDS_PER_SLOT + 2, UIDS_PER_SLOT):
            lock = held.enter_context(open(Path(tempfile.gettempdir()) / f"course-grade-uids-{start}.lock", "w"))
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            blocks.append(start)
            if len(blocks) == max(1, jobs):
                yield blocks
                return
        raise CourseError("every range of sandbox uids is in use by other `course grade` runs: wait for one to finish")


def _use_private_checks(request: Request, folder: Path) -> None:
    """Point `request` at copies of its hidden check files that only the grader can read."""
    def private(path: str) -> str:
        copy = folder / Path(path).name
        if not copy.exists():
            shutil.copyfile(path, copy)
        return str(copy)

    request.extra_checks = [private(path) for path in request.extra_checks]


def _grade_quiz(course: Course, lesson: Lesson, plan: _Planned, exam: ExamSetup | None) -> LessonResult:
    """A quiz is data: grade the submission's answers here. Nothing in them can stop the batch."""
    from checker.quiz.grading import grade_submission_quiz

    assert plan.edition is not None
    try:
        return grade_submission_quiz(course, lesson, plan.edition, student=plan.submission.id, exam=exam)
    except Exception as exc:  # noqa: BLE001 - the quiz grader promises not to raise; if it does, one student's error
        return LessonResult(lesson.id, lesson.title, "submission",
                            error=f"the quiz could not be graded: {type(exc).__name__}")


def _run_worker(course: Course, batch_file: Path, count: int, jobs: int, plans: list[_Planned],
                finish: Callable[[_Planned], None]) -> None:
    """Run the batch worker, reporting submissions as their last lesson's result appears."""
    budget = count * course.lesson_timeout * 9 / max(1, jobs) + 300
    proc = subprocess.Popen([sys.executable, "-m", "checker.grading.worker", str(batch_file)],
                            cwd=batch_file.parent, env=worker_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + budget
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            for plan in plans:
                if plan.requests and not plan.reported and plan.finished():
                    finish(plan)
    finally:
        if proc.poll() is None:
            proc.kill()  # lessons without a result file are reported as unfinished
        proc.wait()
