"""Run one command where student code runs, for a check outside: its stdio, its signals, its exit.

A check that starts a subprocess of student code (a stdio server, a replica, a build) runs it
through the relay (`checker.sandbox.relay`), which asks the zygote for a spawner: a fresh fork
that never imports student code. The relay hands over its own stdin, stdout and stderr; the
spawner starts the command on them, passes on every signal the relay gets, and reports how the
command ended. The command shares the spawner's process group, so whoever ends the spawner's
group (the spawner itself when the command has ended or the relay has gone away, or the zygote
when the check hangs up) ends the command and whatever it started along with it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
from typing import Any

from checker import wire
from checker.host import warmstart


def run(conn: socket.socket, request: dict[str, Any], fds: list[int]) -> int:
    """Start the command on the relay's file descriptors and look after it; returns when it ended."""
    argv = [str(a) for a in request.get("argv", [])]
    env = {str(k): str(v) for k, v in dict(request.get("env") or {}).items()}
    cwd = str(request.get("cwd") or "/")
    if not argv or len(fds) != 3:
        conn.sendall(wire.frame({"error": "a spawn request needs a command and three file descriptors"}))
        return 2
    conn.sendall(wire.frame({"pid": os.getpid()}))
    go = wire.recv_frame(conn)  # the relay first moves this process into the check's resource limits
    if type(go) is not dict or not go.get("go"):
        return 2
    try:
        pid = _start(argv, env, cwd, fds, conn)
    except OSError as exc:  # said on the command's own stderr, as a shell would, with a shell's exit code
        os.write(fds[2], f"{argv[0]}: {exc.strerror or exc}\n".encode())
        conn.sendall(wire.frame({"exit": 127}))
        return 0
    for fd in fds:
        os.close(fd)
    ended = _look_after(conn, pid)
    if ended is not None:
        status, cpu = ended
        how = {"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.waitstatus_to_exitcode(status)}
        with contextlib.suppress(OSError):
            conn.sendall(wire.frame(how | {"cpu": round(cpu, 3)}))
    os.killpg(0, signal.SIGKILL)  # what the command left behind, and this spawner with it
    return 0


def _start(argv: list[str], env: dict[str, str], cwd: str, fds: list[int], conn: socket.socket) -> int:
    """fork + exec `argv` with the relay's stdio, in this spawner's process group; a `python -m`
    command or a virtual environment's console script runs in the fork itself, already warm,
    without the exec (`checker.host.warmstart`)."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.chdir(cwd)
            warm = warmstart.plan(argv, env)
            if warm is not None:
                conn.close()  # the command must not hold the spawner's line to the relay
                for fd in {*fds, ready_w} - {0, 1, 2}:
                    os.close(fd)  # ready_w closing says "started", as a successful exec does
                warmstart.become(warm, env)
            os.set_inheritable(ready_w, False)
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            os.write(ready_w, str(exc.errno).encode())
        finally:
            os._exit(127)
    os.close(ready_w)
    with os.fdopen(ready_r, "rb") as ready:
        failed = ready.read()  # empty once exec succeeded (the pipe closes on exec)
    if failed:
        os.waitpid(pid, 0)
        raise OSError(int(failed), os.strerror(int(failed)))
    return pid


def _look_after(conn: socket.socket, pid: int) -> tuple[int, float] | None:
    """Pass on signals from the relay until the command ends (its status and CPU seconds), or the
    relay goes away (None)."""
    while True:
        ready, _, _ = select.select([conn], [], [], 0.05)
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage.ru_utime + usage.ru_stime
        if not ready:
            continue
        try:
            message = wire.recv_frame(conn)
        except (OSError, wire.WireError):
            return None
        number = message.get("signal") if type(message) is dict else None
        if type(number) is int and 0 < number < signal.NSIG:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)  # as Popen.send_signal would: to the command, not its group

