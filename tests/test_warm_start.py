"""A `python -m` command started warm (forked from the zygote, `checker.host.warmstart`) must be
indistinguishable, to the program, from the same command started cold.

Each test runs one probe program both ways, cold (a new interpreter, as `subprocess` starts it)
and warm (through the relay into a real zygote, as `Target.command` starts it for a check), and
compares what the program saw and how it ended.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import sysconfig
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from checker.runner.lesson import build_request
from checker.runner.worker import command_zygote
from checker.sandbox.limits import Limits
from checker.sandbox.submission import Mode, Running, SandboxPlan, SubmissionSandbox
from checker.target import CPU_LEDGER, Target
from tests.conftest import COURSE, pristine_starter, process_alive

# The zygote, the relay and what they read (socket credentials, prctl, /proc) are Linux's; elsewhere
# a self-check starts its commands cold and grading runs in the Linux container.
pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="warm starts need Linux")

PROBE = '''
import json, logging, os, signal, sys, sysconfig, threading, atexit, random

def handler(number):
    found = signal.getsignal(number)
    return found if isinstance(found, str) else getattr(found, "__name__", repr(found))

def described():
    fds = {}
    for name in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            fds[name] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass
    stdlib = os.path.dirname(os.__file__)
    return {
        "name": __name__, "argv": sys.argv, "main": getattr(sys.modules["__main__"].__spec__, "name", None),
        "interpreter": [sys.executable, sys.prefix, sys.exec_prefix, sysconfig.get_paths()["purelib"]],
        "package": __package__, "path_head": sys.path[: sys.path.index(stdlib) if stdlib in sys.path else 3],
        "path_tail": [p for p in sys.path if "site-packages" in p or not p.startswith(sys.prefix)][-4:],
        "env": dict(os.environ), "cwd": os.getcwd(), "fds": len(fds),
        "fd_kinds": sorted(target.split(":")[0] if ":[" in target else target for target in fds.values()),
        "signals": {str(n): handler(n) for n in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGCHLD,
                                                  signal.SIGHUP, signal.SIGXFSZ)},
        "root_logger": [len(logging.getLogger().handlers), logging.getLogger().level],
        "streams": [sys.stdout.line_buffering, sys.stderr.line_buffering, sys.stdout.encoding, sys.stderr.errors,
                    sys.stdin.isatty(), sys.stdout.write_through, sys.stderr.write_through,
                    type(sys.stdout.buffer).__name__, type(sys.stderr.buffer).__name__],
        "bytecode": sys.dont_write_bytecode, "stdin": sys.stdin.read(),
        "hooks": [sys.excepthook is sys.__excepthook__, threading.excepthook is threading.__excepthook__],
    }

mode = sys.argv[1]
if mode == "describe":
    print(json.dumps(described()))
elif mode == "random":
    print(random.random())
elif mode == "exit":
    sys.exit(int(sys.argv[2]) if sys.argv[2].isdigit() else sys.argv[2])
elif mode == "raise":
    raise ValueError("the probe failed on purpose")
elif mode == "late":
    atexit.register(lambda: print("atexit ran", flush=True))
    threading.Thread(target=lambda: (__import__("time").sleep(0.3), print("thread finished"))).start()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    logging.getLogger("probe").info("configured by the program")
    print("main done")
elif mode == "import":
    try:
        module = __import__(sys.argv[2])
    except ImportError as exc:
        print(f"ImportError: {exc}")
    else:
        print(module.__file__)
elif mode == "wait":
    print("waiting", flush=True)
    sys.stdin.read()
elif mode == "stray":
    print("a stray line")
    sys.stdin.read()
elif mode == "group":
    print(os.getpid(), os.getpgid(0), os.getppid(), flush=True)
    sys.stdin.read()
'''


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A real zygote, unconfined (the sandboxes around it are tested in test_grading)."""
    workdir = tmp_path_factory.mktemp("warm")
    sandbox = SubmissionSandbox(SandboxPlan(Mode.NONE), pristine_starter(), workdir, Limits(20, 2048, 16))
    try:
        yield sandbox.start()
    finally:
        sandbox.stop()


