"""Lesson 3's plumbing: a workspace to index, a recording progress callback, spies on the disk helpers,
a raw stdio driver, log and warning capture, and the ProgressBar's drivers.

Shared by the lesson's visible checks (`lesson03.py`, `lesson03_logging.py`) and its hidden checks.
What the checks expect (how many documents, words, reports, cells) is computed from what was
written here, never by the code under test.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.server.mcpserver import Context, MCPServer

from checker.checks.kit.text import text_of, word
from checker.target import Target

MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "lesson-3-check", "version": "1.0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


@dataclass
class Workspace:
    """A folder of documents to index, and what indexing it must count."""

    root: Path
    documents: dict[str, str]  # name -> text, for every file the indexer must count

    @property
    def names(self) -> list[str]:
        return sorted(self.documents)

    @property
    def words(self) -> int:
        return sum(len(text.split()) for text in self.documents.values())

    def keep(self, count: int) -> Workspace:
        """This workspace with only its first `count` documents (the others deleted from disk), for a
        check whose time grows with every document it waits between."""
        kept = self.names[:count]
        for name in self.names[count:]:
            (self.root / name).unlink()
        return Workspace(self.root, {name: self.documents[name] for name in kept})


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A folder of 3 to 9 random documents, plus files an indexer must skip (hidden, not text)."""
    rng = random.Random()
    root = tmp_path / "workspace"
    documents: dict[str, str] = {}
    wanted = rng.randint(3, 9)
    while len(documents) < wanted:
        folder = rng.choice(["", "notes/", f"{word(rng)}/", "papers/2026/"])
        name = f"{folder}{word(rng)}-{rng.randint(10, 99)}{rng.choice(['.md', '.txt'])}"
        documents[name] = f"# {word(rng).title()}\n\n" + " ".join(word(rng) for _ in range(rng.randint(3, 40)))
    ignored = {".hidden/secret.md": "no", f"{word(rng)}.png": "not text", ".draft.md": "no"}
    for name, text in {**documents, **ignored}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Workspace(root, documents)


@dataclass
class Update:
    """One progress notification as the client received it."""

    progress: float
    total: float | None
    message: str | None


class Recorder:
    """A progress callback that remembers every notification, in arrival order."""

    def __init__(self) -> None:
        self.updates: list[Update] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.updates.append(Update(progress, total, message))


def seen_result(result: Any, crash: str = "") -> dict[str, Any]:
    """A tool result as plain data, with its crash, if any."""
    return {"is_error": bool(result.is_error), "text": text_of(result), "structured": result.structured_content,
            "crash": crash if result.is_error else ""}


def summary_of(result: Any, what: str, target: Target | None = None) -> dict[str, Any]:
    """The IndexSummary of a call. `target` is given when the tool ran where the student's code runs
    (in memory or in the host), so a crash can be explained; a subprocess's crashes are its own."""
    crash = target.tool_crash() if target is not None and result.is_error else ""
    return summary_seen(seen_result(result, crash), what)


def summary_seen(seen: dict[str, Any], what: str) -> dict[str, Any]:
    """The IndexSummary in a plain-data result; a crash, an error or another shape fails the check."""
    if seen["crash"]:
        pytest.fail(f"{what}: index_documents crashed: {seen['crash']}")
    assert not seen["is_error"], f"{what}: index_documents returned an error: {seen['text']}"
    summary = seen["structured"]
    assert isinstance(summary, dict), f"{what}: index_documents must return an IndexSummary (structured output)"
    return summary


def check_summary(summary: dict[str, Any], workspace: Workspace, what: str) -> None:
    """The summary counts exactly the workspace: its documents, their titles and their words."""
    n = len(workspace.names)
    assert summary.get("documents") == n, (
        f"{what}: the summary says documents={summary.get('documents')!r}, but the workspace has {n} documents")
    assert sorted(summary.get("titles") or {}) == workspace.names, (
        f"{what}: the summary's titles should cover exactly the documents {workspace.names}, got "
        f"{sorted(summary.get('titles') or {})}")
    assert summary.get("words") == workspace.words, (
        f"{what}: the summary counts {summary.get('words')!r} words, the documents hold {workspace.words}")


async def index_with_progress(target: Target, workspace: Workspace,
                              **client_kwargs: Any) -> tuple[Recorder, dict[str, Any]]:
    """Call index_documents in memory with a recording progress callback."""
    progress = target.module("progress")
    recorder = Recorder()
    async with target.client(progress.create_server(workspace.root), **client_kwargs) as client:
        result = await client.call_tool("index_documents", {}, progress_callback=recorder)
    return recorder, summary_of(result, "with a progress callback", target)


def assert_climbs_to_total(updates: list[Update], where: str) -> None:
    """Progress arrived, grew with every report, and ended at its total."""
    assert updates, (f"{where}: the client passed a progress callback but received no progress at all; "
                     "report progress while the documents are indexed, under the caller's own progress token "
                     "(one you make up reaches no one)")
    values = [u.progress for u in updates]
    for before, after in zip(values, values[1:], strict=False):
        assert after > before, (
            f"{where}: progress went from {before:g} to {after:g} (all values: {[f'{v:g}' for v in values]}); "
            "progress is the absolute amount done so far, so it must grow with every report (not a per-step "
            "increment, not a countdown)")
    last = updates[-1]
    assert last.total is not None, (
        f"{where}: the last report has no total, so the client cannot tell how far along it is")
    assert last.progress == last.total, (
        f"{where}: the last report says {last.progress:g} of {last.total:g}; when the work is done, progress "
        "should equal the total")


