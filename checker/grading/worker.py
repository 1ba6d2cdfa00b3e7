"""The batch worker: grades a class, one submission at a time per slot, each in a sandbox of its own.

    python -m checker.grading.worker BATCH.json

The SDK, pytest and every lesson's checks are imported once, here (never student code), and each
submission is graded in a fork of this warm process:

    batch worker                      warm: SDK, pytest, checks (visible and hidden)
      submission fork   (per slot)    its private network, its sandbox and zygote, its group
        lesson fork                   one pytest session, so lessons share nothing
          check fork    (2 at once)   the judge: outside the sandbox, as the submission's user

Every step of a submission is caught: whatever it does, the batch carries on, and each lesson's
result file is written as soon as it is known, so an interrupted batch loses only what was in
flight (`course grade --resume` picks up from there).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from checker.grading.batch import UIDS_PER_SLOT
from checker.runner.request import Request
from checker.runner.results import LessonResult
from checker.runner.worker import _pytest_args, grade_and_write
from checker.sandbox import judgeview
from checker.sandbox.cgroups import Group
from checker.sandbox.forking import Slot, run_forked
from checker.sandbox.limits import Limits
from checker.sandbox.submission import Mode, SandboxPlan, SubmissionSandbox


def uid_for(blocks: list[int] | None, slot: Slot) -> int | None:
    """The submission's own user: from its slot's block, rotating, so neighbours never share one."""
    if blocks is None:
        return None
    return blocks[slot.index] + slot.serial % UIDS_PER_SLOT


def write_result(path: Path, result: LessonResult) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json()))
    os.replace(tmp, path)


def _failed_lessons(requests: list[Request], why: str) -> None:
    for request in requests:
        if not Path(request.out).is_file():
            write_result(Path(request.out), LessonResult(request.lesson, request.title, request.edition_name,
                                                         error=why))


def grade_submission(batch: dict[str, Any], submission: dict[str, Any], slot: Slot) -> dict[str, str]:
    """Everything about one submission, in its own fork: sandbox up, lessons, quiz, sandbox down."""
    requests = [Request(**json.loads(Path(p).read_text())) for p in submission["requests"]]
    plan = SandboxPlan.from_json(batch["plan"])
    plan.uid = uid_for(batch.get("uid_blocks"), slot)
    workdir = Path(submission["workdir"])
    if plan.uid is not None:
        os.chown(workdir, plan.uid, plan.uid)  # its checks may enter; other submissions' users may not
    if batch.get("groups"):
        group = Group([Path(d) for d in batch["groups"]], bool(batch.get("groups_v2"))).child(f"s{submission['index']}")
        plan.groups = [str(d) for d in group.dirs]
    limits = Limits(**batch["limits"])
    sandbox = SubmissionSandbox(plan, Path(submission["edition"]), workdir, limits)
    try:
        running = sandbox.start()
    except Exception as exc:  # noqa: BLE001 - this submission cannot be graded; the batch goes on
        sandbox.stop()
        _failed_lessons(requests, f"could not be graded: {exc}")
        return {}
    try:
        for request in requests:
            request.sandbox = asdict(running)
            budget = Limits(request.lesson_timeout + 30, 64 * 1024, request.output_mb)
            run_forked([(request.lesson, functools.partial(_lesson, request))], budget)
        _failed_lessons(requests, "grading did not finish for this lesson (it overran its time limit)")
    finally:
        sandbox.stop()
    return {}


def _lesson(request: Request) -> dict[str, str]:
    grade_and_write(request)
    return {}


def _preload_checks(requests: list[Request]) -> None:
    """Import every lesson's checks here, once, so each lesson fork finds them already loaded."""
    import pytest

    seen: set[str] = set()
    for request in requests:
        if request.checks_file not in seen:
            seen.add(request.checks_file)
            pytest.main([*_pytest_args(request), "--collect-only", "-q", "-p", "no:terminal"])


def grade_batch(batch: dict[str, Any]) -> None:
    """Every submission in `batch`, `parallel` at a time, each in a fork of this warm process."""
    submissions = [s for s in batch["submissions"] if s["requests"]]
    if not submissions:
        return
    requests = [[Request(**json.loads(Path(p).read_text())) for p in s["requests"]] for s in submissions]
    _preload_checks(max(requests, key=len))
    longest = max(sum(r.lesson_timeout + 30 for r in lessons) for lessons in requests)
    limits = Limits(wall_seconds=longest + 60, memory_mb=64 * 1024, output_mb=batch["limits"]["output_mb"])
    slot = [Slot(0, 0)]

    def remember(given: Slot) -> None:
        slot[0] = given

    def grade(submission: dict[str, Any]) -> dict[str, str]:
        return grade_submission(batch, submission, slot[0])  # the slot the fork was given

    run_forked([(s["index"], functools.partial(grade, s)) for s in submissions], limits,
               jobs=int(batch["parallel"]), prepare=remember)


def main() -> None:
    batch = json.loads(Path(sys.argv[1]).read_text())
    plan = SandboxPlan.from_json(batch["plan"])
    os.environ["PATH"] = os.pathsep.join([*plan.path_dirs, os.environ.get("PATH", "")])  # the real uv, not a shim
    if batch.get("view") and batch.get("uid_blocks"):  # checks run as unprivileged users: give them their view
        workdir = Path(sys.argv[1]).parent.parent
        judgeview.enter([Path(p) for p in plan.runtime], [Path(p) for p in batch["private"]], batch["uid_blocks"][0],
                        workdir / "view", keep=workdir if plan.mode is Mode.USERS else None)
    try:
        grade_batch(batch)
    except Exception:  # noqa: BLE001 - said once; the grader reports lessons without results
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
