"""Lesson 7's scenarios: a workspace of random documents, fake search services, and the desk under test.

The search service the desk depends on is a fake made here: healthy, down, hanging, or crashing
with a message that holds a random secret; the desk calls it through `target.expose`, so every
call runs in the check's process. The server's log records are read back from what its process
printed (`server_logs`), and `incident_ids` reads an incident id the way a person would.
"""

from __future__ import annotations

import ast
import logging
import random
import re
import string
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from checker.checks.kit.logs import plain_tracebacks
from checker.checks.kit.text import text_of, word
from checker.target import Target

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_FILLER = {"id", "no", "nr", "number", "ref", "reference", "code", "is"}


def incident_ids(text: str) -> list[str]:
    """What follows each word `incident` in `text`: the id a human would read out.

    Any spelling a person would write is fine: "incident 7f3a", "incident 3165", "Incident ID: 4e1c-...",
    "(incident #a1b2c3)", "incident_id=...". Filler words (ID, number, ref) are skipped; ids that hold a
    digit come first, since a word such as "was" is seldom an id.
    """
    found: list[str] = []
    for match in re.finditer("incident", text, re.IGNORECASE):
        for token in _TOKEN.findall(text[match.end() : match.end() + 100])[:4]:
            if token.lower() not in _FILLER:
                found.append(token)
                break
    return sorted(dict.fromkeys(found), key=lambda token: not any(c.isdigit() for c in token))


# -- the workspace -------------------------------------------------------------------------------


@dataclass
class Workspace:
    root: Path
    titles: dict[str, str]  # name -> title
    texts: dict[str, str]  # name -> full text

    @property
    def names(self) -> list[str]:
        return sorted(self.titles)

    def title_matches(self, query: str, limit: int) -> list[str]:
        """The fallback the lesson specifies: title or name contains the query, any case, sorted."""
        q = query.casefold()
        return sorted(n for n, t in self.titles.items() if q in t.casefold() or q in n.casefold())[:limit]

    def add(self, name: str, title: str, text: str) -> None:
        """One more document, on the disk and in what the check expects."""
        self.titles[name], self.texts[name] = title, text
        (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        (self.root / name).write_text(text)


def build_workspace(
    root: Path, rng: random.Random, documents: tuple[int, int] = (5, 9), words: tuple[int, int] = (5, 40)
) -> Workspace:
    """A folder of `documents` random documents (.md and .txt, some in sub-folders), each a `# title`
    and `words` random words."""
    workspace = Workspace(root, {}, {})
    count = rng.randint(*documents)
    while len(workspace.titles) < count:
        name = f"{rng.choice(['', 'notes/', 'papers/'])}{word(rng)}{rng.choice(['.md', '.txt'])}"
        title = " ".join(word(rng).title() for _ in range(rng.randint(2, 4)))
        workspace.add(name, title, f"# {title}\n\n" + " ".join(word(rng) for _ in range(rng.randint(*words))) + "\n")
    return workspace


# -- fake search services, handed to the desk with target.expose: every call runs here ----------


class Healthy:
    """A working search service that sends every hit it has, whatever `limit` says (the desk must cut)."""

    def __init__(self, hits: list[str]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    async def search(self, query: str, limit: int) -> list[str]:
        self.queries.append(query)
        return list(self.hits)


class Outage:
    """Down in one of three ways: a refused connection, the desk's own outage error, or a hang."""

    def __init__(self, kind: str, target: Target, errors: Any) -> None:
        self.kind, self.target, self.errors = kind, target, errors

    async def search(self, query: str, limit: int) -> list[str]:
        if self.kind == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        if self.kind == "unavailable":
            raise self.target.error(self.errors.BackendUnavailable, "search service is in maintenance")
        await anyio.sleep(30)  # hangs far beyond the desk's deadline
        return []


class Crashing:
    """A bug in the dependency: its message carries a secret that must never reach a client."""

    KINDS = {kind.__name__: kind for kind in (RuntimeError, ValueError, KeyError, PermissionError, ZeroDivisionError)}

    def __init__(self, secret: str, kind: str) -> None:
        self.secret, self.kind = secret, self.KINDS[kind]

    async def search(self, query: str, limit: int) -> list[str]:
        raise self.kind(f"cannot open index at postgres://desk:{self.secret}@10.1.2.3/search (/srv/desk/secrets.env)")


def fake_service(target: Target, errors: Any, kind: str, *args: Any) -> Any:
    """One of the fake search services above, handed to student code: its calls run in this process."""
    if kind == "healthy":
        service: Any = Healthy(list(args[0]))
    elif kind == "crashing":
        service = Crashing(str(args[0]), str(args[1]))
    else:
        service = Outage(kind, target, errors)
    return target.expose(service, methods=["search"])


async def make_desk(
    target: Target, root: Path, backend: tuple[Any, ...] | None = None, **kwargs: Any
) -> tuple[Any, Any]:
    """The student's errors module and an ErrorDesk; `backend` names a fake search service, e.g.
    ("healthy", hits)."""
    errors = target.module("errors")
    desk = errors.ErrorDesk(root, **kwargs)
    if backend is not None:
        desk.backend = fake_service(target, errors, *backend)
    return errors, desk


# -- what the server logged, and what the desk wrote -----------------------------------------------


@asynccontextmanager
async def server_logs(target: Target) -> AsyncIterator[list[dict[str, Any]]]:
    """While the block runs, collect the log records the server writes; filled in when it ends.

    A plain standard-library handler on the root logger, where the server runs, writes each
    record as one line to that process's stderr, behind a fresh token; the check reads the
    lines back from what the process printed.
    """
    token = f"lesson07-{uuid.uuid4().hex}"
    logs = target.library("logging")
    handler = logs.StreamHandler()
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logs.Formatter(f"{token} {{levelno}} {{message!r}} {token} {{exc_info!r}}", style="{"))
    root = logs.getLogger()
    root.addHandler(handler)
    seen: list[dict[str, Any]] = []
    try:
        async with plain_tracebacks(target):  # these checks provoke a dozen logged tracebacks
            yield seen
    finally:
        root.removeHandler(handler)
        seen.extend(_records(target.output(), token))


def _records(output: str, token: str) -> list[dict[str, Any]]:
    """The records `server_logs` wrote into `output`: level, message, and the exception they carried."""
    records: list[dict[str, Any]] = []
    for line in output.splitlines():
        head, mark, exc = line.partition(f" {token} ")
        if not line.startswith(f"{token} ") or not mark:
            continue
        level, _, message = head.removeprefix(f"{token} ").partition(" ")
        try:
            text = ast.literal_eval(message)
            records.append({"levelno": int(level), "message": str(text), "exc": exc})
        except (ValueError, SyntaxError):
            continue
    return records


def files_in(target: Target, folder: Path) -> list[str]:
    """The names in a folder the desk chose (its exports), listed where the desk runs."""
    if not target.library("os.path").isdir(str(folder)):
        return []
    return sorted(target.library("os").listdir(str(folder)))


# -- calls ---------------------------------------------------------------------------------------


def not_written(text: str, tool: str) -> str:
    """A note for a failure message when the tool's answer says its ErrorDesk method is still a TODO."""
    if text.strip() == f"Error executing tool {tool}":
        return " (the tool crashed: is its ErrorDesk method written yet?)"
    return ""


async def ok(client: Any, tool: str, args: dict[str, Any], **kw: Any) -> Any:
    """Call `tool`, which must succeed."""
    result = await client.call_tool(tool, args, **kw)
    text = text_of(result)
    assert not result.is_error, f"{tool} failed: {text[:300]!r}{not_written(text, tool)}"
    return result


def idempotency_key(rng: random.Random) -> str:
    """A random idempotency key."""
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(16, 32)))


