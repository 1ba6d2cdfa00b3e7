"""The line between a check and the process hosting student code: what may cross it, and how.

A host is entirely the student's: whatever it sends back must arrive as plain built-in data or
as an opaque handle, never as an object whose behaviour the student wrote.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from checker import wire
from checker.sandbox.limits import Limits
from checker.sandbox.submission import Mode, Running, SandboxPlan, SubmissionSandbox
from checker.target import Target
from checker.target.remote import HostEnded, Mirrored, Remote, RemoteSession, mirror_class
from tests.conftest import COURSE, pristine_starter, process_alive

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)


def _decode(data: object) -> object:
    def on_tag(tag: str, payload: object) -> object:
        raise wire.WireError(f"unexpected {tag}")
    return wire.decode(data, on_tag)


def test_data_round_trips_as_exact_builtin_types() -> None:
    value = {"a": [1, 2.5, None, True], ("t", 1): b"\x00bytes", "s": {1, 2}, "f": frozenset({"x"}),
             "p": Path("/tmp/x")}
    back = _decode(wire.parse(wire.frame(wire.encode(value, lambda o: pytest.fail(f"not data: {o!r}")))[4:]))
    assert back == value and type(back[("t", 1)]) is bytes and type(back["p"]) is type(Path("/"))


@pytest.mark.parametrize("hostile", [{"$tuple": 3}, {"$dict": [[1]]}, {"$set": [[1, 2]]}, {"a": 1, "b": 2},
                                     {"$nonsense": 1}, {"$dict": [[[1], 2]]}])
def test_malformed_values_are_refused(hostile: object) -> None:
    with pytest.raises(wire.WireError):
        _decode(hostile)


def test_an_oversized_frame_is_refused_before_it_is_read() -> None:
    with pytest.raises(wire.WireError):
        wire.frame_length((wire.MAX_FRAME + 1).to_bytes(4, "big"))


def test_stand_in_exceptions_keep_trusted_bases_and_import_nothing() -> None:
    chain = [["research_desk.roots", "PathRejected"], ["mcp.server.mcpserver.exceptions", "ToolError"],
             ["builtins", "Exception"], ["builtins", "BaseException"]]
    cls = mirror_class(chain)
    assert issubclass(cls, ToolError) and issubclass(cls, Mirrored) and cls.__name__ == "PathRejected"
    assert mirror_class(chain) is cls, "the same remote class always maps to the same stand-in"
    # A class the host claims to come from a module we have not imported, or one that would steer
    # the checker's control flow, becomes a plain Exception.
    for claimed in (["never_imported_module", "Boom"], ["asyncio.exceptions", "CancelledError"],
                    ["builtins", "KeyboardInterrupt"], ["builtins", "GeneratorExit"]):
        stand_in = mirror_class([claimed])
        assert issubclass(stand_in, Exception) and not issubclass(stand_in, (asyncio.CancelledError, KeyboardInterrupt))
    assert "never_imported_module" not in __import__("sys").modules
    with pytest.raises(wire.WireError):
        mirror_class([["builtins", 3]])


class _FakeHost:
    """A 'host' that answers every request with whatever the test wants it to lie."""

    def __init__(self, reply: bytes) -> None:
        self.ours, theirs = socket.socketpair()
        self.session = RemoteSession(theirs, pid=0)

        def answer() -> None:
            try:
                self.ours.recv(65536)
                self.ours.sendall(reply)
            finally:
                self.ours.close()
        threading.Thread(target=answer, daemon=True).start()


def test_a_lying_host_cannot_hand_the_checker_a_custom_object() -> None:
    handle = wire.frame({"id": 1, "ok": {"$ref": {"id": 7, "type": "research_desk.Anything"}}})
    remote = _FakeHost(handle).session.request("call")
    assert isinstance(remote, Remote)
    assert remote != ["whatever", "the", "check", "expects"], "a handle equals only itself"


def test_garbage_from_the_host_fails_the_request() -> None:
    with pytest.raises(HostEnded):
        _FakeHost(b"\x00\x00\x00\x05{nope").session.request("import", "context")
    with pytest.raises(HostEnded):
        _FakeHost(b"").session.request("import", "context")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A real zygote for the starter edition, unconfined (the sandboxes themselves are tested in test_grading)."""
    workdir = tmp_path_factory.mktemp("submission")
    running_sandbox = SubmissionSandbox(SandboxPlan(Mode.NONE), pristine_starter(), workdir, Limits(10, 1024, 16))
    try:
        yield running_sandbox.start()
    finally:
        running_sandbox.stop()


def _target(running: Running, edition: Path | None = None) -> Target:
    return Target(edition or pristine_starter(), COURSE.package, running.socket, running.scratch)


