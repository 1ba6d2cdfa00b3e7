"""Lesson 7: errors the model can read, errors for the client, and crashes nobody else sees.

Every failure a tool meets has exactly one right audience:

* **the model** - a mistake it can correct (an unknown document, a value out of range). Raise
  `ToolError`: the call returns `is_error=True` and the message is the model's to read.
* **the client** - a request that is wrong in a way no model can fix (an idempotency key reused
  for a different action, a missing capability). Raise `MCPError` with a JSON-RPC code: the call
  fails as a protocol error and the client's code decides what to do.
* **the operators** - a bug or a crash. Its text may hold a password or a file path, so it stays
  in the server's log under an incident id, and the model is told only that id.

Around those three sit the habits that keep a server useful when things go wrong: validate
arguments at the edge (the schema advertises the limits), stop work when the caller gives up
(cancellation) and clean up, answer with a labelled partial result when a dependency is down,
and make side effects safe to retry (idempotency keys, honest tool annotations). What the desk
remembers is bounded: at most `max_notes` notes (a full desk refuses new ones and says how to make
room), and an idempotency receipt is kept for `receipt_seconds` and for the `max_receipts` newest
keys only, so a long-running server does not grow without end.

What `course check 7` holds you to (each line is a check, or part of one):

* `read_document` and `export_bundle` serve only the workspace's own documents: a name a scan of
  the workspace would list (`documents.document_path`). `..`, absolute paths, links that lead out,
  hidden files and folders, and files that are not .md or .txt are unknown documents: a `ToolError`
  that names the name and says how to find valid ones. An export checks every name before any job
  starts.
* A reused idempotency key with a different note (another title, another body, or the same
  characters split differently: compare title and body apart and exactly) is
  `MCPError(INVALID_PARAMS)` with the key in `data`; the refused call saves nothing, and a true
  retry still gets the first receipt. The same key and note, retried (even concurrently, even after
  the client timed out), saves one note and returns the same receipt.
* A crash (any exception but `ToolError`, `MCPError` and cancellation) reaches the client as a
  `ToolError` that says `incident <id>` (any spelling: "incident 7f3a", "Incident ID: ...") and
  nothing of the exception's text, traceback or paths; every incident gets a fresh id, and the
  exception is logged with its traceback, at WARNING or above, under the same id.
* `search_documents` passes the query on to the search service and never returns more than
  `limit` hits, whatever the service sent. An outage (`OUTAGES`, a service slower than
  `backend_timeout`, or no service at all) answers `title_matches(query, limit)` with
  `degraded=True`, `source="local-titles"` and a notice, within about `backend_timeout`; any other
  exception is a bug and propagates.
* A cancelled export stops at its next `await`, ends `cancelled`, records its cleanup in `cleanups`
  and leaves no file; one that fails midway (a document vanishes) ends `failed` the same way and
  its error reaches the caller. A finished bundle stays in the desk's `exports` folder (which the
  operator may put outside the workspace); a `.exports` planted as a link is refused with a
  `ToolError`, and nothing is written through it.
* Argument limits live in the argument types, so the input schema advertises them and the SDK
  rejects a value past them with a message naming the field: a query of 1-500 characters, a
  `limit` of 1-50, document names up to 200 characters, titles up to 120, bodies up to 10,000,
  note ids up to 64, an idempotency key of 8-64 letters, digits, `-` or `_`, and 1-100 names to
  export. Limits count characters (not bytes), and a value exactly at a limit is allowed.
* Truthful annotations: `search_documents` reads only and reaches an outside service (open world);
  `read_document` reads only; `save_note` writes, destroys nothing and is idempotent;
  `delete_note` destroys and is idempotent; `export_bundle` writes a new file each call (not
  idempotent, not destructive). Only `search_documents` is open world.
* Bounded memory: a desk holding `max_notes` notes refuses the next with a `ToolError` naming the
  limit and `delete_note`; a retry within `receipt_seconds` gets its receipt, a key reused later
  saves a new note; only the `max_receipts` newest receipts are kept. A storm of malformed calls is
  refused fast and the server keeps serving.

Not graded by a check: doing file work on a worker thread. No behaviour test can see which thread
read a file; lesson 9's load measurements show what a blocked event loop costs.

Wiring: `register(server, desk)` adds the tools to any `MCPServer`; `desk` is an `ErrorDesk`
that holds the workspace folder, the search service the desk depends on, and what the tools
remember (notes, receipts, export jobs). `create_server(desk)` makes a server with just them.
Every file the tools read or write is touched on a worker thread (`anyio.to_thread.run_sync`), so a
slow disk holds up one call, never the event loop serving everyone else.
"""

