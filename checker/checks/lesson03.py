"""Lesson 3 checks: progress a client can trust, logs that stay off the wire, a bar that draws it.

Every run builds a workspace with a random number of randomly named documents, so the only way
to pass is to count the real work. Expected values (how many documents, their names, how many
words, how many cells of the bar are full) are computed here from what the check wrote.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import string
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context, MCPServer

from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "lesson-3-check", "version": "1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 9)))


@dataclass
class Workspace:
    root: Path
    documents: dict[str, str]  # name -> text, for every file the indexer must count

    @property
    def names(self) -> list[str]:
        return sorted(self.documents)

    @property
    def words(self) -> int:
        return sum(len(text.split()) for text in self.documents.values())


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A folder of 3 to 9 random documents, plus files an indexer must skip (hidden, not text)."""
    rng = random.Random()
    root = tmp_path / "workspace"
    documents: dict[str, str] = {}
    wanted = rng.randint(3, 9)
    while len(documents) < wanted:
        folder = rng.choice(["", "notes/", f"{_word(rng)}/", "papers/2026/"])
        name = f"{folder}{_word(rng)}-{rng.randint(10, 99)}{rng.choice(['.md', '.txt'])}"
        documents[name] = f"# {_word(rng).title()}\n\n" + " ".join(_word(rng) for _ in range(rng.randint(3, 40)))
    ignored = {".hidden/secret.md": "no", f"{_word(rng)}.png": "not text", ".draft.md": "no"}
    for name, text in {**documents, **ignored}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Workspace(root, documents)


@dataclass
class Update:
    progress: float
    total: float | None
    message: str | None


class Recorder:
    """A progress callback that remembers every notification, in arrival order."""

    def __init__(self) -> None:
        self.updates: list[Update] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append(Update(progress, total, message))


def _text(result: Any) -> str:
    return result.content[0].text if result.content else ""


def _seen_result(result: Any, crash: str = "") -> dict[str, Any]:
    """A tool result as plain data, with its crash, if any."""
    return {"is_error": bool(result.is_error), "text": _text(result), "structured": result.structured_content,
            "crash": crash if result.is_error else ""}


def _summary(result: Any, what: str, target: Target | None = None) -> dict[str, Any]:
    """The IndexSummary of a call. `target` is given when the tool ran where the student's code runs
    (in memory or in the host), so a crash can be explained; a subprocess's crashes are its own."""
    crash = target.tool_crash() if target is not None and result.is_error else ""
    return _summary_seen(_seen_result(result, crash), what)


def _summary_seen(seen: dict[str, Any], what: str) -> dict[str, Any]:
    if seen["crash"]:
        pytest.fail(f"{what}: index_documents crashed: {seen['crash']}")
    assert not seen["is_error"], f"{what}: index_documents returned an error: {seen['text']}"
    summary = seen["structured"]
    assert isinstance(summary, dict), f"{what}: index_documents must return an IndexSummary (structured output)"
    return summary


def _check_summary(summary: dict[str, Any], workspace: Workspace, what: str) -> None:
    n = len(workspace.names)
    assert summary.get("documents") == n, (
        f"{what}: the summary says documents={summary.get('documents')!r}, but the workspace has {n} documents")
    assert sorted(summary.get("titles") or {}) == workspace.names, (
        f"{what}: the summary's titles should cover exactly the documents {workspace.names}, got {sorted(summary.get('titles') or {})}")
    assert summary.get("words") == workspace.words, (
        f"{what}: the summary counts {summary.get('words')!r} words, the documents hold {workspace.words}")


async def _index(target: Target, workspace: Workspace, **client_kwargs: Any) -> tuple[Recorder, dict[str, Any]]:
    """Call index_documents in memory with a recording progress callback."""
    progress = target.module("progress")
    recorder = Recorder()
    async with target.client(progress.create_server(workspace.root), **client_kwargs) as client:
        result = await client.call_tool("index_documents", {}, progress_callback=recorder)
    return recorder, _summary(result, "with a progress callback", target)


def _assert_climbs_to_total(updates: list[Update], where: str) -> None:
    assert updates, (f"{where}: the client passed a progress callback but received no progress at all; "
                     "report progress while the documents are indexed, under the caller's own progress token "
                     "(one you make up reaches no one)")
    values = [u.progress for u in updates]
    for before, after in zip(values, values[1:]):
        assert after > before, (
            f"{where}: progress went from {before:g} to {after:g} (all values: {[f'{v:g}' for v in values]}); "
            "progress is the absolute amount done so far, so it must grow with every report (not a per-step "
            "increment, not a countdown)")
    last = updates[-1]
    assert last.total is not None, f"{where}: the last report has no total, so the client cannot tell how far along it is"
    assert last.progress == last.total, (
        f"{where}: the last report says {last.progress:g} of {last.total:g}; when the work is done, progress "
        "should equal the total")