@pytest.fixture(scope="module")
def probe_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("probe")
    (folder / "lib").mkdir()
    (folder / "lib" / "warmprobe.py").write_text(textwrap.dedent(PROBE))
    (folder / "work").mkdir()
    return folder


def _run(zygote: Running, home: Path, *args: str, warm: bool, stdin: str = "", env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    argv = [sys.executable, "-m", "warmprobe", *args]
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
                   "PYTHONPATH": str(home / "lib"), **(env or {})}
    command = target.command(argv) if warm else argv
    return subprocess.run(command, input=stdin, capture_output=True, text=True, env=environment,
                          cwd=home / "work", timeout=30)


def test_the_program_sees_what_a_cold_start_gives_it(zygote: Running, probe_home: Path) -> None:
    cold = _run(zygote, probe_home, "describe", warm=False, stdin="hello from stdin\n")
    warm = _run(zygote, probe_home, "describe", warm=True, stdin="hello from stdin\n")
    assert cold.returncode == warm.returncode == 0, (cold.stderr, warm.stderr)
    seen_cold, seen_warm = json.loads(cold.stdout), json.loads(warm.stdout)
    assert seen_warm == seen_cold
    assert seen_warm["stdin"] == "hello from stdin\n" and seen_warm["name"] == "__main__"
    assert seen_warm["path_head"][:2] == [str(probe_home / "work"), str(probe_home / "lib")]


def test_pythonunbuffered_starts_warm_with_unbuffered_streams(zygote: Running, probe_home: Path) -> None:
    """Checks set PYTHONUNBUFFERED so that a stray print() reaches the pipe while the program still
    runs; started warm, the program gets the streams a cold start gives it."""
    env = {"PYTHONUNBUFFERED": "1"}
    cold = _run(zygote, probe_home, "describe", warm=False, env=env)
    warm = _run(zygote, probe_home, "describe", warm=True, env=env)
    assert json.loads(warm.stdout) == json.loads(cold.stdout), (cold.stderr, warm.stderr)
    assert json.loads(warm.stdout)["streams"][-4:] == [True, True, "FileIO", "FileIO"]
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    argv = [sys.executable, "-m", "warmprobe", "stray"]
    process = subprocess.Popen(target.command(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib"), **env},
                               cwd=probe_home / "work")
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline() == b"a stray line\n"  # stdin still open: the program has not ended
    finally:
        process.stdin.close()
        process.wait(timeout=20)
        process.stdout.close()


def test_the_program_holds_no_descriptor_of_the_checker(zygote: Running, probe_home: Path) -> None:
    warm = json.loads(_run(zygote, probe_home, "describe", warm=True).stdout)
    assert "socket" not in warm["fd_kinds"], (
        f"a warm-started program holds a socket it was not given: {warm['fd_kinds']}")


def test_every_warm_start_draws_its_own_random_numbers(zygote: Running, probe_home: Path) -> None:
    draws = {_run(zygote, probe_home, "random", warm=True).stdout for _ in range(3)}
    assert len(draws) == 3, "forks of one zygote must not repeat each other's random numbers"


@pytest.mark.parametrize("args", [("exit", "0"), ("exit", "3"), ("exit", "300"), ("exit", "a message"), ("raise",),
                                  ("late",)])
def test_the_program_ends_as_it_would_cold(zygote: Running, probe_home: Path, args: tuple[str, ...]) -> None:
    cold = _run(zygote, probe_home, *args, warm=False)
    warm = _run(zygote, probe_home, *args, warm=True)
    assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout)
    assert warm.stderr.replace(str(sys.executable), "") == cold.stderr.replace(str(sys.executable), "")
    if args == ("late",):
        assert warm.stdout.splitlines() == ["main done", "thread finished", "atexit ran"]
        assert warm.stderr == "INFO configured by the program\n", "the program's own logging set-up must take effect"


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_program_as_it_would_cold(zygote: Running, probe_home: Path, number: int) -> None:
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    ended = []
    for warm in (False, True):
        argv = [sys.executable, "-m", "warmprobe", "wait"]
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib")}
        process = subprocess.Popen(target.command(argv) if warm else argv, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=probe_home / "work")
        assert process.stdout is not None and process.stdout.readline() == b"waiting\n"
        time.sleep(0.1)
        process.send_signal(number)
        process.wait(timeout=20)  # stdin stays open: the program ends by the signal, not by end of input
        assert process.stderr is not None
        told = process.stderr.read().decode().splitlines()
        ended.append((process.returncode, told[:1], told[-1:]))  # where in the program it landed may differ
        for stream in (process.stdin, process.stdout, process.stderr):
            stream.close()
    assert ended[1] == ended[0]


