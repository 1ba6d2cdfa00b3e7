"""The check worker's process: `python -m checker.runner.start --request FILE` ('-': the path on stdin).

It reads the request on a thread as soon as it comes, while this thread imports pytest and the
SDK (most of a check run's start, see `checker.runner.worker`), so work every check of the lesson
waits for can begin before the checks do, on the core that would otherwise be idle: a self-check
of a lesson that `builds_package` starts that build here. Standard library only until the worker
is imported, like `checker.runner.prestart`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from checker.runner.request import Request


class EarlyWork:
    """Work every check of the lesson waits for, started before the checks, in a folder of its
    own that the checks' processes are told of. `close()` stops what is unfinished (only when no
    check wanted it) and removes the folder. Grading starts nothing early: there every step runs
    in the submission's sandbox, which its checks enter one by one."""

    def __init__(self, request: Request) -> None:
        self.folder: Path | None = None
        self.builder: subprocess.Popen[bytes] | None = None
        if request.sandbox is None and request.builds_package:
            from checker.checks.support.lesson08_build import BUILDS_VARIABLE, start_early

            self.folder = Path(tempfile.mkdtemp(prefix="course-builds-"))
            self.builder = start_early(self.folder / "lesson08-builds", Path(request.edition).parent)
            os.environ[BUILDS_VARIABLE] = str(self.folder)

    def close(self) -> None:
        if self.builder is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.builder.pid, signal.SIGKILL)
            self.builder.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request", required=True, help="the request file ('-': read its path from stdin)")
    args = parser.parse_args()
    arrived: list[tuple[Request, EarlyWork]] = []
    failed: list[BaseException] = []

    def receive() -> None:
        try:
            path = sys.stdin.readline().strip() if args.request == "-" else args.request
            if path:
                request = Request(**json.loads(Path(path).read_text()))
                arrived.append((request, EarlyWork(request)))
        except BaseException as exc:  # noqa: BLE001 - raised again below, where the runner sees it
            failed.append(exc)

    reader = threading.Thread(target=receive, daemon=True)
    reader.start()
    # Importing pytest, the SDK and then the lesson's checks makes some 200 000 objects that all
    # live as long as this process: the collections that run meanwhile free almost nothing and
    # walk them again and again (~0.12 s of every run). Back on just before the checks fork.
    gc.disable()
    from checker.runner.worker import grade_and_write  # pytest and the SDK: most of the start

    reader.join()
    if failed:
        raise failed[0]
    if not arrived:  # pre-started, then never given a request (a usage error, say)
        return
    request, early = arrived[0]
    try:
        grade_and_write(request)
    finally:
        early.close()


if __name__ == "__main__":
    main()
    # The result is on disk and every check's process is reaped: the interpreter's teardown of the
    # warmed-up heap (pytest, the SDK) would only make the student wait ~0.1 s longer for it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