def test_a_real_host_runs_student_code_and_reports_its_errors(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        context = target.module("context")
        assert isinstance(context, Remote)
        with pytest.raises(Exception) as caught:
            asyncio.run(_open(context))
        assert isinstance(caught.value, Mirrored) and isinstance(caught.value, NotImplementedError)
        assert "TODO(lesson-1)" in str(caught.value)
        with pytest.raises(AttributeError):
            context.no_such_function
    finally:
        target.close()


async def _open(context: Remote) -> None:
    async with context.open_desk(Path("/tmp")):
        pass


class _Spy:
    """A check's own object, handed to student code: it records here, in the check's process."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def note(self, value: object) -> str:
        self.calls.append(value)
        return f"noted {value}"

    async def later(self, value: object) -> int:
        self.calls.append(("later", value))
        return len(self.calls)


def test_student_code_calls_back_into_the_check(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        spy = _Spy()
        operator = target.library("operator")
        shown = target.expose(spy, methods=["note", "later"])
        assert operator.methodcaller("note", [1, "two"])(shown) == "noted [1, 'two']"
        assert spy.calls == [[1, "two"]], "the call ran here, with the arguments as plain data"

        async def awaited() -> object:
            return await operator.methodcaller("later", "x")(shown)
        assert asyncio.run(awaited()) == 2 and spy.calls[-1] == ("later", "x")
        with pytest.raises(AttributeError):
            operator.attrgetter("calls")(shown)  # only the listed methods exist over there
    finally:
        target.close()


def test_an_exposed_function_may_look_at_student_objects_while_they_wait(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        numbers = target.library("collections").deque([3, 1, 2])  # not plain data: a handle on the host's deque
        assert isinstance(numbers, Remote)

        def length_of_numbers() -> int:
            return len(numbers)  # a request to the host while the host waits for this very call

        assert target.library("operator").call(target.expose(length_of_numbers)) == 3
    finally:
        target.close()


def test_an_exposed_function_may_ask_about_student_objects_at_once(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        made = target.library("types").SimpleNamespace(value=7)  # a handle: reading it asks the host

        def peek(_: object) -> object:
            return made.value  # asked the moment the call arrives, before the host may look settled

        builtins = target.library("builtins")
        seen: list[object] = []

        def peek_often() -> None:  # in student code's process, one call after another into the check
            seen.append(builtins.list(builtins.map(target.expose(peek), list(range(200)))))

        worker = threading.Thread(target=peek_often, daemon=True)
        worker.start()
        worker.join(timeout=20)
        assert seen == [[7] * 200], "a call into the check that asked about a student object at once got stuck"
    finally:
        target.close()


def test_an_exposed_function_may_hand_back_a_student_object(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        made = target.library("types").SimpleNamespace(value=7)  # lives with student code: a handle here
        calls = target.library("operator").call

        def same() -> object:
            return made  # a sync function returning a handle: it goes back as the object, never awaited

        returned: list[object] = []
        worker = threading.Thread(target=lambda: returned.append(calls(target.expose(same))), daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert returned and returned[0] is made, "the object did not come back as itself"
    finally:
        target.close()


def test_an_exposed_function_raises_the_students_own_exception(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        roots = target.module("roots")
        error_class = target.library("builtins").LookupError

        def fail() -> None:
            raise target.error(error_class, "from the check")

        with pytest.raises(LookupError, match="from the check"):
            target.library("operator").call(target.expose(fail))
        assert roots is not None
    finally:
        target.close()


def test_what_student_code_prints_reaches_the_check(sandbox: Running) -> None:
    target = _target(sandbox)
    try:
        token = f"printed-{id(target)}"
        target.library("builtins").print(token)
        target.library("logging").getLogger("x").warning("%s-logged", token)
        seen = target.output()
        assert token in seen and f"{token}-logged" in seen
    finally:
        target.close()


def test_a_command_runs_in_the_sandbox_with_its_stdio_signals_and_exit(sandbox: Running, tmp_path: Path) -> None:
    target = _target(sandbox)
    script = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n" \
             "print(sys.stdin.readline().strip().upper(), flush=True)\ntime.sleep(30)\n"
    process = subprocess.Popen(target.command([sys.executable, "-c", script]), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, cwd=sandbox.scratch)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(b"hello\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == b"HELLO"
        process.terminate()
        assert process.wait(timeout=10) == 7, "SIGTERM reaches the command, which exits its own way"
    finally:
        process.kill()
    done = subprocess.run(target.command([sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"]), timeout=20)
    assert done.returncode == -9, "a command killed by a signal looks killed by that signal"
    missing = subprocess.run(target.command(["no-such-program-here"]), capture_output=True, timeout=20)
    assert missing.returncode == 127 and b"no-such-program-here" in missing.stderr


def test_a_host_that_dies_is_seen_gone_at_once(sandbox: Running) -> None:
    """Student code that ends its own process fails the request now, not at the check's time limit."""
    target = _target(sandbox)
    try:
        started = time.monotonic()
        with pytest.raises(HostEnded):
            target.library("os")._exit(3)
        assert time.monotonic() - started < 5, "the check waited for a host that had already ended"
    finally:
        target.close()


def test_a_killed_relay_takes_its_command_along(sandbox: Running, tmp_path: Path) -> None:
    target = _target(sandbox)
    pid_file = tmp_path / "pid"
    script = f"import os, pathlib, time\npathlib.Path({str(pid_file)!r}).write_text(str(os.getpid()))\ntime.sleep(60)\n"
    process = subprocess.Popen(target.command([sys.executable, "-c", script]))
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    command = int(pid_file.read_text())  # the sandbox here is unconfined: the same PID namespace
    process.kill()
    process.wait()
    deadline = time.monotonic() + 20
    while process_alive(command) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_alive(command), "the command kept running after the check's relay was killed"




def test_the_host_side_never_imports_pytest() -> None:
    """What runs beside student code (zygote, host, spawner) is the checker's own, never pytest's."""
    code = ("import sys, checker.host.zygote, checker.host.host, checker.host.spawner\n"
            "from checker.host.warmup import warm_up\nwarm_up()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pytest', '_pytest')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"the host side imported {done.stdout.strip()}"
