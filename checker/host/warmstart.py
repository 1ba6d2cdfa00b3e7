"""`python -m MODULE ARGS` (or a venv's console script), started in a fork of a warm interpreter.

A check that runs student code as a command (a stdio server, `python -m research_desk`, uvicorn)
would start a new interpreter each time, and importing the SDK there is most of a CPU-second: on
two cores, a lesson with a few such commands spends more time starting interpreters than
checking. The spawner (`checker.host.spawner`) forks from the zygote, which has the SDK imported
and never imported student code; when the command is exactly this interpreter with `-m`, or a
console script of a virtual environment made from it, the fork becomes that program the way a cold
start would, and no exec happens.

What the program sees is what a cold start gives it, and tests/test_warm_start.py runs the same
probe both ways and compares: `sys.argv`, `__main__`, the import path (the working folder, then
PYTHONPATH, then the interpreter's own), exactly the given environment, fresh standard streams on
file descriptors 0-2 (unbuffered with PYTHONUNBUFFERED) and no other descriptor open, default
signal handling, unconfigured logging, and the exit status (SystemExit, an uncaught exception,
threads joined and atexit run first). Modules the zygote imported stay imported only where a cold
start would load the same files; the others are unloaded first. Anything this cannot reproduce
(another interpreter, any other script, interpreter flags, PYTHON* settings other than
PYTHONPATH, PYTHONDONTWRITEBYTECODE and PYTHONUNBUFFERED) is exec'd as before.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import runpy
import signal
import site
import subprocess
import sys
import sysconfig
import threading
import types
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

# The settings a cold interpreter reads at start-up that a fork takes on too (any other PYTHON*
# setting means an exec). PYTHONUNBUFFERED is there because checks set it so that a stray print()
# reaches the pipe at once; a fork cannot change sys.flags.unbuffered, only the streams it governs.
_HANDLED = {"PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED"}


def _interpreter_state(interpreter: str, env: dict[str, str]) -> dict[str, Any]:
    """What `interpreter` starts with in `env` (its path after the script's folder, its prefixes):
    one bare start of it, a few milliseconds, exact however its environment is set up."""
    shown = subprocess.run(
        [interpreter, "-c", "import json, sys; print(json.dumps({'path': sys.path[1:], 'prefix': sys.prefix, "
                            "'exec_prefix': sys.exec_prefix}))"],
        env=env, capture_output=True, text=True, check=True, timeout=60, stdin=subprocess.DEVNULL)
    state: dict[str, Any] = json.loads(shown.stdout)
    return state


# The interpreter's own path (standard library, site-packages, .pth entries), as a cold start
# builds it before the working folder and PYTHONPATH; asked once, when the zygote imports this.
_INTERPRETER_PATH = _interpreter_state(
    sys.executable, {name: value for name, value in os.environ.items() if name != "PYTHONPATH"})["path"]


@dataclass(frozen=True)
class Start:
    """A command that can start warm: `main` is a module name (`python -m`) or a script's path (a
    console script of a virtual environment made from this same interpreter)."""

    main: str
    args: list[str]
    script: bool = False


def plan(argv: list[str], env: dict[str, str]) -> Start | None:
    """How `argv` can start warm, or None when it must be exec'd: anything but `<this interpreter>
    -m MODULE ...` or `<venv script> ...`, or an environment asking for what a fork cannot do."""
    if any(name.startswith("PYTHON") and name not in _HANDLED for name in env):
        return None
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m" and argv[2] and not argv[2].startswith("-"):
        return Start(argv[2], argv[3:])
    if argv and _venv_interpreter(argv[0]) is not None:
        return Start(argv[0], argv[1:], script=True)
    return None


def _venv_interpreter(path: str) -> str | None:
    """The interpreter of `path` when it is a script whose `#!` line names the python of a virtual
    environment made from this interpreter (what `pip install` writes for a console script)."""
    if not os.path.isabs(path) or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            first = handle.readline(4096)
    except OSError:
        return None
    interpreter = first[2:].strip().decode(errors="replace") if first.startswith(b"#!") else ""
    if not interpreter or " " in interpreter or not os.path.isabs(interpreter):
        return None
    folder = os.path.dirname(os.path.dirname(interpreter))
    if not os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
        return None
    if os.path.realpath(interpreter) != os.path.realpath(sys.executable):
        return None
    return interpreter


def become(start: Start, env: dict[str, str]) -> NoReturn:
    """In a fresh fork whose fds 0-2 are the command's and whose working folder is set: run the
    module as `python -m` would, or the script as its own interpreter would, then end as that
    interpreter would have."""
    if start.script:
        interpreter = _venv_interpreter(start.main) or sys.executable
        shown = _interpreter_state(interpreter, env)
        path = [os.path.dirname(os.path.realpath(start.main)), *shown["path"]]
    else:
        pythonpath = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
        path = [os.getcwd(), *pythonpath, *_INTERPRETER_PATH]
    _forget_modules_found_elsewhere(path)
    _fresh_process_state(env, path)
    sys.argv = [start.main, *start.args]  # for a module, runpy puts its file in argv[0], as -m does
    if start.script:
        sys.executable, sys.prefix, sys.exec_prefix = interpreter, shown["prefix"], shown["exec_prefix"]
        _forget_cached_prefixes()
    sys.modules["__main__"] = types.ModuleType("__main__")
    code, interrupted = 0, False
    try:
        if start.script:
            runpy.run_path(start.main, run_name="__main__")
        else:
            runpy._run_module_as_main(start.main, alter_argv=True)  # type: ignore[attr-defined]  # noqa: SLF001 - what -m runs
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


def _forget_modules_found_elsewhere(path: list[str]) -> None:
    """Unload every package this process has loaded that a cold start on `path` would not load
    from the same place: its folder is not on `path` (the checker's own, a dependency a virtual
    environment does not have), or something earlier on `path` has that name (a student's own
    `anyio.py`, say). Importing it then does what a cold start does. What stays loaded (the SDK,
    the standard library) is exactly what the program would have loaded from the same files."""
    places = [os.path.realpath(entry or ".") for entry in path]
    listings: dict[int, set[str]] = {}

    def modules_in(index: int) -> set[str]:
        if index not in listings:
            try:
                found = os.listdir(places[index])
            except OSError:
                found = []
            listings[index] = {name.split(".")[0] for name in found if "." not in name or name.endswith((".py", ".so"))}
        return listings[index]

    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or not isinstance(file, str):
            continue  # submodules follow their package; built-in and frozen modules come with the interpreter
        folder = os.path.dirname(os.path.realpath(file))
        origin = os.path.dirname(folder) if os.path.basename(file).startswith("__init__.") else folder
        where = places.index(origin) if origin in places else -1
        if where >= 0 and not any(name in modules_in(index) for index in range(where)):
            continue
        for loaded in [key for key in sys.modules if key == name or key.startswith(f"{name}.")]:
            del sys.modules[loaded]


def _forget_cached_prefixes() -> None:
    """What the standard library worked out from the zygote's prefixes, recomputed on next use
    from the virtual environment's (sysconfig's paths, site's prefixes)."""
    site.PREFIXES[:] = [sys.prefix, sys.exec_prefix]
    sysconfig._PREFIX = os.path.normpath(sys.prefix)  # type: ignore[attr-defined]  # noqa: SLF001 - read at its import
    sysconfig._EXEC_PREFIX = os.path.normpath(sys.exec_prefix)  # type: ignore[attr-defined]  # noqa: SLF001
    sysconfig._CONFIG_VARS = None  # type: ignore[attr-defined]  # noqa: SLF001 - its cache, rebuilt on first use
    if hasattr(sysconfig, "_CONFIG_VARS_INITIALIZED"):  # Python 3.12 and later
        sysconfig._CONFIG_VARS_INITIALIZED = False  # noqa: SLF001


