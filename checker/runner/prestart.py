"""Start the check worker before the CLI has imported anything else (`checker.cli.entry`).

Only the standard library's process tools are imported here: every millisecond before the
worker starts is a millisecond on every `course check`.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile


def worker_env() -> dict[str, str]:
    """The worker's environment: this one, without a PYTHONPATH that could shadow the course's modules."""
    env = dict(os.environ)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"       # load only the plugins the checks need: faster
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONPATH", None)
    return env


_prestarted: subprocess.Popen[bytes] | None = None


def prestart_worker() -> None:
    """Start a worker now, before the CLI has even parsed its arguments.

    It imports pytest and the SDK (most of a check's cost) while the CLI imports Typer and
    reads the registry; `LessonRun` then hands it the request on stdin. A worker that is never
    given one (a usage error, say) sees end-of-file and exits, or is killed at exit.
    """
    global _prestarted
    _prestarted = subprocess.Popen([sys.executable, "-m", "checker.runner.start", "--request", "-"],
                                   cwd=tempfile.gettempdir(), env=worker_env(), stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    atexit.register(_discard_prestarted)


def _discard_prestarted() -> None:
    if _prestarted is not None and _prestarted.poll() is None:
        _prestarted.kill()
        _prestarted.wait()


def take_prestarted() -> subprocess.Popen[bytes] | None:
    """The pre-started worker, handed over once (None if there is none)."""
    global _prestarted
    proc, _prestarted = _prestarted, None
    return proc
