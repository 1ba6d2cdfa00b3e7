"""Gradescope's autograder: the zip `course export gradescope` writes, and what runs inside it.

Gradescope builds an image from the zip (running `setup.sh` as root on its Ubuntu 22.04 or 24.04
base), then runs `run_autograder` once per submission, as root, in a container whose default
seccomp profile forbids namespaces. So bubblewrap cannot start there, and `course grade`'s
preflight picks its fallback: each submission runs as an unprivileged user of its own. That
fallback holds only if the user can read the runtime and cannot read anything of the
instructor's, which `setup.sh` arranges:

- uv comes from PyPI into a virtual environment of its own (`/opt/course-uv`): Ubuntu's pip
  refuses system-wide installs (PEP 668).
- Python is one every user can read, never one in /root: the image's own when it is 3.11 or
  newer (Ubuntu 24.04), else a uv-managed 3.11 installed into /opt/course-python, else
  Ubuntu's python3.11 package (22.04's universe).
- The programs the chosen lessons' checks start (nginx, redis-server, ...) come from apt, with
  bubblewrap (used wherever namespaces are allowed).
- The instructor-only files in the zip (hidden checks; with `--quiz exam`, the exam pool and its
  signing secret) are made readable by root only.

What the zip holds: the course's runner, visible and hidden checks, lock file and starter
package (which `uv sync` installs). Never `solutions/`, the practice quiz's plain key
(`quiz/key.toml`: grading never needs it), students' answers, or the course's tests. The exam
pool and secret only with `--quiz exam`, because grading exams needs them; the README says so.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from checker.grading.submissions import safe_name
from checker.registry import Course, CourseError
from checker.release import INCLUDE

CONFIG = "gradescope.json"
UV_HOME = "/opt/course-uv"          # uv's own virtual environment
PYTHON_HOME = "/opt/course-python"  # where a uv-managed Python goes when the image has none new enough
SKIPPED_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
NEVER = {"quiz/key.toml", "quiz/answers.toml", "quiz/exam.toml", "quiz/exam-answers.toml"}
EXAM_MATERIAL = "quiz/exam"  # the exam pool (with its key): only in an exam autograder
SECRET_IN_ZIP = ".course/exam-secret"


@dataclass
class Settings:
    """How the autograder grades, fixed when the zip is written (`gradescope.json` in the zip)."""

    lessons: list[str]
    quiz: str = "none"                 # none | exam | practice, as `course grade --quiz`
    exam_name: str | None = None
    student_id: str = "email"          # which field of Gradescope's submitter names the student (exams match on it)
    uv: str = "uv"                     # the pip requirement setup.sh installs
    private: list[str] = field(default_factory=list)  # paths in the zip made readable by root only

    @classmethod
    def load(cls, path: Path) -> Settings:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def uv_requirement() -> str:
    """The uv this machine runs, pinned, so the image resolves the lock file as the instructor does."""
    try:
        done = subprocess.run(["uv", "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "uv"
    found = re.match(r"uv (\d+\.\d+\.\d+)\b", done.stdout)
    return f"uv=={found.group(1)}" if found else "uv"


def setup_sh(course: Course, settings: Settings) -> str:
    """The image build script: packages from the lessons' needs, one line per decision."""
    needs = {need for lesson in course.lessons if lesson.id in settings.lessons for need in lesson.needs}
    # uv is no apt package: it comes from PyPI below.
    packages = sorted({"ca-certificates", "python3", "python3-venv", "bubblewrap",
                       *(course.programs[need].apt for need in needs if course.programs[need].apt)})
    private = " ".join(f'"$SOURCE/{path}"' for path in settings.private)
    return f"""#!/usr/bin/env bash
# Gradescope builds the autograder image with this script, as root, on Ubuntu 22.04 or 24.04.
# Written by `course export gradescope`: the course's runner and checks are in /autograder/source.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SOURCE=/autograder/source

apt-get update -qq
apt-get install -y -qq --no-install-recommends {' '.join(packages)}

# uv in a virtual environment of its own: Ubuntu's pip refuses system-wide installs (PEP 668).
python3 -m venv {UV_HOME}
{UV_HOME}/bin/pip install --quiet --disable-pip-version-check "{settings.uv}"
UV={UV_HOME}/bin/uv

# A Python 3.11+ that every user can read: student code runs as unprivileged users, who cannot
# enter /root (where a uv-managed Python would otherwise go).
course_python() {{
    for name in python3 python3.13 python3.12 python3.11; do
        found=$(command -v "$name" 2>/dev/null) || continue
        if "$found" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then echo "$found"; return; fi
    done
    if UV_PYTHON_INSTALL_DIR={PYTHON_HOME} UV_PYTHON_BIN_DIR={PYTHON_HOME}/bin "$UV" python install 3.11 >&2; then
        chmod -R a+rX {PYTHON_HOME}
        UV_PYTHON_INSTALL_DIR={PYTHON_HOME} UV_PYTHON_PREFERENCE=only-managed "$UV" python find 3.11
        return
    fi
    echo "setup.sh: no uv-managed Python could be downloaded; trying the distribution's python3.11" >&2
    apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv >&2
    command -v python3.11
}}
PYTHON=$(course_python)
echo "setup.sh: grading with $PYTHON ($("$PYTHON" --version))"

cd "$SOURCE"
UV_PYTHON_DOWNLOADS=never "$UV" sync --frozen --python "$PYTHON"

# Everyone may read the runner and its environment; only root may read the instructor's files.
chmod a+rx /autograder "$SOURCE"
chmod -R a+rX "$SOURCE" {UV_HOME}
{f'chmod -R go-rwx {private}' if private else '# (nothing instructor-only in this autograder)'}
chmod 0755 "$SOURCE/run_autograder" "$SOURCE/setup.sh"
"""


