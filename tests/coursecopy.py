"""A throwaway copy of the course for tests that change student files, progress or backups.

The copy holds what the runner reads (course.toml, the starter and solutions packages, the
notebooks) and links the checks, so a test can break, reset and restore "student" code
without touching the real capstone/ or .course/.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.conftest import COURSE, pristine_project

COURSE_SCRIPT = str(Path(sys.executable).with_name("course"))


def copy_course(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints")
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(COURSE.root / "course.toml", dest / "course.toml")
    # The starter as the course ships it (never the student's own capstone/, which may be solved).
    shutil.copytree(pristine_project(), dest / COURSE.starter.parent.relative_to(COURSE.root), ignore=ignore)
    for folder in (COURSE.solutions.parent, COURSE.root / "lessons"):
        shutil.copytree(folder, dest / folder.relative_to(COURSE.root), ignore=ignore)
    (dest / COURSE.checks_dir.relative_to(COURSE.root)).parent.mkdir(parents=True)
    os.symlink(COURSE.checks_dir, dest / COURSE.checks_dir.relative_to(COURSE.root))
    return dest


def course_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for `course` run on the copy (wide, plain output)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COURSE_ROOT")}
    env.update(COURSE_ROOT=str(root), COLUMNS="200", TERM="dumb", **extra)
    return env