import functools
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar

import anyio
from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import INVALID_PARAMS, ToolAnnotations
from pydantic import BaseModel, Field

from research_desk import __version__
from research_desk.documents import document_path, load_document, scan_documents
from research_desk.writing import NewFile, WriteRefused

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 500
MAX_LIMIT = 50
MAX_NAME_CHARS = 200
MAX_TITLE_CHARS = 120
MAX_NOTE_CHARS = 10_000
MAX_EXPORT_DOCUMENTS = 100
MAX_NOTES = 1_000            # notes one desk keeps; a full desk refuses new ones (delete_note makes room)
MAX_RECEIPTS = 10_000        # idempotency receipts kept at most (the oldest are forgotten first)
RECEIPT_SECONDS = 24 * 3600  # how long a receipt is kept: a "retry" a day later is a new request

# The argument types every tool uses. Their constraints become the input schema, so the client
# (and the model) sees the limits before it calls, and the SDK rejects a bad value before any
# of our code runs, with a message that names the field and the limit.
# TODO(lesson-7): constrain every argument at the edge with pydantic Field limits (lengths in
#   characters from the MAX_* constants, 1 <= limit <= MAX_LIMIT, note ids of at most
#   64 characters, an idempotency key of 8-64 letters, digits, '-' or '_', a non-empty
#   list of at most MAX_EXPORT_DOCUMENTS document names); a value exactly at a limit
#   is allowed.
Query = str
Limit = int
DocName = str
NoteTitle = str
NoteBody = str
NoteId = str
IdempotencyKey = str
DocNames = list[str]


class BackendUnavailable(Exception):
    """The search service cannot be reached right now (an outage, not a bug)."""


# What counts as "the dependency is down": answer with a labelled partial result instead.
# Anything else a dependency raises is a bug, and a fallback would only hide it.
OUTAGES: tuple[type[BaseException], ...] = (BackendUnavailable, ConnectionError, TimeoutError)


class SearchBackend(Protocol):
    """The search service the desk depends on (in production: a remote full-text index)."""

    async def search(self, query: str, limit: int) -> list[str]:
        """Names of the documents that best match `query`, best first."""
        ...


class SearchAnswer(BaseModel):
    """What `search_documents` returns; a degraded answer says so, and why."""

    hits: list[str]
    source: Literal["search-service", "local-titles"]
    degraded: bool = False
    notice: str | None = None


class NoteReceipt(BaseModel):
    """Proof that a note was saved; a retry with the same key gets the very same receipt."""

    note_id: str
    title: str
    saved_at: str


class DeleteReceipt(BaseModel):
    note_id: str
    deleted: bool


class ExportReceipt(BaseModel):
    bundle: str      # file name inside the desk's exports folder
    documents: int
    size: int        # bytes


@dataclass
class Note:
    id: str
    title: str
    body: str


