"""Batch grading for instructors: a folder of submissions in, one result model out.

Each submission (a student's copy of the course as a folder, a git checkout, or a zip) is copied
into its own temporary folder, and graded by a worker process that imports the SDK once and
forks one sandboxed child per check. The instructor's checks (visible and hidden) are used, never
the submission's. When the grader runs as root, every check runs as its own unprivileged uid, so
student code cannot touch the grader's files, read root-only folders, or outlive its check.
Scores are assembled here, in a process that never imports student code.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from checker.engine import build_request, worker_command, worker_env
from checker.sandbox import UID_ROTATION, UIDS_PER_SLOT
from checker.registry import Course, CourseError, Lesson
from checker.request import Request
from checker.results import LessonResult

MAX_SUBMISSION_BYTES = 200 * 1024 * 1024
MAX_SUBMISSION_FILES = 20_000
SKIPPED_PARTS = {".git", ".venv", "__pycache__", "node_modules", ".course", ".ipynb_checkpoints"}
SANDBOX_UID = 61000  # first uid for sandboxed checks when grading as root (see sandbox.UIDS_PER_SLOT)
LAST_SANDBOX_UID = 65533  # below `nobody`, and within the 16-bit uids a container maps
CHECKS_AT_ONCE = 2  # per lesson-submission: many checks mostly wait (timeouts, servers starting), so overlap them


@dataclass
class Submission:
    id: str
    source: Path


@dataclass
class SubmissionResult:
    id: str
    lessons: list[LessonResult] = field(default_factory=list)
    error: str = ""  # the submission could not be graded at all (unreadable zip, no package, ...)
    duration: float = 0.0

    @property
    def earned(self) -> float:
        return sum(lesson.earned for lesson in self.lessons)

    @property
    def available(self) -> float:
        return sum(lesson.available for lesson in self.lessons)

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "error": self.error, "duration": self.duration, "earned": self.earned,
                "available": self.available, "lessons": [lesson.to_json() for lesson in self.lessons]}


def discover(folder: Path) -> list[Submission]:
    """Every submission in `folder`: each sub-folder and each .zip, named after it."""
    if not folder.is_dir():
        raise CourseError(f"{folder} is not a folder of submissions")
    found = [Submission(entry.stem if entry.suffix == ".zip" else entry.name, entry)
             for entry in sorted(folder.iterdir())
             if (entry.is_dir() and not entry.name.startswith(".")) or entry.suffix == ".zip"]
    if not found:
        raise CourseError(f"no submissions (folders or .zip files) in {folder}")
    return found


def _copy_folder(source: Path, dest: Path) -> None:
    total = count = 0
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if SKIPPED_PARTS.intersection(rel.parts) or path.is_symlink():
            continue  # a symlink could point at the grader's own files
        if path.is_dir():
            (dest / rel).mkdir(parents=True, exist_ok=True)
            continue
        total += path.stat().st_size
        count += 1
        if total > MAX_SUBMISSION_BYTES or count > MAX_SUBMISSION_FILES:
            raise CourseError("the submission is too large to grade")
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / rel)


def _extract_zip(source: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            members = archive.infolist()
            if len(members) > MAX_SUBMISSION_FILES or sum(m.file_size for m in members) > MAX_SUBMISSION_BYTES:
                raise CourseError("the submission is too large to grade")
            for member in members:
                rel = Path(member.filename)
                if rel.is_absolute() or ".." in rel.parts or (member.external_attr >> 16) & 0o170000 == 0o120000:
                    raise CourseError(f"the zip contains an unsafe path: {member.filename}")
                if SKIPPED_PARTS.intersection(rel.parts):
                    continue
                archive.extract(member, dest)
    except zipfile.BadZipFile:
        raise CourseError("not a readable zip file") from None


def unpack(submission: Submission, dest: Path) -> Path:
    """A private copy of the submission under `dest`; returns the folder of the course copy."""
    dest.mkdir(parents=True, exist_ok=True)
    if submission.source.is_dir():
        _copy_folder(submission.source, dest)
    else:
        _extract_zip(submission.source, dest)
    for path in [p for p in dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)  # readable by the sandbox uid, owned by us
    return dest


def locate_edition(root: Path, course: Course) -> Path:
    """The submission's `src/` folder holding the package (zips often add a top folder)."""
    rel = course.starter.relative_to(course.root)
    for candidate in (root / rel, *(child / rel for child in sorted(root.iterdir()) if child.is_dir())):
        if (candidate / course.package).is_dir():
            return candidate
    raise CourseError(f"no {rel}/{course.package} folder in the submission")


