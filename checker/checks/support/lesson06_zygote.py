"""Lesson 6's zygote: imports the SDK and uvicorn once, then forks each replica from there.

A replica is `uvicorn --factory <package>.scaling:build_app` in its own OS process. Importing
the SDK takes a CPU-second or more, so this small program imports the SDK and uvicorn once
(never the student's package) and forks each replica from there; every child then runs
uvicorn's own command line, exactly as `python -m uvicorn` does, and imports the student's
module itself. Each request is one JSON line (`env`, `argv`, `log`, `cwd`); the answer is the
forked replica's pid on a line of its own. How each replica ended is written beside its log
(`<log>.exit`).

Two ways to run it (by path: `python lesson06_zygote.py [FD]`):
- no argument: one check's own zygote (when grading, inside the submission's sandbox): requests
  on stdin, pids on stdout; when stdin closes, its replicas are stopped and it exits.
- FD: the lesson's zygote (a self-check): FD is the runner's listening Unix socket. It serves
  one connection per check: each line read is a replica to fork; when the check closes its side,
  that check's replicas are stopped, and the connection closes once they have gone. It ends
  when its own stdin closes.

It runs by path, not imported: nothing here is a check, and nothing imports it.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

# Imported here, once, so that every forked replica starts with them loaded.
import httpx2  # noqa: F401 - preloaded for the replicas
import mcp.server.mcpserver  # noqa: F401 - preloaded for the replicas
import mcp.server.streamable_http_manager  # noqa: F401 - preloaded for the replicas
import mcp.server.subscriptions  # noqa: F401 - preloaded for the replicas
import starlette.applications  # noqa: F401 - preloaded for the replicas
from uvicorn.main import main as uvicorn_main

logs: dict[int, str] = {}  # replica pid -> its log file


def reap(*_: Any) -> None:
    """Collect every replica that has ended, and record its exit code beside its log."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in logs:
            with open(logs.pop(pid) + ".exit", "w") as f:
                f.write(str(os.waitstatus_to_exitcode(status)))


def stop(pids: list[int]) -> None:
    """SIGTERM these replicas, and SIGKILL whichever has not ended a second later."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 1
    while any(pid in logs for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
        reap()
    for pid in pids:
        if pid in logs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def fork(spec: dict[str, Any], reply: Callable[[bytes], object], keep: list[int]) -> int:
    """Fork one replica running uvicorn's command line with `spec`; `reply` gets its pid."""
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            os.close(fd)
        os.chdir(spec.get("cwd") or ".")
        os.environ.clear()
        os.environ.update(spec["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(spec["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        sys.argv = ["uvicorn", *spec["argv"]]
        code = 1
        try:
            uvicorn_main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - whatever ends the replica goes to its log
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    logs[pid] = spec["log"]
    reply(f"{pid}\n".encode())
    return pid


def serve_stdin() -> None:
    """One check's own zygote: its requests on stdin, the pids on stdout."""

    def reply(data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    pids = [fork(json.loads(line), reply, []) for line in sys.stdin]
    stop(pids)


def serve_socket(fd: int) -> None:
    """The lesson's zygote: the runner's listening socket is `fd`; it ends when its stdin closes."""
    listener = socket.socket(fileno=fd)
    owned: dict[socket.socket, list[int]] = {}  # connection -> the pids of the replicas it asked for
    buffers: dict[socket.socket, bytes] = {}
    while True:
        try:
            ready, _, _ = select.select([sys.stdin, listener, *owned], [], [])
        except InterruptedError:
            continue
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 1):
            break
        if listener in ready:
            conn, _ = listener.accept()
            owned[conn], buffers[conn] = [], b""
        for conn in [c for c in ready if c in owned]:
            data = conn.recv(65536)
            if not data:
                stop(owned.pop(conn))
                buffers.pop(conn)
                conn.close()
                continue
            buffers[conn] += data
            while b"\n" in buffers[conn]:
                line, buffers[conn] = buffers[conn].split(b"\n", 1)
                keep = [listener.fileno(), *(c.fileno() for c in owned)]
                owned[conn].append(fork(json.loads(line), conn.sendall, keep))
    stop([pid for pids in owned.values() for pid in pids])


def main() -> None:
    signal.signal(signal.SIGCHLD, reap)
    if len(sys.argv) < 2:
        serve_stdin()
    else:
        serve_socket(int(sys.argv[1]))
    sys.exit(0)


if __name__ == "__main__":
    # Run by path, Python put this file's folder first on sys.path. A replica must import what
    # `python -m uvicorn` would in its working folder, so the working folder takes its place.
    sys.path[0] = ""
    main()
