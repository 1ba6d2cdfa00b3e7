"""`course open`: JupyterLab on a lesson notebook, running in the course's own environment.

`jupyter lab` started by hand is a common source of "ModuleNotFoundError: mcp": a Jupyter from
another environment, or a kernel that is not this one. This starts JupyterLab with the Python
that runs `course` (so the kernel imports the SDK, the checker and the student's package),
rooted at the course folder, with `COURSE_ROOT` set for the notebook's check cell. The token
and port are chosen here, so the URL can be printed before the server is even up.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from checker.registry import Course, CourseError, Lesson

DEFAULT_PORT = 8888


def _port_free(port: int, host: str) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str = "127.0.0.1") -> int:
    """Jupyter's usual 8888 when it is free, otherwise any free port."""
    if _port_free(DEFAULT_PORT, host):
        return DEFAULT_PORT
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Lab:
    """A JupyterLab server started for one notebook; `stop()` ends it and its kernels."""

    def __init__(self, course: Course, lesson: Lesson, *, port: int = 0, ip: str = "127.0.0.1",
                 extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        notebook = course.root / lesson.notebook
        if not notebook.is_file():
            raise CourseError(f"{lesson.id} has no notebook yet ({lesson.notebook} does not exist)")
        self.port = port or pick_port(ip)
        self.token = secrets.token_hex(24)
        host = "127.0.0.1" if ip in ("0.0.0.0", "::", "") else ip
        self.base = f"http://{host}:{self.port}"
        self.url = f"{self.base}/lab/tree/{quote(lesson.notebook)}?token={self.token}"
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser",
               f"--ServerApp.ip={ip}", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
               f"--ServerApp.root_dir={course.root}", f"--IdentityProvider.token={self.token}",
               "--log-level=WARN", *(["--allow-root"] if os.geteuid() == 0 else []), *extra_args]
        environ = dict(os.environ if env is None else env, COURSE_ROOT=str(course.root))
        self.proc = subprocess.Popen(cmd, cwd=course.root, env=environ, stdin=subprocess.DEVNULL,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> bool:
        """True once the server answers; False if it exited or stayed silent for `timeout` s."""
        deadline = time.monotonic() + timeout
        status = f"{self.base}/api/status?token={self.token}"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(status, timeout=2) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        """SIGTERM lets Jupyter shut its kernels down; anything of it still running is then killed.

        Kernels run in sessions of their own, so they are found through the process tree.
        """
        from checker.runner.warm import descendants

        tree = descendants(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        for pid in (self.proc.pid, *tree):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