def _assert_counts_the_work(updates: list[Update], n: int, where: str) -> None:
    totals = sorted({u.total for u in updates}, key=lambda t: -1 if t is None else t)
    assert totals == [n], (
        f"{where}: the workspace holds {n} documents, but the reports gave total={totals}; the total is the "
        "amount of work, known before the first report (here: the number of documents), not a made-up 100")
    done = [u for u in updates if u.progress > 0]
    assert len(done) == n, (
        f"{where}: indexing {n} documents sent {len(done)} progress reports (not counting a 0 at the start); "
        "expected one per document")


@check("progress only grows and ends at the total", points=3,
       hint="Each report carries the absolute amount done so far (1, 2, 3 ... of N), not how much was added "
            "since the last report; the final report equals the total. Look at Context.report_progress.")
async def test_progress_climbs_to_total(target: Target, workspace: Workspace) -> None:
    recorder, _ = await _index(target, workspace)
    _assert_climbs_to_total(recorder.updates, "in memory")


@check("the total is the real number of documents, one report per document", points=2,
       hint="Find the documents before indexing the first one: how many there are is the total. Then report "
            "once per document, so a workspace of 7 documents gives 7 reports ending at 7 of 7, and one with "
            "none gives no report claiming work and a summary of zeros.")
async def test_progress_total_counts_the_work(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    recorder, _ = await _index(target, workspace)
    assert recorder.updates, "no progress arrived although the client passed a progress callback"
    _assert_counts_the_work(recorder.updates, len(workspace.names), "in memory")
    empty = Workspace(tmp_path / "empty", {})
    (empty.root / ".cache").mkdir(parents=True)
    (empty.root / ".cache" / "old.md").write_text("# hidden\nnot a document")
    (empty.root / "scan.png").write_text("not text")
    try:
        recorder, summary = await _index(target, empty)
    except AssertionError as exc:
        pytest.fail(f"a workspace without documents (only a hidden file and an image): {exc}; an empty workspace "
                    "is a valid one (watch for a division by the total)")
    _check_summary(summary, empty, "a workspace without documents")
    claimed = [u for u in recorder.updates if u.progress > 0 or u.total not in (0, None)]
    assert not claimed, (f"indexing no documents reported {claimed[0].progress:g} of {claimed[0].total!r}; with "
                         "nothing to do, no report may claim work done or a total other than 0")


@check("every progress report has a message naming its document", points=2,
       hint="report_progress takes a message too: a short line a person can read, such as which document "
            "was just indexed. Clients show it next to the bar.")
async def test_progress_messages_name_documents(target: Target, workspace: Workspace) -> None:
    recorder, _ = await _index(target, workspace)
    assert recorder.updates, "no progress arrived although the client passed a progress callback"
    empty = [u for u in recorder.updates if not (u.message or "").strip()]
    assert not empty, (f"{len(empty)} of {len(recorder.updates)} progress reports had no message; "
                       "give each one a line a person can read")
    messages = [u.message or "" for u in recorder.updates]
    for name in workspace.names:
        assert any(name in m or PurePosixPath(name).name in m for m in messages), (
            f"no progress message names the document {name!r} (messages: {messages[:3]}...); say which "
            "document each report is about")


@contextmanager
def _disk_through(target: Target, **spies: Callable[..., Any]) -> Iterator[None]:
    """While the block runs, the student's code calls the check's `spies` instead of the given disk
    helpers they are named after (`load_document=...`, `scan_documents=...`), in the documents
    module and in the progress module alike."""
    modules = [target.module("documents"), target.module("progress")]
    saved = [(module, name, getattr(module, name, None)) for module in modules for name in spies]
    exposed = {name: target.expose(spy) for name, spy in spies.items()}
    for module, name, _ in saved:
        setattr(module, name, exposed[name])
    try:
        yield
    finally:
        for module, name, value in saved:
            if value is not None:
                setattr(module, name, value)


LIVE_PATIENCE = 5.0
"""Seconds a load may wait, when graded, for a progress report already on its way to the client."""


@check("progress is reported while the work happens, not all at the end", points=2,
       hint="Report right after each document is done. Collecting every document first and then sending all "
            "the reports in a burst leaves a watching client with a frozen bar for the whole job.")
async def test_progress_is_live(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    n = len(workspace.names)
    original = target.attr("documents", "load_document")
    recorder = Recorder()
    received_at_load: list[int] = []  # per load_document call, in order: reports the client had by then
    # In memory the client gets each report before report_progress returns. Graded, the client is
    # across a socket, and each load holds the server's loop while the check looks: the report sent
    # just before it may still wait in the server's write queue, but the one before that is on the
    # wire (the SDK's writer takes a report only once the previous one is written). So a load may be
    # one report ahead of the client, and waits for whatever is already on its way.
    lag, patience = (1, LIVE_PATIENCE) if target.isolated else (0, 0.0)

    def load_document(root: Any, path: Any) -> Any:
        nonlocal patience
        owed = len(received_at_load) - lag
        deadline = time.monotonic() + patience
        while len(recorder.updates) < owed and time.monotonic() < deadline:
            time.sleep(0.005)
        if len(recorder.updates) < owed:
            patience = 0.0  # it is not coming: no need to wait at every later load too
        received_at_load.append(len(recorder.updates))
        return original(root, path)

    with _disk_through(target, load_document=load_document):
        async with target.client(progress.create_server(workspace.root)) as client:
            result = await client.call_tool("index_documents", {}, progress_callback=recorder)
    _summary(result, "with a progress callback", target)
    loads = len(received_at_load)
    assert loads == n, (f"index_documents loaded {loads} documents with load_document() for a workspace of {n}; "
                        "load each document once with the given helper")
    assert recorder.updates, "no progress arrived although the client asked for it"
    for done, received in enumerate(received_at_load):
        if received < done - lag:
            pytest.fail(f"index_documents started loading document {done + 1} of {n} when the client had received "
                        f"{received} progress report(s) for the {done} documents already done: report after each "
                        "document, as you go, not in a burst at the end")


PACE = 0.25
"""Seconds of `pace` the check asks for: each gap between two documents' loads must be at least this."""


@check("pace seconds pass between one document and the next", points=1,
       hint="index_folder(..., pace=...) is the demo knob that lets a person watch the bar move: after each "
            "document, wait pace seconds (anyio.sleep) when pace is above 0. A parameter you accept must change "
            "what the code does.")
async def test_pace_spaces_the_documents(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    original = target.attr("documents", "load_document")
    loaded_at: list[float] = []

    def load_document(root: Any, path: Any) -> Any:
        loaded_at.append(time.monotonic())
        return original(root, path)

    with _disk_through(target, load_document=load_document):
        async with target.client(progress.create_server(workspace.root, pace=PACE)) as client:
            result = await client.call_tool("index_documents", {})
    _check_summary(_summary(result, "with pace", target), workspace, f"with pace={PACE}")
    gaps = [after - before for before, after in zip(loaded_at, loaded_at[1:])]
    assert len(loaded_at) == len(workspace.names), (
        f"index_documents loaded {len(loaded_at)} documents with load_document() for a workspace of "
        f"{len(workspace.names)}; load each document once with the given helper")
    assert min(gaps) >= PACE, (
        f"with pace={PACE}, the documents were loaded {', '.join(f'{g:.2f}' for g in gaps)} s apart; wait pace "
        "seconds after each document")


LOOP_PATIENCE = 5.0
"""Seconds the check waits, while the student's code is inside a disk helper, for the server to answer."""


class LoopProbe:
    """Asks the server for its tool list while the student's code is inside a disk helper.

    A helper called on a worker thread leaves the server's event loop free, and the answer comes
    at once. Called on the loop itself, it stalls the loop (and every other client) until it
    returns, so no answer comes while it runs. `answered()` runs in the spy (its own thread);
    `serve()` runs in the check's loop beside the tool call.
    """

    def __init__(self) -> None:
        self.asked = 0
        self.done = 0
        self.turn = threading.Condition()

    def answered(self) -> bool:
        with self.turn:
            self.asked += 1
            ticket = self.asked
            return self.turn.wait_for(lambda: self.done >= ticket, timeout=LOOP_PATIENCE)

    async def serve(self, client: Any) -> None:
        while True:
            ticket = self.asked
            if self.done < ticket:
                await client.list_tools()
                with self.turn:
                    self.done = ticket
                    self.turn.notify_all()
            await anyio.sleep(0.005)


@check("indexing touches the disk on a worker thread, never on the event loop", points=2,
       hint="scan_documents and load_document block while the disk works; called straight from an async "
            "function they stall the event loop, and with it every other request. Run each with "
            "await anyio.to_thread.run_sync(fn, *args).")
async def test_index_off_the_event_loop(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    helpers = {name: target.attr("documents", name) for name in ("scan_documents", "load_document")}
    probe = LoopProbe()
    blocked: dict[str, bool] = {}

    def watched(name: str) -> Callable[..., Any]:
        def spy(*args: Any) -> Any:
            if name not in blocked and not any(blocked.values()):  # the first call of each, until one blocks
                blocked[name] = not probe.answered()
            return helpers[name](*args)
        return spy

    with _disk_through(target, **{name: watched(name) for name in helpers}):
        async with target.client(progress.create_server(workspace.root)) as client:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(probe.serve, client)
                result = await client.call_tool("index_documents", {})
                tasks.cancel_scope.cancel()
    _check_summary(_summary(result, "while watched", target), workspace, "while the check watched the disk helpers")
    stalled = [name for name, was in blocked.items() if was]
    assert not stalled, (
        f"while {stalled[0]}() ran, the server could not answer another request for {LOOP_PATIENCE:g} s: it was "
        "called on the event loop. Run it on a worker thread: await anyio.to_thread.run_sync(...)")
    assert set(blocked) == set(helpers), (
        f"index_documents never called {sorted(set(helpers) - set(blocked))} from research_desk.documents: find the "
        "documents with scan_documents() and read each with load_document()")


@check("no progress token, no progress notifications; the result is the same", points=3,
       hint="A client that passes no progress callback sends no progress token, and the server must then send "
            "no progress. Never invent a token of your own: report through ctx.report_progress, which knows "
            "whether the caller asked.")
async def test_no_progress_without_token(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    from mcp.types import ProgressNotification

    seen: list[Any] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, ProgressNotification):
            seen.append(message.params)

    # The legacy era hands every notification to message_handler, so a made-up token is visible.
    async with target.client(progress.create_server(workspace.root), mode="legacy", message_handler=on_message) as client:
        legacy = await client.call_tool("index_documents", {})
    async with target.client(progress.create_server(workspace.root)) as client:
        modern = await client.call_tool("index_documents", {})
    _check_summary(_summary(legacy, "a legacy client without a progress callback", target), workspace,
                   "a legacy client without a progress callback")
    _check_summary(_summary(modern, "a client without a progress callback", target), workspace,
                   "a client without a progress callback")
    assert not seen, (
        f"the client sent no progress token, yet {len(seen)} progress notifications arrived "
        f"(token {seen[0].progress_token!r}); a server must only echo the caller's token, never invent one")


def _stdio_params(target: Target, workspace: Workspace) -> Any:
    return target.stdio_parameters(["-m", f"{target.package}.progress", str(workspace.root)])


def _bad_line(problem: Exception) -> str:
    """The offending stdout line, from the parse error the client reported."""
    errors = getattr(problem, "errors", None)
    if callable(errors):
        try:
            return repr(str(errors()[0].get("input", "")))[:100]
        except Exception:  # noqa: BLE001 - fall back to the error's text
            pass
    return str(problem).splitlines()[0][:120]


def _tail(stream: Any, lines: int = 4) -> str:
    stream.seek(0)
    text = stream.read()
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " | ".join(text.strip().splitlines()[-lines:]) or "(nothing)"


@check("over a real stdio subprocess, progress reaches the client intact", points=3,
       hint="Run `python -m research_desk.progress FOLDER` yourself: main() configures logging and serves the "
            "indexer over stdio. The same progress must arrive as in memory, and the client must not meet a "
            "single line it cannot parse.")
async def test_progress_over_stdio(target: Target, workspace: Workspace) -> None:
    from mcp import Client
    from mcp.client.stdio import stdio_client

    recorder = Recorder()
    problems: list[Exception] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, Exception):
            problems.append(message)

    with tempfile.TemporaryFile("w+") as errlog:
        try:
            with anyio.fail_after(15):
                async with Client(stdio_client(_stdio_params(target, workspace), errlog=errlog),
                                  message_handler=on_message) as client:
                    result = await client.call_tool("index_documents", {}, progress_callback=recorder)
                    await anyio.sleep(0.05)  # callbacks run as their own tasks on a real transport
        except Exception:  # noqa: BLE001 - any failure to talk to the subprocess is the finding
            pytest.fail(f"could not call index_documents over stdio; the server's stderr ends with: {_tail(errlog)}")
    assert not problems, (f"the client met a line on the server's stdout it could not parse: {_bad_line(problems[0])}; "
                          "stdout is the protocol stream on stdio: nothing else may be written there")
    _check_summary(_summary(result, "over stdio"), workspace, "over stdio")
    _assert_climbs_to_total(recorder.updates, "over stdio")
    _assert_counts_the_work(recorder.updates, len(workspace.names), "over stdio")


async def _raw_stdio(target: Target, workspace: Workspace, requests: list[dict[str, Any]]) -> tuple[list[bytes], str]:
    """Speak raw JSON-RPC to the stdio server; return every line it wrote to stdout, and its stderr.

    Unlike an SDK client, this reads stdout until the process has exited, so bytes flushed at
    exit (a buffered print) are seen too.
    """
    command = target.command([sys.executable, "-m", f"{target.package}.progress", str(workspace.root)])
    lines: list[bytes] = []
    buffer = b""

    def answered(request_id: int) -> bool:
        for line in lines:
            try:
                if json.loads(line).get("id") == request_id:
                    return True
            except (ValueError, AttributeError):
                continue
        return False

    with tempfile.TemporaryFile() as errlog:
        process = await anyio.open_process(command, env=target.env(), stderr=errlog)
        try:
            with anyio.fail_after(15):
                for request in requests:
                    await process.stdin.send((json.dumps(request) + "\n").encode())
                    while not answered(request["id"]):
                        try:
                            chunk = await process.stdout.receive()
                        except anyio.EndOfStream:
                            pytest.fail("the stdio server exited before answering a tools/call; its stderr ends "
                                        f"with: {_tail(errlog)}")
                        *complete, buffer = (buffer + chunk).split(b"\n")
                        lines += complete
                await process.stdin.aclose()
                async for chunk in process.stdout:
                    buffer += chunk
                await process.wait()
        except TimeoutError:
            pytest.fail(f"the stdio server did not answer within 15 s; its stderr ends with: {_tail(errlog)}")
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(2, shield=True):
                    await process.wait()
        stderr = _tail(errlog)
    lines += buffer.split(b"\n")
    return [line for line in lines if line.strip()], stderr


@check("the stdio server writes nothing but JSON-RPC to stdout", points=3,
       hint="On stdio, stdout is the wire. A print() (even one that only appears when the buffer is flushed as "
            "the process exits) or a log handler pointed at stdout puts lines there that no client can parse. "
            "Log with the logging module to stderr.")
async def test_stdout_is_only_jsonrpc(target: Target, workspace: Workspace) -> None:
    from mcp.types import jsonrpc_message_adapter

    token = f"lesson3-{random.randint(10_000, 99_999)}"
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "index_documents", "arguments": {}, "_meta": {**MODERN_META, "progressToken": token}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "index_documents", "arguments": {}, "_meta": MODERN_META}},
    ]
    lines, stderr = await _raw_stdio(target, workspace, requests)
    messages: list[dict[str, Any]] = []
    for line in lines:
        try:
            jsonrpc_message_adapter.validate_json(line)
        except ValueError:
            pytest.fail(f"the server wrote {line[:80]!r} to stdout, which is not a JSON-RPC message: on stdio, "
                        "stdout carries the protocol, so a print() or a log line there corrupts the stream")
        messages.append(json.loads(line))
    results = {m.get("id"): m for m in messages if "id" in m}
    for request_id in (1, 2):
        reply = results.get(request_id, {})
        assert "result" in reply and not reply["result"].get("isError"), (
            f"tools/call #{request_id} did not succeed over stdio: {json.dumps(reply)[:200]}; stderr: {stderr}")
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    strangers = sorted({str(p.get("progressToken")) for p in progress} - {token})
    assert not strangers, (f"progress notifications carried the token(s) {strangers}, which the client never sent "
                           f"(it sent {token!r} once, and no token the second time); echo only the caller's token")
    n = len(workspace.names)
    assert len(progress) == n, (f"the call with a progress token got {len(progress)} progress notifications on the "
                                f"wire for {n} documents; expected one per document")