def test_a_command_ends_with_its_relay(zygote: Running, probe_home: Path) -> None:
    """A check may kill what it started outright (lesson 6 kills its replicas): the command must not
    outlive its relay. It shares its spawner's process group, which goes when the relay does."""
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib")}
    process = subprocess.Popen(target.command([sys.executable, "-m", "warmprobe", "group"]), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, env=env, cwd=probe_home / "work")
    assert process.stdout is not None and process.stdin is not None
    pid, group, parent = map(int, process.stdout.readline().split())
    assert group == parent, "the command is not in its spawner's process group, so killing that group misses it"
    process.kill()
    process.wait(timeout=20)
    process.stdout.close()
    process.stdin.close()
    deadline = time.monotonic() + 10
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process_alive(pid), "the command outlived its relay"




def test_other_commands_are_still_executed(zygote: Running, probe_home: Path) -> None:
    """Interpreter flags or settings a fork cannot take on mean a real exec: -I hides PYTHONPATH."""
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib")}
    isolated = subprocess.run(target.command([sys.executable, "-I", "-m", "warmprobe", "describe"]), env=env,
                              capture_output=True, text=True, timeout=30)
    assert isolated.returncode == 1 and "No module named warmprobe" in isolated.stderr
    hashed = _run(zygote, probe_home, "describe", warm=True, env={"PYTHONHASHSEED": "7"})
    assert json.loads(hashed.stdout)["env"]["PYTHONHASHSEED"] == "7"


def test_a_self_checks_runner_starts_its_commands_warm(tmp_path: Path, probe_home: Path) -> None:
    """A self-check has no sandbox zygote: its runner forks itself into one, for lessons whose
    checks run `python -m` (lesson 3 does). What the program sees is what a cold start gives it,
    though the runner (here, this test process, with pytest's logging, signals and hooks set up)
    is anything but a fresh interpreter; and it holds none of the runner's sockets or files."""
    request = build_request(COURSE, COURSE.lesson("lesson-3"), COURSE.solutions, "solutions", tmp_path / "out.json")
    with command_zygote(request, Limits(20, 2048, 16)):
        zygote = os.environ["COURSE_COMMAND_ZYGOTE"]
        target = Target(pristine_starter(), COURSE.package, command_zygote=zygote)
        argv = [sys.executable, "-m", "warmprobe", "describe"]
        env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PYTHONPATH": str(probe_home / "lib")}
        runs = [subprocess.run(command, input="", capture_output=True, text=True, env=env, cwd=probe_home / "work",
                               timeout=30) for command in (argv, target.command(argv))]
    assert "COURSE_COMMAND_ZYGOTE" not in os.environ
    cold, warm = (json.loads(run.stdout) for run in runs)
    assert runs[1].args[-4:] == argv and runs[1].args[0] == sys.executable, "the command went through the relay"
    inherited = [kind for kind in warm.pop("fd_kinds") if kind not in cold["fd_kinds"]]
    assert set(inherited) <= {os.devnull}, f"the runner's own descriptors reached the program: {inherited}"
    cold.pop("fd_kinds"), cold.pop("fds"), warm.pop("fds")
    assert warm == cold


def test_the_runners_exit_handlers_stay_the_runners(tmp_path: Path, probe_home: Path) -> None:
    """The runner forked into a zygote carries its own exit handlers (this test process: pytest's
    clean-up of temporary folders); a program started from it must not run them when it exits."""
    doomed = tmp_path / "kept-by-the-runner"
    doomed.mkdir()
    atexit.register(doomed.rmdir)
    try:
        request = build_request(COURSE, COURSE.lesson("lesson-3"), COURSE.solutions, "solutions", tmp_path / "out.json")
        with command_zygote(request, Limits(20, 2048, 16)):
            target = Target(pristine_starter(), COURSE.package, command_zygote=os.environ["COURSE_COMMAND_ZYGOTE"])
            env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib")}
            ended = subprocess.run(target.command([sys.executable, "-m", "warmprobe", "late"]), env=env,
                                   capture_output=True, text=True, cwd=probe_home / "work", timeout=30)
        assert ended.stdout.splitlines() == ["main done", "thread finished", "atexit ran"], ended.stderr
        assert doomed.is_dir(), "the program ran an exit handler of the process it was forked from"
    finally:
        atexit.unregister(doomed.rmdir)


