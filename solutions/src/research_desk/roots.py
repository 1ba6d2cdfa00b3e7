"""Lesson 4: roots, the file-system boundary around the desk's file tools.

The desk's file tools (`list_files`, `read_file`, `search_files`) may touch only the folders
the server was *configured* with: `register(server, roots=[...])`. That configuration is the
policy. A legacy (2025-era) client that declares the roots capability may narrow it for a
request by offering its own roots, but an offer can never widen it: roots are the client's
guidance, enforcement is the server's job, on every path, in every tool.

One gate decides, `is_path_allowed(path, roots)`. Its policy, case by case:

- plain absolute path: judged where it really leads.
- plain relative path: anchored at the first root, never at the process's working directory; with
  several roots, still the first (not the last, not whichever makes it fit), then compared with all.
- no roots at all: nothing is allowed.
- `file://` URI (`file:///…` or `file://localhost/…`): percent-decoded exactly once (`%252E` is the
  text `%2E`, not a dot), then judged like an absolute path. Other schemes, other hosts, a query or
  a fragment: refused. Plain paths are never percent-decoded (`100%25.md` may be a real file name).
- `..`: collapsed by resolving, after symbolic links are followed, as the kernel walks a path.
- symbolic links, inward or outward: followed; the link's *target* is judged, not its name. A link
  loop never resolves, so it is not allowed.
- a path that does not exist (yet): judged where it would be created; the tools then say
  "no such file" only for paths inside the roots.
- a NUL byte (raw or `%00`): refused with a reason; C code would cut the path there.
- over 4096 bytes in total, or one name over 255 bytes (Linux's PATH_MAX and NAME_MAX): refused with
  a reason, before the file system sees it. Bytes of UTF-8, not characters (`é` is two); measured on
  the path as sent (a URI's path once decoded), before anchoring; exactly 4096 or 255 is fine.
- letter case and Unicode NFC/NFD forms: compared exactly, as the file system stores names. Linux is
  case-sensitive and keeps NFC and NFD names apart, so folding either would admit a different folder.
- the comparison: `Path.is_relative_to` on resolved paths and resolved roots, never `str.startswith`.
- a refusal for a path outside the roots: the same words whether or not the file exists, and never
  the file's content or a link's target.

The tools, inside the roots:

- `read_file`: the text, as UTF-8 with each undecodable byte replaced by U+FFFD; a folder gets a
  ToolError saying it is a folder, a missing file one saying "no such file".
- `search_files`: a blank query is refused (ToolError); matching ignores case; each hit is the
  1-based line number and the line without its surrounding spaces, in file order; at most `limit`
  hits (the tool passes MAX_HITS); every file is re-checked, since a link inside may point out;
  hits are named the way `read_file` takes them back, never by the server's absolute path.
- `list_files`: the folder's visible entries that lead inside the roots, folders ending in `/`.
- a client's roots (legacy clients that declared the capability only) narrow the configured roots
  to their overlap, in the client's order; offered roots that `to_path` refuses, or that are
  relative, are skipped; an empty offer changes nothing; an offer never widens.

What remains after this check is a race: a link swapped between the check and the open
(TOCTOU). Hostile local users need `O_NOFOLLOW`/`openat`-style opening; this lesson's tools
re-check every file they touch, which closes the easy cases only.
"""

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import anyio.to_thread
from mcp.server.mcpserver import Context, ListRoots, MCPServer, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListRootsResult, ToolAnnotations
from pydantic import BaseModel

from research_desk import __version__
from research_desk.documents import scan_documents

MAX_PATH_BYTES = 4096      # PATH_MAX on Linux: the longest path the kernel accepts
MAX_NAME_BYTES = 255       # NAME_MAX: the longest single file or folder name
MAX_HITS = 50              # search results returned at most
MODERN = "2026-07-28"      # the protocol revision that deprecated roots (SEP-2577)

PathLike = str | os.PathLike[str]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")


class PathRejected(ToolError):
    """A path the file tools refuse. Its message is safe to show the model: it describes the
    request, never the file system behind it (no content, no link target, no "exists")."""


def shown(value: object) -> str:
    """A short, quoted form of what the client sent, for error messages (never 5000 characters)."""
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text if len(text) <= 80 else text[:60] + "…" + text[-15:]


