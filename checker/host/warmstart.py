"""`python -m MODULE ARGS`, started in a fork of a warm interpreter instead of a cold one.

A check that runs student code as a command (a stdio server, `python -m research_desk`, uvicorn)
would start a new interpreter each time, and importing the SDK there is most of a CPU-second: on
two cores, a lesson with a few such commands spends more time starting interpreters than
checking. The spawner (`checker.host.spawner`) forks from the zygote, which has the SDK imported
and never imported student code; when the command is exactly this interpreter with `-m`, the fork
becomes that program the way `python -m` starts one, and no exec happens.

What the program sees is what a cold start gives it, and tests/test_warm_start.py runs the same
probe both ways and compares: `sys.argv`, `__main__`, the import path (the working folder, then
PYTHONPATH, then the interpreter's own), exactly the given environment, fresh standard streams on
file descriptors 0-2 and no other descriptor open, default signal handling, unconfigured
logging, and the exit status (SystemExit, an uncaught exception, threads joined and atexit run
first). Modules the zygote imported stay imported, as the same files would load in a cold start.
Anything this cannot reproduce (another interpreter, a script, interpreter flags, PYTHON*
settings other than PYTHONPATH and PYTHONDONTWRITEBYTECODE) is exec'd as before.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import runpy
import signal
import subprocess
import sys
import threading
import types
from typing import NoReturn

# Settings a cold interpreter reads at start-up that a fork cannot take on afterwards.
_HANDLED = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE"}


def _interpreter_path() -> list[str]:
    """The path a cold start of this interpreter builds before the working folder and PYTHONPATH
    (standard library, site-packages, .pth entries), asked of one, once, when the zygote imports
    this module: a few milliseconds, and exact however site-packages are set up."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    shown = subprocess.run([sys.executable, "-c", "import json, sys; print(json.dumps(sys.path[1:]))"], env=env,
                           cwd="/", capture_output=True, text=True, check=True, timeout=60)
    return [str(entry) for entry in json.loads(shown.stdout)]


_INTERPRETER_PATH = _interpreter_path()


def module_argv(argv: list[str], env: dict[str, str]) -> list[str] | None:
    """[MODULE, ARG, ...] when `argv` is `<this interpreter> -m MODULE ARG ...` and `env` asks for
    nothing a fork cannot do; None when the command must be exec'd."""
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] != "-m" or not argv[2] or argv[2].startswith("-"):
        return None
    if any(name.startswith("PYTHON") and name not in _HANDLED for name in env):
        return None
    return argv[2:]


def become(module_args: list[str], env: dict[str, str]) -> NoReturn:
    """In a fresh fork whose fds 0-2 are the command's, whose working folder is set and which holds
    no other descriptor: run the module as `python -m` would, then end as that interpreter would."""
    _fresh_process_state(env)
    module, args = module_args[0], module_args[1:]
    sys.argv = [module, *args]  # runpy puts the module's file in argv[0], as -m does
    sys.modules["__main__"] = types.ModuleType("__main__")
    code, interrupted = 0, False
    try:
        runpy._run_module_as_main(module, alter_argv=True)  # type: ignore[attr-defined]  # noqa: SLF001 - what -m runs
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:  # noqa: BLE001 - printed as the interpreter prints it, exit status 1
        if exc.__traceback__ is not None:  # from runpy on, as a cold start shows it
            exc.__traceback__ = exc.__traceback__.tb_next
        sys.excepthook(type(exc), exc, exc.__traceback__)
        interrupted, code = isinstance(exc, KeyboardInterrupt), 1
    code = _finish(code)
    if interrupted:  # a cold interpreter ends killed by the SIGINT it did not handle
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code)


def _fresh_process_state(env: dict[str, str]) -> None:
    """What a cold interpreter starts with: environment, path, descriptors, standard streams,
    signals, logging."""
    _release_inherited_descriptors()
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    pythonpath = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path[:] = [os.getcwd(), *pythonpath, *_INTERPRETER_PATH]
    sys.path_importer_cache.clear()
    _fresh_streams()
    sys.excepthook, sys.unraisablehook = sys.__excepthook__, sys.__unraisablehook__
    threading.excepthook = threading.__excepthook__
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2,
                   signal.SIGALRM):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython sets them at start-up
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.disable(logging.NOTSET)


def _release_inherited_descriptors() -> None:
    """Point every descriptor above 2 that the warm process still held (the runner's own, when a
    self-check's runner is the zygote) at /dev/null. The program cannot reach what they were, and
    their numbers stay taken, so an object of the warm process that closes one some day cannot
    close a file of the program's that was given the same number."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in sorted(int(name) for name in os.listdir("/proc/self/fd")):
        if fd > 2 and fd != null:
            with contextlib.suppress(OSError):  # the listing's own descriptor is closed by now
                os.fstat(fd)
                os.dup2(null, fd)
    os.close(null)


_ABANDONED: list[object] = []  # the zygote's own stream objects: never flushed into the command's pipes


def _fresh_streams() -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, made as CPython makes them at start-up (buffered,
    line by line on a terminal; stderr always line by line, backslash-escaping what it cannot
    encode; "\n" newlines). The zygote's own stream objects are kept alive, never flushed or closed:
    whatever they still buffer must not reach the command's output."""
    old = (sys.stdin, sys.stdout, sys.stderr)
    _ABANDONED.extend((*old, sys.__stdin__, sys.__stdout__, sys.__stderr__))
    encoding = next((stream.encoding for stream in old if stream is not None), "utf-8")
    errors = next((stream.errors for stream in old[:2] if stream is not None), "strict")
    stdin = open(0, encoding=encoding, errors=errors, newline="\n", closefd=False)  # noqa: SIM115 - the process's own
    stdout = open(1, "w", encoding=encoding, errors=errors, newline="\n", closefd=False)  # noqa: SIM115
    stderr = open(2, "w", encoding=encoding, errors="backslashreplace", newline="\n", closefd=False)  # noqa: SIM115
    stderr.reconfigure(line_buffering=True)
    for name, stream in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr)):
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)  # what the interpreter started with, as code may look there


def _exit_code(value: object) -> int:
    """The exit status `sys.exit(value)` gives a cold interpreter."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    with contextlib.suppress(Exception):
        print(value, file=sys.stderr)
    return 1


def _finish(code: int = 0) -> int:
    """The interpreter's shutdown: join non-daemon threads, run atexit, flush the streams."""
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            with contextlib.suppress(RuntimeError):
                thread.join()
    atexit._run_exitfuncs()  # noqa: SLF001 - what the interpreter runs at exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120  # as CPython reports a failed flush of stdout at exit
    return code