def sandbox_problem(course: Course) -> str:
    """Why checks cannot run as an unprivileged uid on this machine ("" when they can).

    The sandbox user must be able to read the interpreter, the installed packages and the
    course; a Python installed under a private home folder (e.g. pyenv in /root) is not.
    """
    if os.geteuid() != 0:
        return "the grader is not running as root, so checks cannot switch to a sandbox user"
    paths = [sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], str(course.checks_dir)]
    blocked = [p for p in paths if not _sandbox_can_read(p)]
    if blocked:
        return (f"a sandbox user cannot read {blocked[0]}; make the folders above it traversable "
                f"(e.g. `chmod o+x /root` for a pyenv Python) to grade with per-check users")
    return ""


def hidden_checks_exposed(course: Course) -> str:
    """A warning when student code, running as a sandbox user, could open the hidden checks ("" if not).

    `course grade` reads private copies, but the originals stay where they are; if anyone may
    read them, a submission could, and could pass their source back in an error message.
    """
    hidden = course.checks_dir / "hidden"
    if os.geteuid() != 0 or not hidden.is_dir() or not _sandbox_can_read(str(hidden)):
        return ""
    return (f"every user can read the hidden checks in {hidden}, so student code could too: "
            f"`chmod o-rwx {hidden}` keeps them private")