def to_path(value: PathLike) -> Path:
    """Turn what a client sent (a plain path or a `file://` URI) into a `Path`, or refuse it.

    Raises PathRejected, with a reason, for input no file system should see: NUL bytes,
    over-long paths or names, URIs that are not local `file://` URIs. Does not resolve.
    """
    # BEGIN SOLUTION lesson-4: refuse NUL bytes; decode a file:// URI (local host only,
    #   percent-encoding decoded exactly once, no query or fragment) and refuse any other scheme;
    #   refuse paths over MAX_PATH_BYTES and names over MAX_NAME_BYTES (UTF-8 bytes of the path as
    #   sent, a URI's once decoded; exactly the limit is fine); plain paths are taken literally,
    #   never decoded. Raise PathRejected with a reason each time.
    text = os.fspath(value)
    if not isinstance(text, str):
        raise PathRejected("paths must be text, not bytes")
    if "\x00" in text:
        raise PathRejected(f"{shown(text)} contains a NUL byte, which no file name may contain")
    scheme = _SCHEME.match(text)
    if scheme and (scheme.group(1).lower() == "file" or "://" in text):
        parts = urlsplit(text)
        if parts.scheme.lower() != "file":
            raise PathRejected(f"{shown(text)}: only plain paths and file:// URIs are accepted")
        if parts.netloc not in ("", "localhost"):
            raise PathRejected(f"{shown(text)} names another host; only local file:// URIs are accepted")
        if parts.query or parts.fragment:
            raise PathRejected(f"{shown(text)}: a file:// URI must not have a query or fragment")
        try:
            text = unquote(parts.path, errors="strict")
        except UnicodeDecodeError:
            raise PathRejected(f"{shown(value)} is not valid UTF-8 once percent-decoded") from None
        if "\x00" in text:
            raise PathRejected(f"{shown(value)} contains a NUL byte (%00), which no file name may contain")
        if not text.startswith("/"):
            raise PathRejected(f"{shown(value)}: a file:// URI must hold an absolute path")
    encoded = os.fsencode(text)
    if len(encoded) > MAX_PATH_BYTES:
        raise PathRejected(f"the path is {len(encoded)} bytes long; the limit is {MAX_PATH_BYTES}")
    if any(len(name) > MAX_NAME_BYTES for name in encoded.split(b"/")):
        raise PathRejected(f"{shown(text)} has a name longer than {MAX_NAME_BYTES} bytes")
    return Path(text)
    # END SOLUTION


def anchor(path: Path, first_root: Path) -> Path:
    """Where `path` points before resolving: a relative path hangs off the first root,
    never off the server process's working directory (which the client knows nothing about)."""
    return path if path.is_absolute() else first_root / path


def is_path_allowed(path: PathLike, roots: Sequence[PathLike]) -> bool:
    """True only if the file `path` names lies inside one of `roots`, judged where it really is.

    `path` and each root may be a plain path or a `file://` URI; a relative `path` is anchored at
    the first root. Never raises: anything malformed or unresolvable is simply not allowed.
    """
    # BEGIN SOLUTION lesson-4: convert the roots and the path with to_path, anchor a relative path
    #   at the first root (with several roots, still the first), resolve everything (symbolic links
    #   and `..` included), and compare resolved paths as paths, never as strings, with every root;
    #   no roots, a refused input or an unresolvable one (a link loop) is not allowed (return False,
    #   do not raise).
    try:
        bases = [to_path(root).resolve() for root in roots]
        if not bases:
            return False
        real = anchor(to_path(path), bases[0]).resolve()
    except (PathRejected, OSError, RuntimeError, ValueError, TypeError):   # RuntimeError: a symlink loop
        return False
    return any(real == base or real.is_relative_to(base) for base in bases)
    # END SOLUTION


def resolve_allowed(path: PathLike, roots: Sequence[PathLike]) -> Path:
    """The real path behind `path`, or PathRejected: the one gate every file tool goes through.

    The refusal for a path outside the roots says the same words whether or not it exists,
    so the error never becomes a way to probe the disk.
    """
    candidate = to_path(path)  # a malformed request gets its own, specific reason
    if not is_path_allowed(path, roots):
        raise PathRejected(f"{shown(path)} is outside the allowed roots")
    return anchor(candidate, to_path(roots[0]).resolve()).resolve()