def _fresh_process_state(env: dict[str, str], path: list[str]) -> None:
    """What a cold interpreter starts with: environment, import path, descriptors, standard
    streams, signals, logging."""
    _release_inherited_descriptors()
    os.environ.clear()
    os.environ.update(env)
    sys.dont_write_bytecode = bool(env.get("PYTHONDONTWRITEBYTECODE"))
    sys.path[:] = path
    sys.path_importer_cache.clear()
    _fresh_streams(unbuffered=bool(env.get("PYTHONUNBUFFERED")))
    sys.excepthook, sys.unraisablehook = sys.__excepthook__, sys.__unraisablehook__
    threading.excepthook = threading.__excepthook__
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2,
                   signal.SIGALRM):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # as CPython sets them at start-up
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # Exit handlers the warm process registered are its own business (a test run's clean-up of its
    # temporary folders, say): never the program's. Of those that importing a module registers,
    # logging's is the one a program relies on (flushing its handlers), and logging is loaded.
    atexit._clear()  # noqa: SLF001 - the interpreter's own list of exit handlers
    atexit.register(logging.shutdown)
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


def _fresh_streams(*, unbuffered: bool) -> None:
    """New sys.stdin/stdout/stderr on fds 0-2, made as CPython makes them at start-up (buffered,
    line by line on a terminal; stderr always line by line, backslash-escaping what it cannot
    encode; "\n" newlines; with PYTHONUNBUFFERED, stdout and stderr write every text straight to
    their descriptors instead). The zygote's own stream objects are kept alive, never flushed or
    closed: whatever they still buffer must not reach the command's output."""
    old = (sys.stdin, sys.stdout, sys.stderr)
    _ABANDONED.extend((*old, sys.__stdin__, sys.__stdout__, sys.__stderr__))
    encoding = next((stream.encoding for stream in old if stream is not None), "utf-8")
    errors = next((stream.errors for stream in old[:2] if stream is not None), "strict")
    stdin = open(0, encoding=encoding, errors=errors, newline="\n", closefd=False)  # noqa: SIM115 - the process's own
    stdout: TextIO
    stderr: TextIO
    if unbuffered:  # as -u: no buffer under the text layer, which passes every write on at once
        stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding=encoding, errors=errors, newline="\n",
                                  write_through=True)
        stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding=encoding, errors="backslashreplace",
                                  newline="\n", write_through=True)
    else:
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