def _sandbox_can_read(path: str) -> bool:
    """Whether the first sandbox uid may read (and traverse) `path`; asked in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)
            os.write(write_end, b"1" if os.access(path, os.R_OK | os.X_OK) else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    return answer == b"1"


@dataclass
class _Planned:
    submission: Submission
    result: SubmissionResult
    requests: list[tuple[Lesson, Path]] = field(default_factory=list)  # lesson, its result file
    edition: Path | None = None  # the copy's src/ folder, once unpacked
    reported: bool = False

    def finished(self) -> bool:
        return all(out.is_file() for _, out in self.requests)


def grade_all(course: Course, submissions: list[Submission], lessons: list[Lesson], *, jobs: int,
              hidden: bool = True, sandbox: bool = True, check_timeout: float | None = None,
              on_done: Callable[[SubmissionResult], None] | None = None,
              checks_at_once: int = CHECKS_AT_ONCE) -> list[SubmissionResult]:
    """Grade every submission's lessons; results come back in submission order.

    Every submission is copied first; then one warm worker process (the SDK imported once for
    the whole class) grades each (submission, lesson) in its own fork, `jobs` at a time. A
    submission that cannot be unpacked is reported, never fatal.
    """
    plans: list[_Planned] = []
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp, _reserved_uids(jobs, sandbox) as first_uid:
        workdir = Path(tmp)
        os.chmod(workdir, 0o711)  # the sandbox may traverse to a copy, not list or write our files
        results_dir = workdir / "results"
        results_dir.mkdir(mode=0o700)
        request_files: list[Path] = []
        for index, submission in enumerate(submissions):
            plan = _Planned(submission, SubmissionResult(submission.id))
            plans.append(plan)
            try:
                copy = unpack(submission, workdir / f"submission-{index}")
                edition = plan.edition = locate_edition(copy, course)
            except (CourseError, OSError) as exc:
                plan.result.error = str(exc)
                continue
            for lesson in lessons:
                if lesson.kind == "quiz":
                    continue  # graded below, from data: no student code runs
                out = results_dir / f"{index}-{lesson.id}.json"
                request = build_request(course, lesson, edition, submission.id, out, jobs=checks_at_once,
                                        hidden=hidden, check_timeout=check_timeout)
                request.sandbox_uid = first_uid
                request.isolate = lesson.isolated
                if sandbox:
                    _use_private_checks(request, workdir / "checks")
                request_file = results_dir / f"{index}-{lesson.id}.request.json"
                request_file.write_text(json.dumps(asdict(request)))
                request_files.append(request_file)
                plan.requests.append((lesson, out))
        for plan in plans:
            if not plan.requests and on_done and plan.edition is None:
                plan.reported = True
                on_done(plan.result)
        if request_files:
            _run_worker(course, request_files, jobs, plans, on_done)
        for plan in plans:
            by_lesson: dict[str, LessonResult] = {}
            for lesson, out in plan.requests:
                if out.is_file():
                    by_lesson[lesson.id] = LessonResult.from_json(json.loads(out.read_text()))
                else:
                    by_lesson[lesson.id] = LessonResult(lesson.id, lesson.title, plan.submission.id,
                                                        error="grading did not finish for this lesson")
            if plan.edition is not None:
                for lesson in (l for l in lessons if l.kind == "quiz"):
                    by_lesson[lesson.id] = _grade_quiz(course, lesson, plan.edition)
            plan.result.lessons = [by_lesson[l.id] for l in lessons if l.id in by_lesson]
            if not plan.reported and on_done:
                on_done(plan.result)
    for plan in plans:  # what its own lessons took (the batch runs several at once)
        plan.result.duration = round(sum(lesson.duration for lesson in plan.result.lessons), 3)
    return [plan.result for plan in plans]


@contextmanager
def _reserved_uids(jobs: int, sandbox: bool) -> Iterator[int | None]:
    """A range of sandbox uids no other `course grade` on this machine is using, held while grading.

    Each batch kills whatever runs under its uids after every check; two batches sharing uids
    would kill each other's checks.
    """
    if not sandbox:
        yield None
        return
    size = UIDS_PER_SLOT * UID_ROTATION * max(1, jobs)
    for start in range(SANDBOX_UID, LAST_SANDBOX_UID - size + 2, size):
        with open(Path(tempfile.gettempdir()) / f"course-grade-uids-{start}.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            yield start
            return
    raise CourseError("every range of sandbox uids is in use by other `course grade` runs: wait for one to finish")


def _use_private_checks(request: Request, folder: Path) -> None:
    """Point `request` at copies of its hidden check files that only the grader can read.

    Student code runs as sandbox users, who could otherwise open the hidden checks and pass
    their source back in an error message, straight into the class's feedback. The visible
    checks stay where they are: students have them anyway, and checks import one another.
    """
    folder.mkdir(mode=0o700, exist_ok=True)

    def private(path: str) -> str:
        copy = folder / Path(path).name
        if not copy.exists():
            shutil.copyfile(path, copy)
        return str(copy)

    request.extra_checks = [private(path) for path in request.extra_checks]


def _grade_quiz(course: Course, lesson: Lesson, edition: Path) -> LessonResult:
    """A quiz is data: grade the submission's answers file here, against the hashed key."""
    from checker.quiz.grading import grade_lesson

    try:
        return grade_lesson(course, lesson, str(edition))
    except CourseError as exc:
        return LessonResult(lesson.id, lesson.title, str(edition), error=str(exc))


def _run_worker(course: Course, request_files: list[Path], jobs: int, plans: list[_Planned],
                on_done: Callable[[SubmissionResult], None] | None) -> None:
    """Run the batch worker, reporting submissions as their last lesson's result appears."""
    budget = len(request_files) * course.lesson_timeout / max(1, jobs) + 120
    cmd = [*worker_command(request_files), "--parallel", str(max(1, jobs))]
    proc = subprocess.Popen(cmd, cwd=request_files[0].parent, env=worker_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + budget
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        for plan in plans:
            if plan.requests and not plan.reported and plan.finished() and on_done:
                plan.reported = True
                on_done(plan.result)
    if proc.poll() is None:
        proc.kill()  # lessons without a result file are reported as unfinished
    proc.wait()