async def export_meanwhile(
    client: Any, desk: Any, names: list[str], meanwhile: Callable[[], object]
) -> tuple[bool, Any]:
    """Call export_bundle(names) and, once its job is under way (validated, recorded in desk.jobs), call
    `meanwhile` (which pulls a document from under it). Returns whether a job started, and the call's result."""
    before = len(desk.jobs)
    outcome: list[Any] = []

    async def export() -> None:
        outcome.append(await client.call_tool("export_bundle", {"names": names}))

    async with anyio.create_task_group() as tg:
        tg.start_soon(export)
        deadline = time.monotonic() + 5
        while not outcome and time.monotonic() < deadline and len(desk.jobs) == before:
            await anyio.sleep(0.01)
        started = len(desk.jobs) > before
        if started:
            meanwhile()
    return started, outcome[0]


def assert_failed_and_cleaned(target: Target, desk: Any, before: set[Any], started: bool, result: Any,
                              mode: str, batch: list[str], what: str) -> None:
    """An export whose document `what` (e.g. "'a.md' was deleted") midway must fail, say so to the
    caller, end its job as failed with its cleanup run, and leave no file in the exports folder."""
    assert started, (
        f"[{mode}] export_bundle of {len(batch)} known documents recorded no job in desk.jobs: "
        f"{text_of(result)[:200]!r}"
    )
    assert result.is_error, (
        f"[{mode}] {what} while the export ran, yet export_bundle answered as if it worked: "
        f"{text_of(result)[:200]!r}"
    )
    job = next(desk.jobs[j] for j in desk.jobs if j not in before)
    assert job.status == "failed", (
        f"[{mode}] an export that stopped on an error should end with status 'failed', got {job.status!r} "
        f"({job.done}/{job.total} documents)"
    )
    assert job.id in desk.cleanups, (
        f"[{mode}] the failed job's cleanup did not run (its id is not in desk.cleanups)"
    )
    leftovers = files_in(target, desk.exports)  # a folder the desk chose: listed where the desk runs
    assert not leftovers, f"[{mode}] the failed export left files behind: {leftovers}"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """A workspace of random documents for one check (checks files import it for pytest)."""
    return build_workspace(tmp_path / "workspace", random.Random())