def configured_roots(roots: Sequence[PathLike]) -> list[Path]:
    """Resolve the server's configured roots once, at startup; a bad root stops the server."""
    if not roots:
        raise ValueError("the file tools need at least one root folder")
    resolved: list[Path] = []
    for root in roots:
        try:
            real = to_path(root).resolve()
        except PathRejected as exc:
            raise ValueError(f"bad root {shown(root)}: {exc}") from None
        if not real.is_dir():
            raise ValueError(f"the root {shown(root)} is not an existing folder")
        resolved.append(real)
    return resolved


def narrow_roots(configured: Sequence[Path], offered: Sequence[str]) -> list[Path]:
    """The roots one request may use: the configured (resolved) roots, narrowed by what the client
    offered (its `file://` root URIs). An empty offer leaves the configuration as it is; an offer
    can only ever take folders away, never add one."""
    # BEGIN SOLUTION lesson-4: with no offer, return the configured roots; otherwise keep only the
    #   folders both sides allow (an offered root inside a configured one, or a configured root
    #   inside an offered one), judged on resolved paths, in the client's order; skip offered roots
    #   that to_path refuses or that are not absolute.
    if not offered:
        return list(configured)
    kept: list[Path] = []
    for uri in offered:
        try:
            path = to_path(uri)
            if not path.is_absolute():
                continue
            real = path.resolve()
        except (PathRejected, OSError, RuntimeError, ValueError):
            continue
        for base in configured:
            if real == base or real.is_relative_to(base):
                kept.append(real)
            elif base.is_relative_to(real):
                kept.append(base)
    return list(dict.fromkeys(kept))
    # END SOLUTION


async def offered_roots(ctx: Context) -> ListRootsResult | ListRoots:
    """Resolver: the client's roots, if this client should be asked; otherwise an empty offer."""
    # BEGIN SOLUTION lesson-4: ask (return ListRoots()) only a legacy client, one whose protocol
    #   version is older than 2026-07-28, that declared the roots capability; every other client
    #   gets an empty ListRootsResult, so the configuration applies and no capability error (-32021)
    #   or deprecated round trip happens.
    version = ctx.protocol_version
    capabilities = ctx.client_capabilities
    if version is not None and version < MODERN and capabilities is not None and capabilities.roots is not None:
        return ListRoots()
    return ListRootsResult(roots=[])
    # END SOLUTION


async def no_offer() -> ListRootsResult:
    """Resolver for servers that ignore client roots altogether."""
    return ListRootsResult(roots=[])


def list_files(path: str, roots: Sequence[Path]) -> list[str]:
    """Names in one folder inside the roots, folders marked with a trailing '/'.

    Hidden entries are skipped, and so is any entry whose real location is outside the roots
    (a link pointing out is not ours to show).
    """
    folder = resolve_allowed(path, roots)
    if not folder.is_dir():
        raise ToolError(f"{shown(path)} is not a folder" if folder.exists() else f"no such folder: {shown(path)}")
    names: list[str] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not is_path_allowed(entry, roots):
            continue
        names.append(entry.name + "/" if entry.is_dir() else entry.name)
    return names


def read_file(path: str, roots: Sequence[Path]) -> str:
    """The text of one file inside the roots."""
    # BEGIN SOLUTION lesson-4: pass the path through resolve_allowed before anything touches the
    #   disk, and only then tell "no such file" or "is a folder" apart (ToolError, saying which);
    #   read the text as UTF-8, replacing each undecodable byte with U+FFFD.
    real = resolve_allowed(path, roots)
    if real.is_dir():
        raise ToolError(f"{shown(path)} is a folder; use list_files")
    if not real.is_file():
        raise ToolError(f"no such file: {shown(path)}")
    return real.read_text(encoding="utf-8", errors="replace")
    # END SOLUTION


class SearchHit(BaseModel):
    """One matching line."""

    path: str   # the file, relative to the first root (what read_file takes back); see search_files
    line: int   # 1-based line number
    text: str   # the line, trimmed