def test_a_lesson_without_python_commands_starts_no_zygote(tmp_path: Path) -> None:
    request = build_request(COURSE, COURSE.lesson("lesson-1"), COURSE.solutions, "solutions", tmp_path / "out.json")
    with command_zygote(request, Limits(20, 2048, 16)):
        assert "COURSE_COMMAND_ZYGOTE" not in os.environ


def _venv(folder: Path, *, course_packages: bool) -> Path:
    """A virtual environment of this interpreter holding the probe and a console script for it, as
    lesson 8's checks make one (`course_packages`: a .pth to this interpreter's site-packages)."""
    subprocess.run(["uv", "venv", "--offline", "--quiet", "--python", sys.executable, str(folder)], check=True)
    site = next(folder.glob("lib/python*/site-packages"))
    (site / "warmprobe.py").write_text(textwrap.dedent(PROBE))
    if course_packages:
        (site / "_course.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n")
    script = folder / "bin" / "warm-probe"
    script.write_text(f"#!{folder / 'bin' / 'python'}\nimport runpy\nrunpy.run_module('warmprobe', run_name='__main__')\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("course_packages", [True, False])
def test_a_console_script_sees_its_own_environment(zygote: Running, tmp_path: Path, course_packages: bool) -> None:
    """A virtual environment's console script starts warm too, as its own interpreter would start
    it; a package the environment does not have is not lent to it by the zygote."""
    script = _venv(tmp_path / "venv", course_packages=course_packages)
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    for args in (["describe"], ["import", "mcp"], ["exit", "4"]):
        cold, warm = (subprocess.run(command, input="", capture_output=True, text=True, env=env, cwd=tmp_path,
                                     timeout=30) for command in ([str(script), *args], target.command([str(script), *args])))
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr), args
    found = cold.stdout if False else subprocess.run([str(script), "import", "mcp"], capture_output=True, text=True,
                                                     env=env, timeout=30).stdout
    assert ("ImportError" in found) is not course_packages


def test_a_students_module_shadows_a_loaded_one_as_it_would_cold(zygote: Running, probe_home: Path,
                                                                  tmp_path: Path) -> None:
    """The zygote has anyio loaded; a student's own anyio.py earlier on the path wins, as cold."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "anyio.py").write_text("SHADOW = True\n")
    env = {"PYTHONPATH": f"{shadow}{os.pathsep}{probe_home / 'lib'}"}
    cold = _run(zygote, probe_home, "import", "anyio", warm=False, env=env)
    warm = _run(zygote, probe_home, "import", "anyio", warm=True, env=env)
    assert warm.stdout == cold.stdout == f"{shadow / 'anyio.py'}\n", (cold.stderr, warm.stderr)


def test_a_relayed_commands_cpu_time_reaches_the_checks_ledger(zygote: Running, probe_home: Path,
                                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command runs in the zygote's process tree, not the check's: the relay writes its CPU
    seconds to the ledger the runner keeps for the check (`COURSE_CPU_LEDGER`)."""
    ledger = tmp_path / "ledger"
    ledger.touch()
    monkeypatch.setenv(CPU_LEDGER, str(ledger))
    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
    (probe_home / "lib" / "burner.py").write_text(burn)
    target = Target(pristine_starter(), COURSE.package, zygote.socket, zygote.scratch)
    done = subprocess.run(target.command([sys.executable, "-m", "burner"]), capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(probe_home / "lib")}, timeout=30)
    assert done.returncode == 0, done.stderr
    recorded = [float(line) for line in ledger.read_text().split()]
    assert len(recorded) == 1 and 0.3 <= recorded[0] < 5, recorded