class ReceiptBook:
    """Idempotency receipts by key: each kept for `seconds`, and only the `limit` newest (given code).

    A retry after that is treated as a new request. Clients retry within seconds or minutes, so a
    day is generous; without the bounds every key ever used would stay in memory for good. `clock`
    is any monotonic clock in seconds (a test can move time on instead of waiting).
    """

    def __init__(self, seconds: float = RECEIPT_SECONDS, limit: int = MAX_RECEIPTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.limit = limit
        self.clock = clock
        self._kept: OrderedDict[str, tuple[float, str, NoteReceipt]] = OrderedDict()  # oldest first

    def find(self, key: str) -> tuple[str, NoteReceipt] | None:
        """(fingerprint, receipt) stored for `key`, or None if there is none (any more)."""
        self._forget_expired()
        found = self._kept.get(key)
        return None if found is None else (found[1], found[2])

    def keep(self, key: str, fingerprint: str, receipt: NoteReceipt) -> None:
        """Store the receipt of the call that used `key`; the oldest beyond the limit are forgotten."""
        self._kept[key] = (self.clock(), fingerprint, receipt)
        self._kept.move_to_end(key)
        while len(self._kept) > self.limit:
            self._kept.popitem(last=False)

    def _forget_expired(self) -> None:
        horizon = self.clock() - self.seconds
        while self._kept and next(iter(self._kept.values()))[0] < horizon:
            self._kept.popitem(last=False)

    def __len__(self) -> int:
        self._forget_expired()
        return len(self._kept)


@dataclass
class Job:
    """One export, as the server sees it; `status` ends as finished, cancelled or failed."""

    id: str
    total: int
    done: int = 0
    status: str = "running"
    partial: Path | None = None   # the bundle while it is written (a hidden temporary file)


@dataclass
class ErrorDesk:
    """What this lesson's tools share: the workspace, its dependency, and what they remember."""

    root: Path
    backend: SearchBackend | None = None
    backend_timeout: float = 2.0      # seconds to wait for the search service
    write_seconds: float = 0.0        # how long saving a note takes (a remote write)
    step_seconds: float = 0.05        # how long exporting one document takes
    exports: Path | None = None       # default: <root>/.exports (hidden, so never listed)
    max_notes: int = MAX_NOTES
    receipt_seconds: float = RECEIPT_SECONDS
    max_receipts: int = MAX_RECEIPTS
    clock: Callable[[], float] = time.monotonic  # the receipts' clock (seconds)
    notes: dict[str, Note] = field(default_factory=dict)
    receipts: ReceiptBook = field(init=False)   # idempotency key -> (fingerprint, receipt), bounded
    jobs: dict[str, Job] = field(default_factory=dict)
    cleanups: list[str] = field(default_factory=list)  # ids of the jobs whose leftovers were removed
    key_locks: dict[str, tuple[anyio.Lock, int]] = field(default_factory=dict, repr=False)  # lock, users

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.exports = Path(self.exports) if self.exports is not None else self.root / ".exports"
        self.receipts = ReceiptBook(self.receipt_seconds, self.max_receipts, self.clock)

    # -- given helpers -------------------------------------------------------------------------

    def document_names(self) -> list[str]:
        """Every document name in the workspace, sorted."""
        return [path.relative_to(self.root).as_posix() for path in scan_documents(self.root)]

    def title_matches(self, query: str, limit: int) -> list[str]:
        """The local fallback: names whose title or name contains `query` (any case), sorted."""
        needle = query.casefold()
        docs = [load_document(self.root, path) for path in scan_documents(self.root)]
        return sorted(d.name for d in docs if needle in d.title.casefold() or needle in d.name.casefold())[:limit]

    @staticmethod
    def fingerprint(*parts: str) -> str:
        """A stable digest of a call's arguments, to tell a retry from a different request."""
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def delete_note(self, note_id: str) -> DeleteReceipt:
        """Delete a note; deleting one that is already gone is not an error (idempotent)."""
        return DeleteReceipt(note_id=note_id, deleted=self.notes.pop(note_id, None) is not None)

    @asynccontextmanager
    async def key_lock(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of one idempotency key; a lock nobody holds or waits for is dropped, so the
        locks do not pile up with every key ever used."""
        lock, users = self.key_locks.get(key, (anyio.Lock(), 0))
        self.key_locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self.key_locks[key]
            if users == 1:
                del self.key_locks[key]
            else:
                self.key_locks[key] = (lock, users - 1)

    def start_bundle(self, job: Job) -> NewFile:
        """Create the bundle file of `job` in the exports folder, under a hidden temporary name.

        The exports folder is reached without following links (see research_desk.writing): a
        `.exports` planted as a link to a folder outside the workspace is refused with a ToolError,
        never written through. Blocks on the disk: call it on a worker thread.
        """
        assert self.exports is not None
        if self.exports.is_relative_to(self.root):   # the usual case: walk from the workspace itself
            base, parts = self.root, self.exports.relative_to(self.root).parts
        else:                                         # a folder the operator configured elsewhere
            base, parts = self.exports, ()
        try:
            bundle = NewFile(base, "/".join((*parts, f"bundle-{job.id}.md")))
        except WriteRefused as exc:
            raise ToolError(f"cannot export: {exc}") from None
        job.partial = self.exports / bundle.temporary
        return bundle

    def append_document(self, bundle: NewFile, name: str) -> None:
        """Append document `name` to `bundle`. Blocks on the disk: call it on a worker thread."""
        bundle.write(f"\n\n<!-- {name} -->\n\n{self.read(name)}")

    # -- the exercises ---------------------------------------------------------------------

    async def search(self, query: str, limit: int) -> SearchAnswer:
        """Ask the search service; when it is down or too slow, answer from titles, labelled."""
        # TODO(lesson-7): ask the backend under a backend_timeout deadline and return at most
        #   `limit` of its hits; on an outage (OUTAGES, a timeout, or no backend at
        #   all) answer from title_matches() with source "local-titles", degraded=True
        #   and a notice saying why; let any other exception propagate.
        raise NotImplementedError("TODO(lesson-7): write search")

    def read(self, name: str) -> str:
        """The text of one document, by the name `search_documents` gives."""
        # TODO(lesson-7): serve only names that are documents of this workspace
        #   (documents.document_path tells without scanning the whole folder: no '..',
        #   absolute path, link leading out, hidden or non-document file); for any
        #   other name raise ToolError that names it and tells the model how to find
        #   valid names.
        raise NotImplementedError("TODO(lesson-7): write read")

    async def save_note(self, title: str, body: str, key: str) -> NoteReceipt:
        """Save a note exactly once per idempotency key, however often the call is retried."""
        # TODO(lesson-7): one key, one note: hold the key's lock (key_lock), return the stored
        #   receipt when the key was already used with the same title and body
        #   (receipts.find), raise MCPError(INVALID_PARAMS, data naming the key) when
        #   it was used for different ones; refuse a new note with a ToolError that
        #   says the limit and how to make room when the desk already holds max_notes;
        #   otherwise wait write_seconds (the remote write), then store the note and
        #   its receipt (receipts.keep) together.
        raise NotImplementedError("TODO(lesson-7): write save_note")

    async def export(self, names: list[str]) -> ExportReceipt:
        """Bundle documents into one file, one step per document; a cancelled export leaves nothing."""
        # TODO(lesson-7): refuse unknown names with ToolError before doing anything; open the bundle
        #   with start_bundle (it refuses a linked exports folder) and record a Job in
        #   self.jobs; append one document per step (sleep step_seconds, then
        #   append_document, counting job.done), doing every file access on a worker
        #   thread; on success publish the bundle and mark the job finished; if
        #   cancelled or failed mark the job so, re-raise, and in a finally discard
        #   the unpublished bundle and append the job id to self.cleanups.
        raise NotImplementedError("TODO(lesson-7): write export")


ToolFn = TypeVar("ToolFn", bound=Callable[..., Awaitable[Any]])


def sanitised(tool: ToolFn) -> ToolFn:
    """Wrap an async tool so a crash reaches the model as an incident id, never as its text.

    `ToolError` and `MCPError` pass through untouched (they are meant for the model and the
    client), and so does cancellation. Anything else is logged here, with its traceback,
    under a fresh incident id, and the model reads only that id.
    """
    # TODO(lesson-7): keep the tool's signature (functools.wraps); let ToolError, MCPError and
    #   cancellation through; turn any other exception into a ToolError that says
    #   "incident <id>" and nothing of the original text, and log the exception with
    #   its traceback and the same id.
    return tool


# What each tool tells the client about its effects, so a host knows what it may retry or must
# confirm. Defaults when a hint is missing: not read-only, destructive, not idempotent, open world.
# TODO(lesson-7): annotate every tool truthfully: the two readers are read-only (only search talks
#   to the outside world); save_note changes state but is idempotent (the key) and not
#   destructive; delete_note is destructive and idempotent; export_bundle writes but
#   destroys nothing.
ANNOTATIONS: dict[str, ToolAnnotations] = {}


def register(server: MCPServer, desk: ErrorDesk) -> None:
    """Add this lesson's tools to `server`, each serving `desk` and wrapped by `sanitised`."""

    async def search_documents(query: Query, limit: Limit = 10) -> SearchAnswer:
        """Find documents about `query`. When the search service is down the answer is marked degraded."""
        return await desk.search(query, limit)

    async def read_document(name: DocName) -> str:
        """The full text of one document, by the name search_documents gives."""
        return await anyio.to_thread.run_sync(desk.read, name)

    async def save_note(title: NoteTitle, body: NoteBody, idempotency_key: IdempotencyKey) -> NoteReceipt:
        """Save a research note. Pick a fresh random idempotency_key per note and reuse it to retry (a key
        is remembered for a day). The desk keeps a limited number of notes: delete old ones to make room."""
        return await desk.save_note(title, body, idempotency_key)

    async def delete_note(note_id: NoteId) -> DeleteReceipt:
        """Delete a saved note for good."""
        return desk.delete_note(note_id)

    async def export_bundle(names: DocNames) -> ExportReceipt:
        """Bundle documents into one Markdown file in the desk's exports folder."""
        return await desk.export(names)

    titles = {"search_documents": "Search documents", "read_document": "Read a document",
              "save_note": "Save a note", "delete_note": "Delete a note", "export_bundle": "Export a bundle"}
    for fn in (search_documents, read_document, save_note, delete_note, export_bundle):
        name = fn.__name__
        server.tool(name=name, title=titles[name], annotations=ANNOTATIONS.get(name))(sanitised(fn))


def create_server(desk: ErrorDesk) -> MCPServer:
    """A server with only this lesson's tools (the capstone adds them to the full desk)."""
    server = MCPServer("research-desk-errors", version=__version__, log_level="WARNING",
                       instructions="Search, read and bundle workspace documents; save research notes.")
    register(server, desk)
    return server