RUN_AUTOGRADER = f"""#!/usr/bin/env bash
# Gradescope runs this once per submission, as root: `course grade` on /autograder/submission,
# in the sandbox its preflight chooses, then results.json for Gradescope.
export PATH="{UV_HOME}/bin:$PATH"
cd /autograder/source
exec /autograder/source/.venv/bin/python -m checker.grading.gradescope run
"""


def build_zip(course: Course, out_file: Path, settings: Settings, exam_secret: Path | None = None) -> list[str]:
    """Write the autograder zip; returns the names it holds. `exam_secret` is required for an exam."""
    files: dict[str, Path] = {}
    for top in INCLUDE:  # what a student edition holds (the runner, starter, lessons, quiz) ...
        source = course.root / top
        for path in [source] if source.is_file() else sorted(source.rglob("*")) if source.is_dir() else []:
            rel = path.relative_to(course.root)
            name = rel.as_posix()
            if not path.is_file() or SKIPPED_PARTS.intersection(rel.parts) or path.suffix == ".pyc" or name in NEVER:
                continue
            if name.startswith(EXAM_MATERIAL + "/") and settings.quiz != "exam":
                continue
            files[name] = path  # ... and, unlike it, the hidden checks
    private = ["checker/checks/hidden"]
    if settings.quiz == "exam":
        if exam_secret is None or not exam_secret.is_file():
            raise CourseError(f"an exam autograder needs the secret the exams were signed with ({exam_secret}): "
                              f"write the exams first (`course quiz exam`) or pass --exam-secret")
        files[SECRET_IN_ZIP] = exam_secret
        private += [EXAM_MATERIAL, ".course"]
    settings.private = private
    with zipfile.ZipFile(out_file, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in (("setup.sh", setup_sh(course, settings)), ("run_autograder", RUN_AUTOGRADER),
                           (CONFIG, json.dumps(asdict(settings), indent=1) + "\n")):
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name != CONFIG else 0o644) << 16
            archive.writestr(info, text)
        for name, path in files.items():
            archive.write(path, name)
    return sorted([*files, "setup.sh", "run_autograder", CONFIG])


# ---------------------------------------------------------------- inside Gradescope: run_autograder

def student_id(metadata: Path, field_name: str) -> str:
    """The submitter's id from Gradescope's submission_metadata.json, as submission folders are named."""
    try:
        users = json.loads(metadata.read_text(encoding="utf-8")).get("users") or []
        value = str(users[0].get(field_name) or "")
    except (OSError, ValueError, AttributeError, IndexError, TypeError):
        value = ""
    cleaned = re.sub(r"[^A-Za-z0-9._@+-]", "_", value).lstrip("._-+@")[:100]
    return cleaned or "student"


def run(autograder: Path = Path("/autograder")) -> int:
    """Grade /autograder/submission with `course grade` and leave Gradescope its results.json.

    When grading cannot start (the preflight refuses, say), no results.json is written, so
    Gradescope reports an autograder failure to the instructor instead of a score of 0.
    """
    source = autograder / "source"
    settings = Settings.load(source / CONFIG)
    student = student_id(autograder / "submission_metadata.json", settings.student_id)
    work = Path(tempfile.mkdtemp(prefix="course-gradescope-"))  # 0700: only root enters
    try:
        submissions = work / "submissions"
        submissions.mkdir()
        shutil.copytree(autograder / "submission", submissions / student, symlinks=True)
        grades = work / "grades"
        argv = [sys.executable, "-m", "checker.cli.app", "grade", str(submissions), "--out", str(grades),
                "--jobs", "1", "--lessons", ",".join(settings.lessons), "--quiz", settings.quiz]
        if settings.exam_name:
            argv += ["--exam-name", settings.exam_name]
        done = subprocess.run(argv, cwd=source, stdin=subprocess.DEVNULL)
        produced = grades / "gradescope" / f"{safe_name(student)}.json"
        if not produced.is_file():
            print(f"run_autograder: `course grade` wrote no result (exit code {done.returncode}); see above")
            return 1
        (autograder / "results").mkdir(exist_ok=True)
        shutil.copyfile(produced, autograder / "results" / "results.json")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run() if sys.argv[1:] == ["run"] else "usage: python -m checker.grading.gradescope run")