@check("over HTTP progress streams as SSE; json_response=True drops it, the call still succeeds", points=2,
       hint="Progress rides on the response stream of the same POST. With json_response=True the reply is one "
            "JSON body, so there is nowhere to put notifications: the tool must still finish and return the "
            "same summary.")
async def test_http_sse_and_json_response(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    found: dict[bool, tuple[Recorder, Any]] = {}
    for json_response in (False, True):
        app = progress.create_server(workspace.root).streamable_http_app(json_response=json_response)
        recorder = Recorder()
        async with target.http(app) as url:
            async with target.client(url) as client:
                result = await client.call_tool("index_documents", {}, progress_callback=recorder)
                await anyio.sleep(0.05)
        found[json_response] = (recorder, result)
    sse, plain = found[False], found[True]
    _check_summary(_summary(sse[1], "over HTTP (SSE)", target), workspace, "over HTTP (SSE)")
    _assert_climbs_to_total(sse[0].updates, "over HTTP (SSE)")
    _assert_counts_the_work(sse[0].updates, len(workspace.names), "over HTTP (SSE)")
    _check_summary(_summary(plain[1], "over HTTP with json_response=True", target), workspace,
                   "over HTTP with json_response=True")
    assert not plain[0].updates, (f"{len(plain[0].updates)} progress notifications arrived over a json_response=True "
                                  "app, which answers with a single JSON body; they should have been dropped")


@contextmanager
def _redirected_output(target: Target) -> Iterator[tuple[Any, Any, Any]]:
    """Where the student's code runs, send stdout and stderr to two fresh StringIOs while the block
    runs; yield that process's logging module and the two. Whatever the block did to the package
    logger and the root logger is undone afterwards."""
    logging_, contextlib_ = target.library("logging"), target.library("contextlib")
    package, root = logging_.getLogger("research_desk"), logging_.getLogger()
    saved = (list(package.handlers), package.level, package.propagate, list(root.handlers), root.level)
    out, err = target.library("io").StringIO(), target.library("io").StringIO()
    try:
        with contextlib_.redirect_stdout(out), contextlib_.redirect_stderr(err):
            yield logging_, out, err
    finally:
        package.handlers, package.level, package.propagate = saved[0], saved[1], saved[2]
        root.handlers, root.level = saved[3], saved[4]


TIMESTAMP = re.compile(r"\d{1,2}:\d{2}(:\d{2})?|\b\d{10}(\.\d+)?\b")
"""A clock time (12:04 or 12:04:31) or seconds since the epoch: any line a reader can date."""


@check("configure_logging sends the package's logs to stderr, once, never stdout", points=2,
       hint="Give the package logger ('research_desk') its own StreamHandler on stderr with a format (time, level, "
            "logger name, message) and the level it is given, and return that logger. logging.basicConfig does "
            "nothing once the root logger has a handler (MCPServer installs one); records that also travel up to "
            "the root's handler print twice (propagate); a second call must not add a second handler, but its "
            "level counts.")
async def test_configure_logging_uses_stderr(target: Target) -> None:
    progress = target.module("progress")
    token = f"lesson3-log-{random.randint(10_000, 99_999)}"
    with _redirected_output(target) as (logging_, stdout, stderr):
        root = logging_.getLogger()
        already = logging_.StreamHandler(stderr)  # as after MCPServer(...) configured the root logger
        already.setFormatter(logging_.Formatter("ROOT %(levelname)s %(name)s: %(message)s"))
        root.handlers = [already]
        root.setLevel(logging_.WARNING)
        package = logging_.getLogger("research_desk")
        package.handlers, package.propagate = [], True  # as in a fresh process
        returned = [progress.configure_logging("WARNING") is package]
        logger = logging_.getLogger("research_desk.progress")
        logger.info("%s-quiet", token)
        returned.append(progress.configure_logging("DEBUG") is package)
        logger.info("%s indexed", token)
        logger.debug("%s-debug", token)
    out, written = stdout.getvalue(), stderr.getvalue()
    assert token not in out, (
        "a log record reached stdout: on the stdio transport that line lands in the protocol stream; log to stderr")
    assert f"{token}-quiet" not in written, (
        "after configure_logging('WARNING') an INFO record was still written: honour the level you are given")
    lines = [line for line in written.splitlines() if f"{token} indexed" in line]
    assert lines, ("an INFO record from research_desk.progress did not reach stderr after configure_logging('WARNING') "
                   "then configure_logging('DEBUG'): give the package logger its own stderr handler, and let a later "
                   "call set the level again")
    assert len(lines) == 1, (
        f"one record was written {len(lines)} times ({lines}): a second configure_logging() call added another "
        "handler, or the records also travel up to the root logger's handler (set propagate to False)")
    assert f"{token}-debug" in written, "configure_logging('DEBUG') still held a DEBUG record back: apply its level"
    line = lines[0]
    assert "INFO" in line and "research_desk.progress" in line and TIMESTAMP.search(line.replace(token, "")), (
        f"the log line {line!r} should show the time, the level and the logger's name, so a reader knows when and "
        "who said it")
    assert returned == [True, True], (
        f"configure_logging should return the package logger, logging.getLogger('research_desk'); per call that "
        f"held: {returned}")


class _Records:
    """The queue of a QueueHandler where the student's code runs: each INFO (or higher) log record
    there is put here, in the check, as its [pathname, level, message]."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, str]] = []

    def put_nowait(self, record: Any) -> None:
        self.records.append((str(record.pathname), int(record.levelno), str(record.getMessage())))


@contextmanager
def _capture_logs_and_warnings(target: Target) -> Iterator[tuple[_Records, list[str]]]:
    """While the block runs, every log record of the root and package loggers (INFO and up) and every
    MCP deprecation warning where the student's code runs reach the check (yielded as they come)."""
    from mcp import MCPDeprecationWarning

    logging_ = target.library("logging")
    sink, deprecated = _Records(), []

    def showwarning(message: Any, category: Any, *where: Any) -> None:
        if isinstance(category, type) and issubclass(category, MCPDeprecationWarning):
            deprecated.append(str(message))

    collect = target.library("logging.handlers").QueueHandler(target.expose(sink, methods=["put_nowait"]))
    collect.setLevel(logging_.INFO)
    watched = [logging_.getLogger(), logging_.getLogger("research_desk")]
    saved = [(logger, logger.level) for logger in watched]
    for logger in watched:
        logger.addHandler(collect)
        logger.setLevel(logging_.DEBUG)
    try:
        with warnings.catch_warnings():  # in-process the student's warnings module is this one: restore it
            served = target.library("warnings")
            served.simplefilter("always")
            served.showwarning = target.expose(showwarning)
            yield sink, deprecated
    finally:
        for logger, level in saved:
            logger.removeHandler(collect)
            logger.setLevel(level)


@check("the tool logs with the logging module, not deprecated protocol logging", points=2,
       hint="A module-level logger (logging.getLogger) and one INFO line summarising the work (how many "
            "documents). ctx.info()/ctx.log() send protocol log notifications, deprecated in 2026-07-28: they "
            "warn, and modern clients drop them unless they opted in.")
async def test_tool_logs_with_stdlib_logging(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    protocol_logs: list[Any] = []

    async def on_log(params: Any) -> None:
        protocol_logs.append(params)

    with _capture_logs_and_warnings(target) as (sink, deprecated):
        async with target.client(progress.create_server(workspace.root), mode="legacy",
                                 logging_callback=on_log) as client:
            result = await client.call_tool("index_documents", {})
    _check_summary(_summary(result, "a legacy client", target), workspace, "a legacy client")
    assert not deprecated, f"the tool used a deprecated API: {deprecated[0]}"
    assert not protocol_logs, (
        f"the tool sent {len(protocol_logs)} protocol log notifications (ctx.info / ctx.log), deprecated since "
        "2026-07-28; log with the logging module, which writes to stderr")
    edition = str(target.edition.resolve())
    n = len(workspace.names)
    ours = [message for pathname, levelno, message in sink.records
            if str(Path(pathname).resolve()).startswith(edition) and levelno >= logging.INFO]
    assert any(str(n) in message for message in ours), (
        f"indexing {n} documents logged no INFO (or higher) line mentioning {n} through the logging module "
        f"(found: {ours[:3]}); log a one-line summary with a module-level logger")


def _bar_cases(rng: random.Random) -> Iterator[tuple[int, float, float]]:
    """(width, progress, total) triples whose exact fraction of cells is never a float-rounding edge.

    Numbers arrive as floats, as they do from JSON (3.0 of 7.0): the text must still read 3/7.
    """
    yield rng.randint(10, 40), 0.0, float(rng.randint(3, 50))
    total = rng.randint(3, 50)
    yield rng.randint(10, 40), float(total), float(total)
    made = 0
    while made < 6:
        width, total = rng.randint(10, 40), rng.randint(3, 50)
        done = rng.randint(1, total - 1)
        if (width * done) % total:
            made += 1
            yield width, float(done), float(total)
    while True:  # a half step (2.5 of 7): written with :g as 2.5
        width, total = rng.randint(10, 40), rng.randint(4, 40)
        halves = rng.randint(1, 2 * total - 2) | 1
        if (width * halves) % (2 * total):
            yield width, halves / 2, float(total)
            return


@check("ProgressBar draws the fraction done, the count and the message", points=2,
       hint="The done part is width x progress / total cells, rounded down and never more than width; the rest "
            "are empty cells. The line reads label, bar, progress/total, message, numbers formatted with :g "
            "(3, not 3.0; 2.5 stays 2.5). Without a total, or with a total of 0, there is no bar: only the label, "
            "the count and the message.")
async def test_progress_bar_draws_the_fraction(target: Target) -> None:
    progress_bar = target.attr("progress", "ProgressBar")
    rng = random.Random()
    for width, done, total in _bar_cases(rng):
        label, message = _word(rng), f"indexed {_word(rng)}.md"
        taken, text = _draw_bar(target, progress_bar, label, width, done, total, message)
        assert taken is True, (
            f"the first notification ({done:g} of {total:g}) should be taken (update returns True), even at 0: "
            "nothing was shown before it")
        full = math.floor(Fraction(done).limit_denominator(2) * width / Fraction(total))
        assert text.count("█") == full and text.count("░") == width - full, (
            f"{done:g} of {total:g} on a bar {width} cells wide should show {full} full and {width - full} empty "
            f"cells, but the text is {text!r}")
        _assert_in_order(text, [label, "█" if full else "░", f"{done:g}/{total:g}", message])
    width, total = rng.randint(10, 40), rng.randint(3, 40)
    over = total + rng.randint(1, 20)
    _, text = _draw_bar(target, progress_bar, "past", width, float(over), float(total), "overshoot")
    assert text.count("█") == width and "░" not in text and f"{over}/{total}" in text, (
        f"{over} of {total} (past the total) on a bar {width} cells wide should show all {width} cells full and "
        f"the count {over}/{total}, but the text is {text!r}: the done part is never more than the whole bar")
    for missing in (None, 0.0):
        count = rng.randint(2, 99)
        _, text = _draw_bar(target, progress_bar, "scan", 20, float(count), missing, "still going")
        assert "█" not in text and "░" not in text, (
            f"with total={missing!r} the bar cannot be drawn (nothing to divide by), but the text is {text!r}")
        _assert_in_order(text, ["scan", f"{count:g}", "still going"])

    steps = rng.randint(3, 12)
    seen = await _bar_follows_steps(target, progress_bar, steps)
    progress, total, updates = seen["state"]
    assert (progress, total, updates) == (steps, steps, steps), (
        f"used as a progress_callback for a tool reporting 1..{steps} of {steps}, the bar ended at "
        f"progress={progress!r}, total={total!r} after {updates} updates; expected {steps}, {steps}, {steps}")
    assert seen["text"] in seen["drawn"], "the bar's final text was never drawn to its stream"


def _assert_in_order(text: str, parts: list[str]) -> None:
    """Each part is in `text`, each after the one before it."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, (f"the bar text {text!r} should contain {part!r}" if part not in text else
                            f"the bar text {text!r} should read {' then '.join(repr(p) for p in parts)}, in that order")
        at = found + len(part)


def _draw_bar(target: Target, progress_bar: Any, label: str, width: int, done: float, total: float | None,
              message: str) -> tuple[Any, Any]:
    """A fresh bar takes one notification: what update returned, and the bar's text."""
    bar = progress_bar(label, width=width, stream=target.library("io").StringIO())
    taken = bar.update(done, total, message)
    return taken, bar.text()


async def _bar_follows_steps(target: Target, progress_bar: Any, steps: int) -> dict[str, Any]:
    """A bar as the progress_callback of a reference tool reporting 1..steps, through the check's
    in-memory client. Returns where the bar ended, its text and all it drew."""
    from mcp import Client

    stream = target.library("io").StringIO()
    bar = progress_bar("steps", stream=stream)
    async with Client(_steps_server()) as client:
        await client.call_tool("steps", {"n": steps}, progress_callback=bar)
    return {"state": [bar.progress, bar.total, bar.updates], "text": bar.text(), "drawn": stream.getvalue()}


def _steps_server() -> MCPServer:
    """A reference tool with correct progress, so the bar is checked on its own."""
    server = MCPServer("steps", log_level="WARNING")

    async def steps(n: int, ctx: Context) -> int:
        for done in range(1, n + 1):
            await ctx.report_progress(done, n, f"step {done}")
        return n

    server.tool()(steps)
    return server


@check("ProgressBar never moves backwards on late or partial notifications", points=2,
       hint="On a real transport each callback runs as its own task, so an older notification can arrive "
            "after a newer one. Ignore anything that does not move forward, and keep the last known total "
            "and message when a notification leaves them out.")
async def test_progress_bar_ignores_stale_updates(target: Target) -> None:
    progress_bar = target.attr("progress", "ProgressBar")
    rng = random.Random()
    total = rng.randint(10, 60)
    ahead = rng.randint(3, total - 3)
    late = rng.randint(1, ahead - 1)
    seen = await _stale_updates(target, progress_bar, rng.randint(10, 30), total, ahead, late)
    assert seen["late"] is False, (
        f"after showing {ahead}/{total}, a late notification for {late} should be ignored (update returns False)")
    assert seen["repeated"] is False, f"a repeated {ahead}/{total} does not move the bar: ignore it"
    progress, message = seen["after_late"]
    assert (progress, message) == (ahead, "newest"), (
        f"the bar moved back to {progress!r} ({message!r}) after a late notification; it should stay at "
        f"{ahead} ('newest')")
    assert seen["redrawn"] == seen["drawn"], "a late notification redrew the bar; only a change should draw"
    assert seen["updates"] == 1, f"only one notification moved the bar, but updates={seen['updates']}"
    assert seen["forward"] is True, "a notification that moves forward should be taken"
    total_now, message_now, progress_now, updates_now = seen["end"]
    assert total_now == total and message_now == "newest", (
        f"a notification without total or message erased them (total={total_now!r}, message={message_now!r}); "
        "keep the last known ones")
    assert progress_now == ahead + 1 and updates_now == 2, "the forward notification was not recorded"


async def _stale_updates(target: Target, progress_bar: Any, width: int, total: int, ahead: int,
                         late: int) -> dict[str, Any]:
    """Show `ahead`/`total` on a bar, then feed it late, repeated and partial notifications.

    Returns what the bar said and drew after each step, for the check to judge.
    """
    stream = target.library("io").StringIO()
    bar = progress_bar("job", width=width, stream=stream)
    await bar(ahead, total, "newest")
    seen: dict[str, Any] = {"drawn": stream.getvalue()}
    seen["late"] = bar.update(late, total, "older")
    seen["repeated"] = bar.update(ahead, total, "again")
    await bar(late, total, "older")
    seen["after_late"] = [bar.progress, bar.message]
    seen["redrawn"] = stream.getvalue()
    seen["updates"] = bar.updates
    seen["forward"] = bar.update(ahead + 1, None, None)
    seen["end"] = [bar.total, bar.message, bar.progress, bar.updates]
    return seen
