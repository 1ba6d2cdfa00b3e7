"""Run a function in a forked child with wall-time, memory and output limits.

Why fork: the worker process has already paid for importing the SDK and pytest (most of a
check's cost), and a fork inherits that for free. Each check therefore gets a fresh process —
a student's infinite loop, `sys.exit`, `os._exit`, crash or output flood ends that child and
costs that one check — while the parent, which never imports student code, keeps the score.
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from checker.sandbox.limits import Limits, apply_limits

OUTPUT_TAIL = 1200  # characters of a child's own output shown with its failure
MIN_SHARE = 0.25  # the least share of a core a task is counted for, however idle it was last time
MAX_WAITING = 2   # with `busy`, at most this many forks per job run at once (each holds memory)


@dataclass
class ChildOutcome:
    """What came back from a child: its JSON payload, or why there was none."""

    payload: dict[str, str] | None
    problem: str  # "" when the child reported normally
    output: str   # the tail of what the child printed
    duration: float
    cpu: float = 0.0  # CPU seconds of the child and of the processes it waited for


@dataclass
class Slot:
    """Which of the `jobs` parallel places a child runs in, and how many ran there before it."""

    index: int
    serial: int


@dataclass
class _Running:
    key: Any
    slot: int
    pid: int
    pipe: int
    capture: Any
    started: float
    buffer: bytearray


def encode_payload(payload: dict[str, str]) -> bytes:
    """A child's result as NUL-separated UTF-8 fields.

    Deliberately not json: student code shares the child process and could patch a Python-level
    serializer; str.encode and bytes.join are built into the interpreter.
    """
    fields: list[str] = []
    for key, value in payload.items():
        fields += [str(key), str(value).replace("\0", " ")]
    return b"\0".join(field.encode("utf-8", "replace") for field in fields)


def decode_payload(data: bytes) -> dict[str, str]:
    fields = data.decode("utf-8", "replace").split("\0")
    if len(fields) % 2:
        raise ValueError("odd number of fields")
    return dict(zip(fields[::2], fields[1::2], strict=True))


Prepare = Callable[[Slot], None]


def _child(fn: Callable[[], dict[str, str]], pipe: int, capture_fd: int, limits: Limits,
           prepare: Prepare | None, slot: Slot) -> None:
    """Runs in the forked child and never returns."""
    code = 0
    try:
        os.setpgid(0, 0)  # own process group: anything the check spawns is killed with it
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(capture_fd, 1)
        os.dup2(capture_fd, 2)
        apply_limits(limits)
        if prepare is not None:
            prepare(slot)
        sys.dont_write_bytecode = True  # student code is imported here: leave no __pycache__ in their tree
        data = encode_payload(fn())
        view = memoryview(data)
        while view:
            view = view[os.write(pipe, view):]
    except BaseException:  # noqa: BLE001 - the parent reports a child that sent nothing
        code = 70
    finally:
        os._exit(code)


def _tail(capture: Any) -> str:
    capture.seek(0, os.SEEK_END)
    size = capture.tell()
    capture.seek(max(0, size - OUTPUT_TAIL * 4))
    text = capture.read().decode("utf-8", "replace")
    return text[-OUTPUT_TAIL:]


def _reap(run: _Running) -> tuple[int, float]:
    """The child's exit status and the CPU seconds it used."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.pid, signal.SIGKILL)  # leftovers: servers or processes the check started
    _, status, usage = os.wait4(run.pid, 0)
    return status, usage.ru_utime + usage.ru_stime


def _describe_exit(status: int, wall: float, timed_out: bool) -> str:
    if timed_out:
        return (f"did not finish within {wall:g} s: look for an infinite loop, or a call that waits "
                f"for something that never comes")
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            return "used more CPU time than allowed: look for an infinite loop"
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        return f"the process running this check was killed by {name} (out of memory, or a crash)"
    code = os.WEXITSTATUS(status)
    return (f"the process running this check ended abruptly with exit code {code}: "
            f"does the code call sys.exit() or os._exit()?")


