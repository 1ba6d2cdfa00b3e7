"""Lesson 3: progress and logging notifications.

Indexing a workspace takes a while, so the tool says how far it has got: after each document
it reports an *absolute* count against a total it knew up front, with a line a person can
read. The client asked for those reports by passing a progress callback (which puts a progress
token on the request); a client that did not ask gets none, and the tool works the same.

Logs are a different channel. The server writes them with the standard `logging` module to
stderr, never to stdout: on the stdio transport stdout *is* the JSON-RPC stream, and one stray
line there is a message the client cannot parse. (The 2025-era alternative, protocol logging
with `ctx.info(...)`, is deprecated since 2026-07-28; it survives here only as a labelled lab.)

The client side is here too: `ProgressBar` is a progress callback that draws a live bar, in
a notebook or a terminal.

Run the indexer as a stdio server with `python -m research_desk.progress FOLDER`.

What `course check 3` holds this module to (each function's docstring says more):

- `index_folder`: the total is the number of documents, found before the first report; one
  report per document, absolute (1, 2 ... of N), ending at N of N, each with a message naming
  its document, sent as each document is done; none without a progress token, and the same
  summary either way, over memory, stdio and HTTP (SSE; a JSON response drops them). An empty
  workspace is valid: zeros, and no report claiming work. `scan_documents` and `load_document`
  run on a worker thread, never on the event loop; `pace` seconds pass after each document. One
  INFO line through `logging` names how many documents; nothing on stdout, no `ctx.info`.
- `configure_logging(level)`: the `research_desk` logger gets its own stderr handler (time, level,
  logger name, message) at `level`; records do not also reach the root logger's handler; a
  second call adds no handler but applies its level; returns the package logger.
- `ProgressBar.update` and `.text`: see their docstrings (late, repeated and partial
  notifications; cells rounded down and capped at `width`; no bar without a positive total).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from research_desk import __version__
from research_desk.documents import load_document, scan_documents

# Named explicitly (not __name__) so the records carry the same name when this file runs as
# `python -m research_desk.progress`, where __name__ would be "__main__".
log = logging.getLogger("research_desk.progress")

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_HANDLER_NAME = "research_desk.stderr"


class IndexSummary(BaseModel):
    """What `index_documents` returns once every document is indexed."""

    documents: int
    words: int
    titles: dict[str, str]  # document name -> its title


async def index_folder(root: Path, ctx: Context, *, pace: float = 0.0) -> IndexSummary:
    """Index every document under `root` and report progress after each one.

    Each report is absolute: how many documents are done so far, out of a total known before
    the first one (the number of documents found), with a message naming the document just
    indexed, sent before the next document is loaded. A client that asked for no progress gets
    no notifications, and the result is the same either way. A folder without documents is
    indexed to zeros, with no report claiming work. Finding and loading documents blocks on the
    disk, so both run on a worker thread: the event loop keeps serving other requests meanwhile.
    `pace` seconds (not milliseconds) are waited after each document when it is above 0 (a demo
    knob: 0 in tests). One INFO log line says how many documents were indexed.
    """
    # BEGIN SOLUTION lesson-3: find every document first (that is the total), then load them one by
    #   one, touching the disk only on a worker thread (anyio.to_thread.run_sync); after each,
    #   report absolute progress (done so far, the total, a message naming the document), and wait
    #   `pace` seconds when pace > 0. Log a one-line summary with the standard logging module. Send
    #   nothing when the caller asked for no progress.
    paths = await anyio.to_thread.run_sync(scan_documents, root)   # disk work on a worker thread, off the loop
    total = len(paths)
    log.debug("indexing %d documents under %s", total, root)
    titles: dict[str, str] = {}
    words = 0
    for done, path in enumerate(paths, start=1):
        document = await anyio.to_thread.run_sync(load_document, root, path)
        titles[document.name] = document.title
        words += document.words
        log.debug("indexed %s (%d words)", document.name, document.words)
        await ctx.report_progress(done, total, f"indexed {document.name}")
        if pace > 0:
            await anyio.sleep(pace)
    log.info("indexed %d documents, %d words", total, words)
    return IndexSummary(documents=total, words=words, titles=titles)
    # END SOLUTION


async def index_in_worker(root: Path, ctx: Context, *, report_every: float, pace: float = 0.0) -> IndexSummary:
    """`index_folder` for a busy server: the same summary, with progress at a bounded rate (given).

    `index_folder` goes to a worker thread and back for every document, and sends an event for
    each. Every trip back and every event waits for its turn on the event loop, behind the work of
    every other client: under load, twenty small documents cost some forty turns where a call with
    one answer needs a handful, and a progress bar gains nothing from twenty redraws in a few
    milliseconds. So here the whole job is one trip to a worker thread, which reports progress
    (absolute, as before) at most once per `report_every` seconds; the last document is always
    reported, so the client still sees the count reach the total, but from the event loop once the
    job is back: sent from the thread, it would hold the job for one more round trip through a busy
    loop. `report_every=0` reports every document. Between documents the job checks whether its
    caller has gone, and stops if so.
    """

    def job() -> tuple[IndexSummary, str]:
        paths = scan_documents(root)
        total = len(paths)
        titles: dict[str, str] = {}
        words = 0
        last = ""
        reported = time.monotonic()
        for done, path in enumerate(paths, start=1):
            anyio.from_thread.check_cancelled()
            document = load_document(root, path)
            titles[document.name] = document.title
            words += document.words
            last = document.name
            now = time.monotonic()
            if done < total and now - reported >= report_every:
                reported = now
                anyio.from_thread.run(ctx.report_progress, done, total, f"indexed {document.name}")
            if pace > 0:
                time.sleep(pace)
        log.info("indexed %d documents, %d words", total, words)
        return IndexSummary(documents=total, words=words, titles=titles), last

    summary, last = await anyio.to_thread.run_sync(job)
    if summary.documents:
        await ctx.report_progress(summary.documents, summary.documents, f"indexed {last}")
    return summary


def register(server: MCPServer, *, root: Path | str, pace: float = 0.0, report_every: float | None = None) -> None:
    """Add the `index_documents` tool to `server`, indexing the workspace folder `root`.

    Args:
        server: the server to extend (the capstone passes its own).
        root: the workspace folder the tool indexes; fixed by whoever runs the server, so the
            model cannot point the tool at another folder.
        pace: seconds to wait after each document, so a progress bar has something to show in
            a demo. Keep it 0 in production and tests.
        report_every: None (this lesson's way) indexes with `index_folder`, reporting after every
            document. A number of seconds indexes with `index_in_worker` instead: one worker-thread
            job that reports at most that often, and always the last document (the capstone's
            `progress_interval` setting; 0 reports every document).
    """
    folder = Path(root)

    async def index_documents(ctx: Context) -> IndexSummary:
        """Index every document in the workspace and summarise it (reports its progress as it goes)."""
        if report_every is None:
            return await index_folder(folder, ctx, pace=pace)
        return await index_in_worker(folder, ctx, report_every=report_every, pace=pace)

    server.tool(title="Index the workspace",
                annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True))(index_documents)


def register_legacy_logging_lab(server: MCPServer, *, root: Path | str) -> None:
    """LEGACY LAB: add `count_documents_chatty`, which narrates through *protocol* logging.

    `ctx.info(...)` sends a `notifications/message` to the client. That is 2025-era protocol
    logging, deprecated in 2026-07-28 (SEP-2577): every call raises an MCPDeprecationWarning,
    a modern client receives the messages only if it opted in with `Client(log_level=...)`, and
    a legacy (`mode="legacy"`) client receives them all. Not part of `register`: new servers
    log with the `logging` module instead.
    """
    folder = Path(root)

    async def count_documents_chatty(ctx: Context) -> int:
        """Count the workspace's documents, announcing each one as a protocol log message."""
        paths = scan_documents(folder)
        for path in paths:
            await ctx.info(f"found {path.relative_to(folder).as_posix()}")  # deprecated: warns
        return len(paths)

    server.tool(title="Count documents, chattily (legacy lab)")(count_documents_chatty)


def configure_logging(level: str = "INFO") -> logging.Logger:
    """Send this package's log records to stderr at `level`, and return the package logger.

    Stdout stays untouched (it is the stdio transport's wire). Each line shows the time, the
    level, the logger's name and the message. The records stop at the package logger: MCPServer
    puts a handler on the root logger, and a record reaching both would be printed twice. Calling
    this again must not add a second handler (every line twice again), but it does apply the new
    `level`.
    """
    # BEGIN SOLUTION lesson-3: give the `research_desk` logger its own handler writing to stderr
    #   (timestamp, level, logger name, message) at `level`, without relying on the root logger
    #   (MCPServer may have configured it already), and never add the handler twice.
    package = logging.getLogger("research_desk")
    package.setLevel(level.upper())
    if not any(handler.get_name() == _HANDLER_NAME for handler in package.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        package.addHandler(handler)
    package.propagate = False  # the root handler (MCPServer's) would print each line again
    return package
    # END SOLUTION


class ProgressBar:
    """A client-side progress callback that draws one live bar.

    Pass an instance as `await client.call_tool(name, args, progress_callback=ProgressBar("indexing"))`.
    In Jupyter it redraws one output in place; elsewhere (or when given a `stream`) it rewrites
    one line of `stream` (stderr by default) with a carriage return.
    """

    def __init__(self, label: str = "progress", *, width: int = 30, stream: TextIO | None = None) -> None:
        self.label = label
        self.width = width
        self.progress: float = 0
        self.total: float | None = None
        self.message = ""
        self.updates = 0  # notifications that moved the bar
        self._stream = stream
        self._display: Any = None
        self._drawn = 0  # length of the last line written to a terminal

    def update(self, progress: float, total: float | None = None, message: str | None = None) -> bool:
        """Take one progress notification; return whether the bar changed.

        Notifications may arrive late or out of order (over a real transport each callback runs
        as its own task), so one that does not move forward (lower, or equal: a repeat) is
        ignored. The first one is always taken, even at 0. A notification without a total or a
        message keeps the last known one. `updates` counts the notifications taken.
        """
        # BEGIN SOLUTION lesson-3: ignore (return False) a notification that does not move past the
        #   progress already shown; otherwise remember the progress, the total (keep the last known
        #   one when a notification has none) and the message (keep the last one when it has none),
        #   count the update and return True.
        if self.updates and progress <= self.progress:
            return False
        self.progress = progress
        if total is not None:
            self.total = total
        if message:
            self.message = message
        self.updates += 1
        return True
        # END SOLUTION

    @property
    def fraction(self) -> float | None:
        """How much is done, from 0 to 1; None while the total is unknown."""
        if not self.total or self.total <= 0:
            return None
        return min(1.0, max(0.0, self.progress / self.total))

    def text(self) -> str:
        """The bar as one line: `label ███░░░ progress/total message`.

        The bar has `width` cells: `█` for the part done (rounded down, and never more than
        `width`, even past the total) and `░` for the rest. Without a known, positive total (None
        or 0) there is nothing to draw: show the label, the progress so far and the message, in
        that order. Numbers are written with the `g` format (3, not 3.0; 2.5 stays 2.5): progress
        arrives as floats.
        """
        # BEGIN SOLUTION lesson-3: build the line the docstring describes from the fraction, the
        #   progress, the total and the message.
        fraction = self.fraction
        if fraction is None:
            parts = [self.label, f"{self.progress:g} done", self.message]
        else:
            filled = math.floor(self.width * fraction)
            bar = "█" * filled + "░" * (self.width - filled)
            parts = [self.label, bar, f"{self.progress:g}/{self.total:g}", self.message]
        return " ".join(part for part in parts if part)
        # END SOLUTION

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if self.update(progress, total, message):
            self.draw()

    def draw(self) -> None:
        """Show the current text: update the notebook output in place, or rewrite the terminal line."""
        line = self.text()
        if self._stream is None and _in_notebook():
            from IPython.display import display

            if self._display is None:
                self._display = display({"text/plain": line}, raw=True, display_id=True)
            else:
                self._display.update({"text/plain": line}, raw=True)
            return
        stream = self._stream or sys.stderr
        done = self.fraction is not None and self.fraction >= 1
        stream.write("\r" + line.ljust(self._drawn) + ("\n" if done else ""))
        stream.flush()
        self._drawn = 0 if done else len(line)


def _in_notebook() -> bool:
    """Whether we run inside a Jupyter kernel (where output can be redrawn in place)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return bool(get_ipython and type(get_ipython()).__name__ == "ZMQInteractiveShell")


def create_server(root: Path | str, *, pace: float = 0.0) -> MCPServer:
    """A small server holding only this lesson's tool, over the workspace `root`."""
    server = MCPServer("research-desk-indexer", version=__version__, log_level="WARNING",
                       instructions="Index the documents of a research workspace.")
    register(server, root=root, pace=pace)
    return server


def main(argv: list[str] | None = None) -> None:
    """Serve the indexer over stdio: `python -m research_desk.progress [FOLDER]`.

    FOLDER defaults to $RESEARCH_DESK_ROOT, else the current folder. Logs go to stderr at
    $RESEARCH_DESK_LOG_LEVEL (default INFO); stdout carries nothing but JSON-RPC.
    """
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0] if args else os.environ.get("RESEARCH_DESK_ROOT", "."))
    configure_logging(os.environ.get("RESEARCH_DESK_LOG_LEVEL", "INFO"))
    log.info("serving the indexer for %s over stdio", root)
    create_server(root).run()


if __name__ == "__main__":
    main()
