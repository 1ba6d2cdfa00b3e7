"""Does the student's package import? One report per broken module, before any check runs.

A module that does not import (a syntax error, a deleted file, code at module level that raises,
exits or hangs) makes every check fail the same way. Said eight times, each with a hint about
something else, that teaches nothing; so the runner imports the lesson's modules first and, like a
compiler, names the file, the line, the code on it and the fix, once.

Runs where student code runs: in a fork of the check worker (`course check`, `watch`, the notebook
check cell) or in the grading sandbox's host process. It imports no pytest and returns plain data.
"""

from __future__ import annotations

import importlib
import linecache
import os
import signal
import threading
import traceback
from types import FrameType

from checker.runner.results import BrokenModule


class _ImportTimeout(Exception):
    """Raised into the importing thread when the import has run too long; carries where it was."""

    def __init__(self, frame: FrameType | None) -> None:
        super().__init__("timed out")
        self.frame = frame


def diagnose(package: str, module: str, edition: str, timeout: float,
             owners: dict[str, int] | None = None) -> BrokenModule | None:
    """Import `package.module`; None if it imports, else what is wrong with it.

    `owners` maps each module to the lesson whose starter holds it (the fix for a deleted file).
    An import still running after `timeout` seconds is interrupted where it is (main thread only;
    elsewhere the caller's own time limit must do).
    """
    name = f"{package}.{module}"
    alarm = threading.current_thread() is threading.main_thread() and timeout > 0

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise _ImportTimeout(frame)

    if alarm:
        previous = signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        importlib.import_module(name)
    except _ImportTimeout as hang:
        return _timed_out(package, module, edition, timeout, hang.frame)
    except BaseException as exc:  # noqa: BLE001 - SystemExit at import is the student's to see too
        return _failed(package, module, edition, exc, owners or {})
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return None


def _relative(path: str, edition: str) -> str | None:
    """`research_desk/context.py` for a file of the graded edition, else None."""
    if not path:
        return None
    full = os.path.abspath(path)
    root = os.path.abspath(edition)
    if full.startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(full, root).replace(os.sep, "/")
    return None


def _code(path: str, line: int) -> str:
    return linecache.getline(path, line).rstrip() if line else ""


def _deepest(frames: list[tuple[str, int]], edition: str) -> tuple[str, str, int] | None:
    """(absolute path, relative path, line) of the innermost frame in the edition."""
    for path, line in reversed(frames):
        rel = _relative(path, edition)
        if rel is not None:
            return path, rel, line
    return None


def _module_file(package: str, module: str) -> str:
    return f"{package}/{module.replace('.', '/')}.py"


def _failed(package: str, module: str, edition: str, exc: BaseException, owners: dict[str, int]) -> BrokenModule:
    error = _one_line(exc)
    if isinstance(exc, SyntaxError):  # IndentationError and TabError too
        rel = _relative(exc.filename or "", edition) or exc.filename or _module_file(package, module)
        line = exc.lineno or 0
        text = (exc.text or "").rstrip("\n")
        code = text.rstrip()
        column = min(exc.offset or 0, len(text) + 1) if code else 0
        stripped = len(code) - len(code.lstrip())
        return BrokenModule(module, rel, line, code.lstrip(), max(0, column - stripped), error,
                            f"correct line {line} of {rel}: Python cannot read the file, so nothing in it runs")
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    if missing and (missing == package or missing.startswith(f"{package}.")):
        deleted = missing.removeprefix(f"{package}.")
        rel = _module_file(package, deleted) if missing != package else f"{package}/__init__.py"
        lesson = owners.get(deleted)
        fix = (f"`uv run course reset {lesson}` puts the starter version back (earlier versions of yours: "
               "`uv run course reset --list`)" if lesson else
               f"restore {rel} (from git, or `uv run course reset --list` for your backups)")
        return BrokenModule(module, rel, 0, "", 0, f"{rel} is missing", fix)
    frames = [(f.filename, f.lineno or 0) for f in traceback.extract_tb(exc.__traceback__)]
    found = _deepest(frames, edition)
    if found is None:
        return BrokenModule(module, _module_file(package, module), 0, "", 0, error,
                            "code at module level runs when the module is imported: look for what it calls")
    path, rel, line = found
    if isinstance(exc, SystemExit):
        fix = f"line {line} ends the program as the module is imported: move it into a function"
    else:
        fix = f"code at module level runs when the module is imported: fix line {line}, or move it into a function"
    return BrokenModule(module, rel, line, _code(path, line).strip(), 0, error, fix)


def _timed_out(package: str, module: str, edition: str, timeout: float, frame: FrameType | None) -> BrokenModule:
    frames = []
    while frame is not None:
        frames.append((frame.f_code.co_filename, frame.f_lineno))
        frame = frame.f_back
    found = _deepest(frames[::-1], edition)
    error = f"importing it did not finish within {timeout:g} s"
    if found is None:
        return BrokenModule(module, _module_file(package, module), 0, "", 0, error,
                            "code at module level must not wait or loop: move it into a function")
    path, rel, line = found
    return BrokenModule(module, rel, line, _code(path, line).strip(), 0, error,
                        f"code at module level must not wait or loop: move line {line} into a function")


def ended(package: str, module: str, problem: str) -> BrokenModule:
    """The process importing `module` ended (or was killed) before it could say why."""
    what = problem.removeprefix("the process running this check ").removeprefix("the check's process ")
    return BrokenModule(module, _module_file(package, module), 0, "", 0, f"importing it {what}",
                        "code at module level runs when the module is imported: look for exit() or a crash")


def _one_line(exc: BaseException) -> str:
    try:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    except Exception:  # noqa: BLE001 - a student's __str__ may raise
        text = ""
    if isinstance(exc, SyntaxError):
        text = exc.msg or text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name
