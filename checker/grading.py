"""Batch grading for instructors: a folder of submissions in, one result model out.

Each submission (a student's copy of the course as a folder, a git checkout, or a zip) is copied
into its own temporary folder, and graded by a worker process that imports the SDK once and
forks one sandboxed child per check. The instructor's checks (visible and hidden) are used, never
the submission's. When the grader runs as root, every check runs as its own unprivileged uid, so
student code cannot touch the grader's files, read root-only folders, or outlive its check.
Scores are assembled here, in a process that never imports student code.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sysconfig
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

from checker.engine import build_request, worker_command, worker_env
from checker.registry import Course, CourseError, Lesson
from checker.results import LessonResult

MAX_SUBMISSION_BYTES = 200 * 1024 * 1024
MAX_SUBMISSION_FILES = 20_000
SKIPPED_PARTS = {".git", ".venv", "__pycache__", "node_modules", ".course", ".ipynb_checkpoints"}
SANDBOX_UID = 61000  # first uid for sandboxed checks when grading as root
UIDS_PER_WORKER = 16  # worker w, check slot k runs as SANDBOX_UID + 16 w + k


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
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(SANDBOX_UID)
            os.setuid(SANDBOX_UID)
            blocked = [p for p in paths if not os.access(p, os.R_OK | os.X_OK)]
            os.write(write_end, "\n".join(blocked).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        blocked = [line for line in pipe.read().decode().splitlines() if line]
    os.waitpid(pid, 0)
    if blocked:
        return (f"a sandbox user cannot read {blocked[0]}; make the folders above it traversable "
                f"(e.g. `chmod o+x /root` for a pyenv Python) to grade with per-check users")
    return ""


def grade_submission(course: Course, submission: Submission, lessons: list[Lesson], *,
                     hidden: bool = True, check_jobs: int = 1, sandbox_uid: int | None = None,
                     check_timeout: float | None = None) -> SubmissionResult:
    """Grade one submission's lessons with one worker process; never raises for bad submissions.

    `sandbox_uid`: run its checks as uids from here up (one per check slot); every worker
    running at the same time needs its own range, since leftovers are killed by uid.
    """
    started = time.monotonic()
    result = SubmissionResult(submission.id)
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o711)  # the sandbox may traverse to the copy, not list or write our files
        try:
            copy = unpack(submission, workdir / "submission")
            edition = locate_edition(copy, course)
        except (CourseError, OSError) as exc:
            result.error = str(exc)
            result.duration = round(time.monotonic() - started, 3)
            return result
        results_dir = workdir / "results"
        results_dir.mkdir(mode=0o700)
        requests = []
        for lesson in lessons:
            request = build_request(course, lesson, edition, submission.id, results_dir / f"{lesson.id}.json",
                                    jobs=check_jobs, hidden=hidden, check_timeout=check_timeout)
            request.sandbox_uid = sandbox_uid
            request_file = results_dir / f"{lesson.id}.request.json"
            request_file.write_text(json.dumps(asdict(request)))
            requests.append((lesson, request, request_file))
        budget = sum(course.lesson_timeout for _ in lessons) + 60
        cmd = worker_command([file for _, _, file in requests])
        try:
            subprocess.run(cmd, cwd=workdir, env=worker_env(), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=budget, check=False)
        except subprocess.TimeoutExpired:
            pass  # lessons without a result file are reported below
        for lesson, request, _ in requests:
            out = Path(request.out)
            if out.is_file():
                result.lessons.append(LessonResult.from_json(json.loads(out.read_text())))
            else:
                result.lessons.append(LessonResult(lesson.id, lesson.title, submission.id,
                                                   error="grading did not finish for this lesson"))
    result.duration = round(time.monotonic() - started, 3)
    return result


def grade_all(course: Course, submissions: list[Submission], lessons: list[Lesson], *, jobs: int,
              hidden: bool = True, sandbox: bool = True, check_timeout: float | None = None,
              on_done: Callable[[SubmissionResult], None] | None = None) -> list[SubmissionResult]:
    """Grade every submission, `jobs` at a time (one worker process each), in submission order."""
    results: dict[str, SubmissionResult] = {}
    uid_ranges: queue.Queue[int | None] = queue.Queue()
    for worker in range(max(1, jobs)):
        uid_ranges.put(SANDBOX_UID + UIDS_PER_WORKER * worker if sandbox else None)

    def one(sub: Submission) -> SubmissionResult:
        uid = uid_ranges.get()
        try:
            return grade_submission(course, sub, lessons, hidden=hidden, sandbox_uid=uid, check_timeout=check_timeout)
        finally:
            uid_ranges.put(uid)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, sub) for sub in submissions]
        for future in as_completed(futures):
            done = future.result()
            results[done.id] = done
            if on_done:
                on_done(done)
    return [results[sub.id] for sub in submissions]

