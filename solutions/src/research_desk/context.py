"""Lesson 1: the server lifespan and the request context.

The desk opens one document index when the server process starts and closes it when the
process stops. Tools never open it themselves and never reach it through a global: they ask
for a `Context` parameter, and the SDK hands them the request's context, which carries the
lifespan's state along with facts about this request (its id, the protocol version, who is
asking and what that client can do).

What `course check 1` holds this module to (each function's docstring says more):

- `open_desk(root)`: a root that is not a folder stops startup with `StartupError` naming it;
  an empty folder is a desk with no documents; one index row per document (name, title, words,
  as `load_document` reads them); a fresh `instance_id` per opening; the index closed however
  the block ends. Over HTTP the lifespan runs once per server process, for every connection.
- `desk_info`: this request's id, protocol version ("2026-07-28", or "2025-11-25" for a legacy
  client), the client's name and whether it declared sampling; the desk's id, the requests it
  has served (counted on the shared state: 1, 2, 3 ...) and its number of documents.
- `list_documents` and `read_document`: answer from the index only; any name not in it is a
  `ToolError` naming it, never a file's content; text is read as UTF-8.
- `register`: three tools with titles, descriptions and read-only hints; `ctx` never in a schema.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel

from research_desk import __version__
from research_desk.documents import load_document, scan_documents


class StartupError(RuntimeError):
    """The desk cannot start; the message says what to fix (e.g. which folder is missing)."""


@dataclass
class DeskState:
    """What the lifespan opens once per server process and every tool shares."""

    root: Path
    index: sqlite3.Connection
    instance_id: str
    requests_served: int = 0

    @property
    def is_open(self) -> bool:
        try:
            self.index.execute("SELECT 1")
        except sqlite3.ProgrammingError:
            return False
        return True

    def document_names(self) -> list[str]:
        return [row[0] for row in self.index.execute("SELECT name FROM documents ORDER BY name")]

    def has_document(self, name: str) -> bool:
        return self.index.execute("SELECT 1 FROM documents WHERE name = ?", (name,)).fetchone() is not None


class DeskInfo(BaseModel):
    """What `desk_info` reports: facts about this request and about the shared state."""

    request_id: str
    protocol_version: str | None
    client_name: str | None
    client_can_sample: bool
    instance_id: str
    requests_served: int
    documents: int


@asynccontextmanager
async def open_desk(root: Path) -> AsyncIterator[DeskState]:
    """Open the document index for `root`, yield the shared state, and always close the index.

    A `root` that is not a folder (missing, or a file) stops startup with `StartupError`
    naming it. An empty folder is a valid desk with no documents. The index holds one row per
    document: its name exactly as `load_document` gives it (relative to the root, forward
    slashes, spaces and non-ASCII letters kept), its title and its word count. Every opening
    gets a fresh `instance_id`, and the index is closed however the block ends, an exception
    included.
    """
    # BEGIN SOLUTION lesson-1: refuse a root that is not a folder with StartupError (name it), index
    #   every document into an in-memory SQLite table `documents(name, title, words)` as
    #   load_document() reads it, yield a DeskState with a fresh instance_id, and close the index
    #   however the block ends.
    root = Path(root)
    if not root.is_dir():
        raise StartupError(f"the workspace folder {root} does not exist; create it or set RESEARCH_DESK_ROOT")
    index = sqlite3.connect(":memory:", check_same_thread=False)
    try:
        index.execute("CREATE TABLE documents (name TEXT PRIMARY KEY, title TEXT, words INTEGER)")
        docs = [load_document(root, path) for path in scan_documents(root)]
        index.executemany("INSERT INTO documents VALUES (?, ?, ?)", [(d.name, d.title, d.words) for d in docs])
        yield DeskState(root=root.resolve(), index=index, instance_id=uuid.uuid4().hex)
    finally:
        index.close()
    # STUB
    # raise NotImplementedError("TODO(lesson-1): write open_desk")
    # yield  # a `yield` keeps this an async generator, which @asynccontextmanager expects
    # END SOLUTION


async def desk_info(ctx: Context[DeskState]) -> DeskInfo:
    """Describe this request (id, protocol version, client) and the desk that serves it.

    Counts this request on the shared state. The client's name may be missing (None); whether it
    can sample is whether it declared the sampling capability, in either protocol era.
    """
    # BEGIN SOLUTION lesson-1: take the DeskState from the request context, count this request, and
    #   fill in a DeskInfo from ctx (request id, protocol version, the client's name and whether it
    #   declared sampling).
    state = ctx.request_context.lifespan_context
    state.requests_served += 1
    params = ctx.session.client_params
    capabilities = ctx.client_capabilities
    return DeskInfo(
        request_id=ctx.request_id,
        protocol_version=ctx.protocol_version,
        client_name=params.client_info.name if params else None,
        client_can_sample=bool(capabilities and capabilities.sampling),
        instance_id=state.instance_id,
        requests_served=state.requests_served,
        documents=len(state.document_names()),
    )
    # END SOLUTION


async def list_documents(ctx: Context[DeskState]) -> list[str]:
    """Names of every document in the workspace, relative to its root, as the index holds them.

    The index is a snapshot taken at startup: a file written later is not listed.
    """
    # BEGIN SOLUTION lesson-1: answer from the index the lifespan opened (never rescan the folder
    #   here).
    return ctx.request_context.lifespan_context.document_names()
    # END SOLUTION


async def read_document(name: str, ctx: Context[DeskState]) -> str:
    """The full text of one document (decoded as UTF-8), by the name `list_documents` gives.

    Only names in the index are read. Anything else (`../outside.md`, a hidden file, a file
    written after startup, an image) is a `ToolError` that names it and never carries the
    file's content, whatever is on the disk.
    """
    # BEGIN SOLUTION lesson-1: read only names that are in the index (as UTF-8); for any other name
    #   raise ToolError with a message that names it, so the model can correct itself.
    state = ctx.request_context.lifespan_context
    if not state.has_document(name):
        raise ToolError(f"no document named {name!r}; call list_documents to see what exists")
    return (state.root / name).read_text(encoding="utf-8", errors="replace")
    # END SOLUTION


def register(server: MCPServer) -> None:
    """Add this lesson's tools to `server`: each with a human title, its docstring as description,
    a read-only annotation, and `ctx` kept out of its input schema (the SDK injects it)."""
    # BEGIN SOLUTION lesson-1: register desk_info, list_documents and read_document as tools, each
    #   with a human title and a read-only annotation.
    read_only = ToolAnnotations(read_only_hint=True)
    server.tool(title="Desk info", annotations=read_only)(desk_info)
    server.tool(title="List documents", annotations=read_only)(list_documents)
    server.tool(title="Read a document", annotations=read_only)(read_document)
    # END SOLUTION


def create_server(root: Path | str | None = None) -> MCPServer:
    """The desk as an MCP server over `root` (default: $RESEARCH_DESK_ROOT, else the current folder)."""
    workspace = Path(root if root is not None else os.environ.get("RESEARCH_DESK_ROOT", "."))

    def lifespan(server: MCPServer) -> AbstractAsyncContextManager[DeskState]:
        return open_desk(workspace)

    server = MCPServer("research-desk", version=__version__, lifespan=lifespan, log_level="WARNING",
                       instructions="Look up documents in a research workspace.")
    register(server)
    return server
