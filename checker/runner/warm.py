"""The warm worker behind `course watch`: everything imported once, every lesson run in a fresh fork.

    python -m checker.runner.warm      (JSON lines: {"request": FILE} in, {"done": FILE} out)

Why: a cold `course check` spends most of its time before the first check runs — starting
Python, importing the SDK and pytest, configuring pytest and compiling the checks. `watch`
re-checks on every save, so it keeps one process in which all of that is already done and
forks it for each run. Isolation is exactly that of `course check`: the warm process runs only
SDK-only warm-ups and imports the lesson's checks (never student code); the fork grades the
lesson, and student code is imported only in the per-check forks below it (`worker`, `sandbox`).
Whatever a run does, the next one starts again from the same clean warm state.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from checker.registry import Course, CourseError, Lesson
from checker.runner.request import Request
from checker.runner.results import LessonResult

STARTUP_TIMEOUT = 120.0  # seconds the warm worker may take to import and warm up (a loaded laptop)


# --- the server side: runs in the warm process -------------------------------------------------


_http_warmed = False  # inherited by forks: a process warms up HTTP once


def warm_http() -> None:
    """One Streamable-HTTP round trip per protocol era on an SDK-only server, on loopback.

    `checker.target` already warms the in-memory path; an HTTP check would otherwise import
    uvicorn's protocol modules, the HTTP client stack and the SSE machinery in its own fork,
    on every run.
    """
    global _http_warmed
    if _http_warmed:
        return
    _http_warmed = True
    import anyio
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    from checker.target import Target

    async def echo(text: str) -> str:
        return text

    async def round_trip() -> None:
        server = MCPServer("warm-up-http", log_level="WARNING")
        server.tool()(echo)
        # Not graceful: draining a throwaway server would only add uvicorn's 0.1 s shutdown tick.
        target = Target(Path(tempfile.gettempdir()), "none")
        async with target.http(server.streamable_http_app(), graceful=False) as url:
            # Quiet from here (uvicorn configured its loggers on start): the lifespan that the
            # abrupt stop cancels is otherwise logged as an error.
            quiet.disabled = True
            for mode in ("auto", "legacy"):
                async with Client(url, mode=mode) as client:
                    await client.call_tool("echo", {"text": "hi"})

    quiet = logging.getLogger("uvicorn.error")
    try:
        anyio.run(round_trip)
    finally:
        quiet.disabled = False


_loaded: dict[str, float] = {}  # checks file -> mtime when it was imported here


def _preload_checks(request: Request) -> None:
    """Import the lesson's checks here, once, so each fork reuses them instead of importing them again.

    A collect-only pytest session imports the checks module exactly as the real run will
    (same arguments, same module name), so the fork's pytest finds it already in sys.modules.
    Checks never import student code at module level (docs/authoring.md), so this is safe.
    A checks file edited since (by a lesson author) is imported afresh.
    """
    import pytest

    from checker.runner.worker import _pytest_args

    path = request.checks_file
    folder = Path(path).parent  # the checks and the support code they import (kit/, support/)
    stamp = max(p.stat().st_mtime for p in (Path(path), *map(Path, request.extra_checks), *folder.rglob("*.py")))
    if _loaded.get(path) == stamp:
        return
    for name in [*(Path(p).stem for p in (path, *request.extra_checks))]:
        sys.modules.pop(name, None)
    for name in [n for n in sys.modules if n.startswith("checker.checks.")]:
        del sys.modules[name]
    pytest.main([*_pytest_args(request), "--collect-only"])
    _loaded[path] = stamp
    gc.freeze()  # what is loaded now is shared with the forks: keep their collections off it


def _grade_in_fork(request: Request) -> None:
    """Grade in a child of the warm process; whatever the run does, this process stays clean."""
    from checker.runner.worker import grade_and_write

    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(Path(request.out).parent)
            grade_and_write(request)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def serve(requests: IO[str], replies: IO[str]) -> None:
    """Warm up, say so, then grade each request line until the input closes."""
    import checker.target  # noqa: F401 - imports pytest and the SDK and warms the in-memory path

    warm_http()
    gc.freeze()
    replies.write(json.dumps({"ready": True}) + "\n")
    replies.flush()
    for line in requests:
        file = json.loads(line)["request"]
        request = Request(**json.loads(Path(file).read_text()))
        with contextlib.suppress(Exception):  # the fork collects again and reports the problem properly
            _preload_checks(request)
        _grade_in_fork(request)
        replies.write(json.dumps({"done": file}) + "\n")
        replies.flush()


def main() -> None:
    """Speak the protocol on the real stdout; anything else printed goes to stderr."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin, replies)


