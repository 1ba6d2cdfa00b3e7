"""Ports and processes a check starts: found free, waited for, logged, and always stopped.

A check that starts a program owns it: it must be gone when the check ends, passed or failed
(tests/test_no_leftovers.py). Programs started with `start_new_session=True` lead their own
process group, and `stop` ends the whole group, so a server's own children go with it. A
process's stderr goes to a `log_file`, read back with `log_text` for the failure message."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, TextIO, cast

import anyio

from checker.target import free_port, free_ports

__all__ = ["free_port", "free_ports", "log_file", "log_text", "port_open", "stop", "stop_all", "wait_for_port"]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts connections on `port` right now."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


async def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout: float = 10.0) -> bool:
    """Wait until `port` accepts connections; give up early when `process` has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return True
        if process is not None and process.poll() is not None:
            return False
        await anyio.sleep(0.02)
    return False


def _signal(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the process's group when it leads one (so its children go too), else the process."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)


def stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Ask `process` to stop (SIGTERM), and kill it if it has not within `grace` seconds."""
    if process.poll() is not None:
        return
    _signal(process, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(process, signal.SIGKILL)
        process.wait()


async def stop_all(processes: list[subprocess.Popen[bytes]], grace: float = 4.0) -> None:
    """`stop` for several processes at once, waiting without blocking the event loop."""
    for process in processes:
        if process.poll() is None:
            _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        while process.poll() is None and time.monotonic() < deadline:
            await anyio.sleep(0.02)
        if process.poll() is None:
            _signal(process, signal.SIGKILL)
            process.wait()


def log_file(folder: Path) -> TextIO:
    """A nameless file in `folder` for a process's stderr: read back through this handle (`log_text`),
    so nothing the process does can swap it for another file."""
    return cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=folder))


def log_text(log: IO[str]) -> str:
    """Everything written to `log` so far."""
    log.flush()
    log.seek(0)
    return log.read()