def assert_counts_the_work(updates: list[Update], n: int, where: str) -> None:
    """The total is the number of documents, and each document got one report."""
    totals = sorted({u.total for u in updates}, key=lambda t: -1 if t is None else t)
    assert totals == [n], (
        f"{where}: the workspace holds {n} documents, but the reports gave total={totals}; the total is the "
        "amount of work, known before the first report (here: the number of documents), not a made-up 100")
    done = [u for u in updates if u.progress > 0]
    assert len(done) == n, (
        f"{where}: indexing {n} documents sent {len(done)} progress reports (not counting a 0 at the start); "
        "expected one per document")


@contextmanager
def disk_through(target: Target, **spies: Callable[..., Any]) -> Iterator[None]:
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


def stdio_params(target: Target, workspace: Workspace) -> Any:
    """How to start the student's `progress` module as a stdio server on the workspace."""
    return target.stdio_parameters(["-m", f"{target.package}.progress", str(workspace.root)])


def bad_line(problem: Exception) -> str:
    """The offending stdout line, from the parse error the client reported."""
    errors = getattr(problem, "errors", None)
    if callable(errors):
        try:
            return repr(str(errors()[0].get("input", "")))[:100]
        except Exception:  # noqa: BLE001 - fall back to the error's text
            pass
    return str(problem).splitlines()[0][:120]


def tail(stream: Any, lines: int = 4) -> str:
    """The last `lines` lines a process wrote to `stream`, on one line, for a failure message."""
    stream.seek(0)
    text = stream.read()
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return " | ".join(text.strip().splitlines()[-lines:]) or "(nothing)"


async def raw_stdio(target: Target, workspace: Workspace, requests: list[dict[str, Any]]) -> tuple[list[bytes], str]:
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
        stdin, stdout = process.stdin, process.stdout
        try:
            assert stdin is not None and stdout is not None, "open_process pipes stdin and stdout by default"
            with anyio.fail_after(15):
                for request in requests:
                    await stdin.send((json.dumps(request) + "\n").encode())
                    while not answered(request["id"]):
                        try:
                            chunk = await stdout.receive()
                        except anyio.EndOfStream:
                            pytest.fail("the stdio server exited before answering a tools/call; its stderr ends "
                                        f"with: {tail(errlog)}")
                        *complete, buffer = (buffer + chunk).split(b"\n")
                        lines += complete
                await stdin.aclose()
                async for chunk in stdout:
                    buffer += chunk
                await process.wait()
        except TimeoutError:
            pytest.fail(f"the stdio server did not answer within 15 s; its stderr ends with: {tail(errlog)}")
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(2, shield=True):
                    await process.wait()
        stderr = tail(errlog)
    lines += buffer.split(b"\n")
    return [line for line in lines if line.strip()], stderr


@contextmanager
def redirected_output(target: Target) -> Iterator[tuple[Any, Any, Any]]:
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


class Records:
    """The queue of a QueueHandler where the student's code runs: each INFO (or higher) log record
    there is put here, in the check, as its [pathname, level, message]."""

    def __init__(self) -> None:
        self.records: list[tuple[str, int, str]] = []

    def put_nowait(self, record: Any) -> None:
        self.records.append((str(record.pathname), int(record.levelno), str(record.getMessage())))


@contextmanager
def capture_logs_and_warnings(target: Target) -> Iterator[tuple[Records, list[str]]]:
    """While the block runs, every log record of the root and package loggers (INFO and up) and every
    MCP deprecation warning where the student's code runs reach the check (yielded as they come)."""
    from mcp import MCPDeprecationWarning

    logging_ = target.library("logging")
    sink, deprecated = Records(), []

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


def bar_cases(rng: random.Random) -> Iterator[tuple[int, float, float]]:
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


def assert_in_order(text: str, parts: list[str]) -> None:
    """Each part is in `text`, each after the one before it."""
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, (f"the bar text {text!r} should contain {part!r}" if part not in text else
                            f"the bar text {text!r} should read {' then '.join(repr(p) for p in parts)}, in that order")
        at = found + len(part)


def draw_bar(target: Target, progress_bar: Any, label: str, width: int, done: float, total: float | None,
             message: str) -> tuple[Any, Any]:
    """A fresh bar takes one notification: what update returned, and the bar's text."""
    bar = progress_bar(label, width=width, stream=target.library("io").StringIO())
    taken = bar.update(done, total, message)
    return taken, bar.text()


async def bar_follows_steps(target: Target, progress_bar: Any, steps: int) -> dict[str, Any]:
    """A bar as the progress_callback of a reference tool reporting 1..steps, through the check's
    in-memory client. Returns where the bar ended, its text and all it drew."""
    from mcp import Client

    stream = target.library("io").StringIO()
    bar = progress_bar("steps", stream=stream)
    async with Client(steps_server()) as client:
        await client.call_tool("steps", {"n": steps}, progress_callback=bar)
    return {"state": [bar.progress, bar.total, bar.updates], "text": bar.text(), "drawn": stream.getvalue()}


def steps_server() -> MCPServer:
    """A reference tool with correct progress, so the bar is checked on its own."""
    server = MCPServer("steps", log_level="WARNING")

    async def steps(n: int, ctx: Context) -> int:
        for done in range(1, n + 1):
            await ctx.report_progress(done, n, f"step {done}")
        return n

    server.tool()(steps)
    return server


async def stale_updates(target: Target, progress_bar: Any, width: int, total: int, ahead: int,
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