# --- the client side: runs in `course watch` ----------------------------------------------------


class WorkerDied(Exception):
    """The warm worker stopped or hung; the next run starts a new one."""


class WarmWorker:
    """A warm worker process for one course; `check()` a lesson as often as needed, then `close()`."""

    def __init__(self, course: Course) -> None:
        self.course = course
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._log: IO[bytes] | None = None

    def __enter__(self) -> WarmWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the worker and wait until it has imported and warmed everything."""
        from checker.runner.prestart import worker_env

        self.close()
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the worker's stderr for its whole life; close() closes it
        self._proc = subprocess.Popen([sys.executable, "-m", "checker.runner.warm"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._log, env=worker_env(),
                                      cwd=tempfile.gettempdir(), start_new_session=True)
        self._buffer = b""
        self._reply(STARTUP_TIMEOUT)

    def check(self, lesson: Lesson, against: str = "starter") -> LessonResult:
        """Run `lesson`'s checks in a fresh fork of the warm process (starting it if needed)."""
        from checker.runner.lesson import build_request, edition_path, save_timings

        if not lesson.available:
            raise CourseError(f"{lesson.id} ({lesson.title}) is coming soon: it has no checks yet")
        edition, edition_name = edition_path(self.course, against)
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="course-watch-") as tmp:
            request = build_request(self.course, lesson, edition, edition_name, Path(tmp) / "result.json")
            request_file = Path(tmp) / "request.json"
            request_file.write_text(json.dumps(asdict(request)))
            error = ""
            for _ in range(2):  # a worker that died (killed, out of memory) gets one fresh successor
                try:
                    if not self.running:
                        self.start()
                    assert self._proc is not None and self._proc.stdin is not None
                    self._proc.stdin.write((json.dumps({"request": str(request_file)}) + "\n").encode())
                    self._proc.stdin.flush()
                    self._reply(self.course.lesson_timeout + 30)
                    break
                except (WorkerDied, BrokenPipeError) as exc:
                    error = str(exc) or "the warm check runner stopped"
                    self.close()
            out = Path(request.out)
            if out.is_file():
                result = LessonResult.from_json(json.loads(out.read_text()))
            else:
                result = LessonResult(lesson=lesson.id, title=lesson.title, edition=edition_name,
                                      error=error or "the check runner produced no result")
        result.duration = round(time.monotonic() - started, 3)
        if result.checks and not result.error:
            save_timings(self.course.state_dir, lesson.id, result.checks)
        return result

    def _reply(self, timeout: float) -> dict[str, Any]:
        """The worker's next line, or WorkerDied if it exits or stays silent past `timeout`."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerDied(f"the check runner did not answer within {timeout:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise WorkerDied(f"the check runner stopped: {self._log_tail()}")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def _log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-1500:].strip()

    def close(self) -> None:
        """Stop the worker and everything it started (it leads its own process group)."""
        if self._proc is not None:
            # A run in progress has per-check children in process groups of their own: find the
            # whole tree first (killing reparents it), then end every group in it.
            for pid in [self._proc.pid, *descendants(self._proc.pid)]:
                for kill, target in ((os.killpg, pid), (os.kill, pid)):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(target, signal.SIGKILL)
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                # A request left in the buffer of a dead worker's pipe cannot be flushed; the
                # stream is closed all the same (BufferedWriter closes even when flush fails).
                if stream is not None:
                    with contextlib.suppress(BrokenPipeError):
                        stream.close()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def descendants(root: int) -> list[int]:
    """Every process below `root` (Linux /proc; elsewhere none, and process groups must do)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


if __name__ == "__main__":
    main()
