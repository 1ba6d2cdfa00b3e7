"""The grade store: `grades/store/<student>.json`, one record per student, the gradebook's one source.

`course grade` writes each student's record the moment their last lesson is in (so a crash loses
only the submission in flight), merging it over what the store already holds: regrading one
student or one lesson replaces just that, and every export is then rebuilt from the whole store.
`grades/run.json` names the run that is writing, so `--resume` knows what it has already done.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from checker.grading.record import SubmissionResult
from checker.registry import CourseError

STORE_DIR = "store"
RUN_FILE = "run.json"


class GradeStore:
    """The records under one folder (`grades/store/`), read and written one student at a time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, student: str) -> Path:
        return self.folder / f"{student}.json"

    def get(self, student: str) -> SubmissionResult | None:
        """The stored record, or None (an unreadable one counts as absent: that student is graded again)."""
        try:
            return SubmissionResult.from_json(json.loads(self._path(student).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, result: SubmissionResult) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._path(result.id)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(result.to_json()), encoding="utf-8")
        os.replace(tmp, target)

    def records(self) -> list[SubmissionResult]:
        """Every readable record, by student id (the order every export uses)."""
        found = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            record = self.get(path.stem)
            if record is not None and record.id == path.stem:
                found.append(record)
        return sorted(found, key=lambda record: record.id)

    def ids(self) -> set[str]:
        return {record.id for record in self.records()}


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def begin_run(out: Path, lessons: list[str], *, resume: bool) -> str:
    """The id of the run about to write into `out`: a new one, or with `resume` the interrupted one's.

    Lessons a student already has from that run are not graded again. Resuming where no run
    was ever started is a usage error.
    """
    path = out / RUN_FILE
    if resume:
        try:
            run = json.loads(path.read_text(encoding="utf-8"))["run"]
        except (OSError, ValueError, KeyError, TypeError):
            raise CourseError(
                f"nothing to resume in {out}: no run was started there (grade without --resume)"
            ) from None
        return str(run)
    run = new_run_id()
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"run": run, "lessons": lessons, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}),
                    encoding="utf-8")
    return run
