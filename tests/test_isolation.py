"""The line between a check and the process hosting student code: what may cross it, and how.

A host is entirely the student's: whatever it sends back must arrive as plain built-in data or
as an opaque handle, never as an object whose behaviour the student wrote.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from mcp.server.mcpserver.exceptions import ToolError

from checker import wire
from checker.remote import HostEnded, Mirrored, Remote, RemoteSession, Zygote, mirror_class
from tests.conftest import COURSE


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


def test_a_real_host_runs_student_code_and_reports_its_errors() -> None:
    zygote = Zygote(10, 1024, 16, [])
    try:
        host = RemoteSession.spawn(zygote.path, str(COURSE.starter), COURSE.package)
        context = host.request("import", "context")
        assert isinstance(context, Remote)
        with pytest.raises(Exception) as caught:
            asyncio.run(_open(context))
        assert isinstance(caught.value, Mirrored) and isinstance(caught.value, NotImplementedError)
        assert "TODO(lesson-1)" in str(caught.value)
        with pytest.raises(AttributeError):
            context.no_such_function
        host.close()
    finally:
        zygote.stop()


async def _open(context: Remote) -> None:
    async with context.open_desk(Path("/tmp")):
        pass
