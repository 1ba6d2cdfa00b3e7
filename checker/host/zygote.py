"""The zygote: one warm process per submission that forks a fresh host or spawner for every request.

    python -m checker.host.zygote LISTEN_FD WALL_SECONDS MEMORY_MB OUTPUT_MB

It imports and warms up the SDK (never student code, never a check) once, so each fork starts
ready in milliseconds. When an instructor grades, it runs inside the submission's sandbox, so
every process it forks sees that submission and nothing else.

One connection, one child. The child, not the zygote, reads the request, so a slow or broken
request stalls only itself. The zygote keeps an eye on each connection: when the check at the
other end hangs up (it finished, failed or was killed), the child's whole process group is
killed, whatever student code did to stay alive.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from checker import wire
from checker.sandbox.limits import Limits, apply_limits

MAX_CHILDREN = 64          # alive at once: a runaway check cannot fork the machine through us
REQUEST_SECONDS = 5.0      # one deadline for the whole first request, however it trickles in
MAX_FDS = 3                # file descriptors a request may hand over (a spawned command's stdio)
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4
_libc = ctypes.CDLL(None, use_errno=True)



def read_request(conn: socket.socket) -> tuple[Any, list[int]]:
    """The first frame on a new connection and the descriptors sent with it, within one deadline."""
    deadline = time.monotonic() + REQUEST_SECONDS
    data = bytearray()
    fds: list[int] = []
    while len(data) < 4 or len(data) < 4 + wire.frame_length(bytes(data[:4])):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        conn.settimeout(left)
        chunk, more, _, _ = socket.recv_fds(conn, 1 << 16, MAX_FDS)
        fds += more
        if not chunk:
            raise ConnectionError("the connection closed before the request was complete")
        data += chunk
    conn.settimeout(None)
    return wire.parse(bytes(data[4:])), fds


def _child(conn: socket.socket, limits: Limits) -> None:
    """In the forked child: read the request, then be a host or a spawner. Never returns."""
    code = 0
    try:
        # Its own group before it starts anything. The zygote sets it too, but only once it runs
        # again after the fork: on a loaded machine a spawner could already have started its
        # command in the zygote's group, where killing the spawner's group would miss it.
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        _libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)  # the zygote is private; the child is the check's
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        request, fds = read_request(conn)
        if type(request) is not dict:
            raise wire.WireError("a request is an object")
        apply_limits(limits)
        if request.get("kind") == "spawn":
            from checker.host import spawner

            code = spawner.run(conn, request, fds)
        else:
            _become_host(conn, request, fds)
    except BaseException:  # noqa: BLE001 - the check sees a closed connection and says so
        code = 70
    finally:
        os._exit(code)


def _become_host(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """Route stdio, move into the check's scratch folder, put the edition first on the path, serve."""
    from checker.host import host

    devnull = os.open(os.devnull, os.O_RDWR)
    output = fds[0] if fds else devnull
    os.dup2(devnull, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    for fd in {devnull, *fds}:
        os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - the process's own streams
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    edition, package = str(request["edition"]), str(request["package"])
    scratch = str(request.get("cwd") or "/tmp")
    os.chdir(scratch)
    os.environ.update(HOME=scratch, PYTHONPATH=edition, COURSE_EDITION=edition)
    sys.path.insert(0, edition)
    sys.dont_write_bytecode = True  # leave no __pycache__ in the student's tree
    conn.setblocking(True)
    conn.sendall(wire.frame({"pid": os.getpid()}))
    host.serve(conn, package, edition)


def serve(listener: socket.socket, limits: Limits) -> None:
    """Fork a child for every connection; kill its group when the check at the other end hangs up."""
    from checker.host.warmup import warm_up

    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # student code, same user, may not trace or read us
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # die with whoever started us
    warm_up()
    import checker.host.host  # noqa: F401 - so a host starts with it imported
    import checker.host.spawner  # noqa: F401
    gc.collect()
    gc.freeze()  # children's collections then skip (and so do not copy) the warmed-up heap
    poller = select.poll()
    poller.register(listener, select.POLLIN)
    woken, waker = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)  # a child's end wakes the loop
    signal.set_wakeup_fd(waker)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    poller.register(woken, select.POLLIN)
    watched: dict[int, tuple[socket.socket, int]] = {}  # connection fd -> (connection, child pid)
    print("ready", flush=True)
    while True:
        for fd, events in poller.poll():
            if fd == listener.fileno():
                _accept(listener, limits, poller, watched, (woken, waker))
            elif fd == woken:
                os.read(woken, 4096)
            elif events & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                _forget(fd, poller, watched, kill=True)
        _reap(poller, watched)


def _accept(listener: socket.socket, limits: Limits, poller: select.poll,
            watched: dict[int, tuple[socket.socket, int]], own: tuple[int, ...]) -> None:
    conn, _ = listener.accept()
    if len(watched) >= MAX_CHILDREN:
        conn.close()
        return
    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for fd in own:
            os.close(fd)
        listener.close()
        for other, _ in watched.values():
            other.close()
        _child(conn, limits)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # its own group, so everything it starts can be killed with it
    watched[conn.fileno()] = (conn, pid)
    poller.register(conn, select.POLLRDHUP)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _forget(fd: int, poller: select.poll, watched: dict[int, tuple[socket.socket, int]], kill: bool) -> None:
    """Stop watching a connection and close the zygote's copy of it (so the check sees the child end)."""
    conn, pid = watched.pop(fd)
    poller.unregister(fd)
    conn.close()
    if kill:
        _kill_group(pid)


def _reap(poller: select.poll, watched: dict[int, tuple[socket.socket, int]]) -> None:
    """Collect every child that has ended, end what it left behind in its group, and let go of its
    connection: with the zygote's copy closed too, the check at the other end sees the child gone
    at once instead of waiting out its time limit.

    The group is killed while it still exists (its number cannot go to a new process until then),
    so nothing here can ever kill a stranger.
    """
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _kill_group(pid)
        for fd, (_, child) in list(watched.items()):
            if child == pid:
                _forget(fd, poller, watched, kill=False)


def main() -> None:
    listen_fd, wall, memory_mb, output_mb = sys.argv[1:]
    listener = socket.socket(fileno=int(listen_fd))
    os.chdir("/")  # nothing of anyone's on the import path
    serve(listener, Limits(float(wall), int(memory_mb), int(output_mb)))


if __name__ == "__main__":
    main()