def run_forked(tasks: Iterable[tuple[Any, Callable[[], dict[str, str]]]], limits: Limits,
               jobs: int = 1, deadline: float | None = None, prepare: Prepare | None = None,
               cleanup: Callable[[int], None] | None = None,
               busy: Mapping[Any, float] | None = None,
               stop_when: Callable[[Any, ChildOutcome], bool] | None = None) -> dict[Any, ChildOutcome]:
    """Run each `(key, fn)` in its own fork, at most `jobs` at a time; return outcomes by key.

    `busy` maps a key to the share of a core its task keeps busy (its CPU time over its wall
    time, as measured last time; 1 when unknown). With it, `jobs` counts cores' worth of work
    rather than processes: a task that mostly waits (for a timeout it provokes, a job it
    cancels) takes only its share, so others run beside it, up to `jobs` * `MAX_WAITING` forks.
    `deadline` (a `time.monotonic()` value) bounds the whole batch: tasks not started by then
    are reported as not run. In each child, `prepare(slot)` runs first (a sandbox to enter, a
    user to become); after a child is reaped, `cleanup(pid)` runs here (what it left to remove).
    `stop_when(key, outcome)` is asked as each task finishes: True ends the batch there (the
    running children are killed, no other task starts, and only finished tasks are reported).
    """
    queue = list(tasks)
    running: dict[int, _Running] = {}
    jobs = max(1, jobs)

    def share(key: Any) -> float:
        return 1.0 if busy is None else min(1.0, max(MIN_SHARE, busy.get(key, 1.0)))

    def room_for(key: Any) -> bool:
        if not running:
            return True
        if busy is None or len(running) >= jobs * MAX_WAITING:
            return len(running) < jobs
        return sum(share(r.key) for r in running.values()) + share(key) <= jobs + 1e-9
    # Move every object the parent already has out of the collector's sight: otherwise the first
    # collection in each child walks (and so copies, page by page) the whole warmed-up SDK. No full
    # collection first: it would walk that heap once more (~50 ms before the first fork of every
    # run) to free the little garbage importing left, which then only lives as long as this process.
    gc.freeze()
    outcomes: dict[Any, ChildOutcome] = {}

    def finish(run: _Running, timed_out: bool) -> None:
        os.close(run.pipe)
        status, cpu = _reap(run)
        if cleanup is not None:
            cleanup(run.pid)
        elapsed = time.monotonic() - run.started
        payload = None
        problem = ""
        if not timed_out and run.buffer:
            try:
                payload = decode_payload(bytes(run.buffer))
            except ValueError:
                problem = "the check's process sent back an unreadable result"
        if payload is None and not problem:
            problem = _describe_exit(status, limits.wall_seconds, timed_out)
        outcomes[run.key] = ChildOutcome(payload, problem, _tail(run.capture), elapsed, cpu)
        run.capture.close()
        free_slots.append(run.slot)
        free_slots.sort(reverse=True)  # the lowest free place first: slot numbers stay small

    free_slots = list(range(jobs))[::-1]
    started_in: dict[int, int] = {}
    while queue or running:
        while queue and room_for(queue[0][0]):
            key, fn = queue.pop(0)
            if deadline is not None and time.monotonic() >= deadline:
                outcomes[key] = ChildOutcome(None, "not run: the lesson's time limit was reached", "", 0.0)
                continue
            read_end, write_end = os.pipe()
            capture = tempfile.TemporaryFile()  # noqa: SIM115 - the child's output, closed when it is finished
            slot = free_slots.pop() if free_slots else len(running)  # every lower place is taken
            serial = started_in.get(slot, 0)
            started_in[slot] = serial + 1
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                _child(fn, write_end, capture.fileno(), limits, prepare, Slot(slot, serial))
            os.close(write_end)
            running[read_end] = _Running(key, slot, pid, read_end, capture, time.monotonic(), bytearray())
        if not running:
            continue
        now = time.monotonic()
        nearest = min(r.started + limits.wall_seconds for r in running.values())
        ready, _, _ = select.select(list(running), [], [], max(0.0, nearest - now))
        ended = []
        for fd in ready:
            run = running[fd]
            chunk = os.read(fd, 65536)
            if chunk:
                run.buffer.extend(chunk)
            else:
                ended.append((running.pop(fd), False))
        now = time.monotonic()
        for fd in [fd for fd, r in running.items() if now - r.started >= limits.wall_seconds]:
            ended.append((running.pop(fd), True))
        for run, timed_out in ended:
            finish(run, timed_out)
        if stop_when is not None and any([stop_when(run.key, outcomes[run.key]) for run, _ in ended]):
            for fd in list(running):
                abandoned = running.pop(fd)
                finish(abandoned, timed_out=False)  # killed, reaped and cleaned up like any other
                del outcomes[abandoned.key]
            return outcomes
    return outcomes