def search_files(query: str, path: str, roots: Sequence[Path], limit: int = MAX_HITS) -> list[SearchHit]:
    """Lines containing `query` (case-insensitive) in the documents under one folder.

    Each hit names its file the way the client can pass it back to read_file without learning where
    the roots live on the server: relative to the first root (`notes/plan.md`) when it lies there,
    otherwise under the folder as the client named it.
    """
    # BEGIN SOLUTION lesson-4: refuse a blank query (ToolError); open the folder through
    #   resolve_allowed; walk its documents with scan_documents, skipping every file is_path_allowed
    #   refuses (a link inside the folder may point out of the roots); collect matching lines
    #   case-insensitively, numbered from 1 and stripped of surrounding spaces, and stop at `limit`
    #   hits. Name each file relative to the first root (resolved) when it lies there, else as the
    #   folder the client named (to_path) joined with the file's path below the folder: never the
    #   server's absolute path.
    if not query.strip():
        raise ToolError("the query is empty; give a word or phrase to look for")
    folder = resolve_allowed(path, roots)
    if not folder.is_dir():
        raise ToolError(f"{shown(path)} is not a folder" if folder.exists() else f"no such folder: {shown(path)}")
    first = to_path(roots[0]).resolve()
    named = to_path(path)
    needle = query.casefold()
    hits: list[SearchHit] = []
    for file in scan_documents(folder):
        # Only a link can lead elsewhere (the walk enters no linked folder); ask the gate about those.
        if file.is_symlink() and not is_path_allowed(file, roots):
            continue
        name = (file.relative_to(first) if file.is_relative_to(first) else named / file.relative_to(folder)).as_posix()
        text = file.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            if needle in line.casefold():
                hits.append(SearchHit(path=name, line=number, text=line.strip()[:200]))
                if len(hits) >= limit:
                    return hits
    return hits
    # END SOLUTION


READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)


def register(server: MCPServer, *, roots: Sequence[PathLike], narrow_by_client: bool = True) -> None:
    """Add `list_files`, `read_file` and `search_files` to `server`, confined to `roots`.

    roots: the folders this server may read (plain paths or `file://` URIs). This configuration
        is the policy, the 2026-07-28 way; each root must exist and is resolved once, here.
    narrow_by_client: when True, a legacy client that declares the roots capability narrows the
        roots for each request (never widens them); modern clients are not asked.

    A relative path given to a tool starts at the first root the request may use: the first
    configured root, or the client's first root when a legacy client narrowed them.
    Raises ValueError for a missing or malformed root, so a misconfigured server fails at startup.
    """
    configured = configured_roots(roots)
    resolver = offered_roots if narrow_by_client else no_offer

    def allowed(offer: ListRootsResult) -> list[Path]:
        return narrow_roots(configured, [str(root.uri) for root in offer.roots])

    @server.tool(name="list_files", title="List files", annotations=READ_ONLY)
    async def list_files_tool(offer: Annotated[ListRootsResult, Resolve(resolver)], path: str = "") -> list[str]:
        """List one folder inside the allowed roots (default: the first root). Folders end with '/'.
        A relative path starts at the first root; absolute paths and file:// URIs are accepted."""
        return await anyio.to_thread.run_sync(list_files, path, allowed(offer))

    @server.tool(name="read_file", title="Read a file", annotations=READ_ONLY)
    async def read_file_tool(path: str, offer: Annotated[ListRootsResult, Resolve(resolver)]) -> str:
        """Read one text file inside the allowed roots. A relative path starts at the first root."""
        return await anyio.to_thread.run_sync(read_file, path, allowed(offer))

    @server.tool(name="search_files", title="Search files", annotations=READ_ONLY)
    async def search_files_tool(query: str, offer: Annotated[ListRootsResult, Resolve(resolver)],
                                path: str = "") -> list[SearchHit]:
        """Find lines containing `query` (case-insensitive) in the Markdown and text files under a
        folder inside the allowed roots (default: the first root)."""
        return await anyio.to_thread.run_sync(search_files, query, path, allowed(offer))


def create_server(roots: Sequence[PathLike] | None = None, *, narrow_by_client: bool = True) -> MCPServer:
    """A desk serving only the file tools over `roots` (default: $RESEARCH_DESK_ROOT, else the current folder)."""
    chosen = list(roots) if roots is not None else [os.environ.get("RESEARCH_DESK_ROOT", ".")]
    server = MCPServer("research-desk-files", version=__version__, log_level="WARNING",
                       instructions="Read and search text files inside the folders this server was given.")
    register(server, roots=chosen, narrow_by_client=narrow_by_client)
    return server
