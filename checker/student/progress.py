"""The student's progress, stored atomically in `.course/progress.json`.

Only the runner's own folder is written; the student's code never is. A write goes to a
temporary file first and is renamed into place, so a crash or Ctrl-C cannot leave a torn file.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from checker.runner.results import LessonResult

FILE = "progress.json"


def load_progress(state_dir: Path) -> dict[str, Any]:
    """Per-lesson records; an unreadable file counts as no progress rather than an error."""
    try:
        data = json.loads((state_dir / FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record(state_dir: Path, result: LessonResult) -> None:
    """Remember the latest result of a lesson checked against the student's own code."""
    data = load_progress(state_dir)
    previous = data.get(result.lesson, {})
    data[result.lesson] = {
        "status": "passed" if result.ok else "in progress",
        "earned": result.earned,
        "available": result.available,
        "failing": [c.id for c in result.checks if c.outcome == "failed"],
        "checked_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "passed_once": bool(previous.get("passed_once")) or result.ok,
    }
    write_atomically(state_dir / FILE, json.dumps(data, indent=2, sort_keys=True) + "\n")
