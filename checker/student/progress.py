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
BACKUP = "progress.backup.json"  # the same records, written after each good save: what a broken file falls back to


def _read(path: Path) -> dict[str, Any] | None:
    """The records in `path`, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def load_progress(state_dir: Path) -> dict[str, Any]:
    """Per-lesson records. A broken progress file (hand-edited, truncated by a full disk) falls back
    to the backup beside it, so passed lessons are not forgotten; with neither, no progress yet."""
    data = _read(state_dir / FILE)
    if data is None:
        data = _read(state_dir / BACKUP)
    return data or {}


def recovery_notice(state_dir: Path) -> str:
    """One line for the student when the progress file is broken (empty when all is well)."""
    main = state_dir / FILE
    if not main.exists() or _read(main) is not None:
        return ""
    if _read(state_dir / BACKUP) is not None:
        return (f"{main} could not be read; using its backup ({BACKUP}). The broken file is kept as "
                "progress.broken-<time>.json at the next check.")
    return f"{main} could not be read and has no backup: progress starts again (the broken file is kept)."


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
    """Remember the latest result of a lesson checked against the student's own code.

    Written twice, each atomically: the file, then its backup. A file that cannot be read is moved
    aside first (never overwritten: it is the student's), and its records come from the backup.
    """
    main = state_dir / FILE
    if main.exists() and _read(main) is None:
        os.replace(main, state_dir / f"progress.broken-{time.strftime('%Y%m%d-%H%M%S')}.json")
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
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    write_atomically(main, text)
    write_atomically(state_dir / BACKUP, text)
