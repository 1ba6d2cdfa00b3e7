"""Lesson 7 checks: every failure reaches the right audience, and the server survives them.

Each run builds a workspace of random documents and talks to the desk through a real
in-memory MCP client, in both protocol eras where the era matters. The search service the
desk depends on is a fake made here: healthy, down, hanging, or crashing with a message that
holds a random secret; the desk calls it through `target.expose`, so every call runs in the
check's process. Expected answers are computed here, never by the code under test.
"""

from __future__ import annotations

import ast
import logging
import random
import re
import shutil
import string
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import MCPError
from mcp.types import INVALID_PARAMS, REQUEST_TIMEOUT

from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio

MODES = ("auto", "legacy")
# The limits the lesson documents (errors.py's MAX_* constants): both sides of each are tried.
MAX_QUERY_CHARS, MAX_LIMIT, MAX_NAME_CHARS, MAX_TITLE_CHARS = 500, 50, 200, 120
MAX_NOTE_CHARS, MAX_EXPORT_DOCUMENTS, MAX_NOTE_ID_CHARS, KEY_CHARS = 10_000, 100, 64, (8, 64)
KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
WIDE = "\u00e9"  # 'e' with an accent: one character, two bytes in UTF-8 (limits count characters)

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
        for token in _TOKEN.findall(text[match.end():match.end() + 100])[:4]:
            if token.lower() not in _FILLER:
                found.append(token)
                break
    return sorted(dict.fromkeys(found), key=lambda token: not any(c.isdigit() for c in token))


def _word(rng: random.Random, low: int = 4, high: int = 9) -> str:
    return "".join(rng.choices(string.ascii_lowercase, k=rng.randint(low, high)))


@dataclass
class Workspace:
    root: Path
    titles: dict[str, str]  # name -> title
    texts: dict[str, str]   # name -> full text

    @property
    def names(self) -> list[str]:
        return sorted(self.titles)

    def title_matches(self, query: str, limit: int) -> list[str]:
        """The fallback the lesson specifies: title or name contains the query, any case, sorted."""
        q = query.casefold()
        return sorted(n for n, t in self.titles.items() if q in t.casefold() or q in n.casefold())[:limit]


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    rng = random.Random()
    root = tmp_path / "workspace"
    titles: dict[str, str] = {}
    texts: dict[str, str] = {}
    for _ in range(rng.randint(5, 9)):
        name = f"{rng.choice(['', 'notes/', 'papers/'])}{_word(rng)}{rng.choice(['.md', '.txt'])}"
        title = " ".join(_word(rng).title() for _ in range(rng.randint(2, 4)))
        text = f"# {title}\n\n" + " ".join(_word(rng) for _ in range(rng.randint(5, 40))) + "\n"
        titles[name], texts[name] = title, text
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Workspace(root, titles, texts)


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


# -- helpers -------------------------------------------------------------------------------------

def _backend(target: Target, errors: Any, kind: str, *args: Any) -> Any:
    """One of the fake search services above, handed to student code: its calls run in this process."""
    if kind == "healthy":
        service: Any = Healthy(list(args[0]))
    elif kind == "crashing":
        service = Crashing(str(args[0]), str(args[1]))
    else:
        service = Outage(kind, target, errors)
    return target.expose(service, methods=["search"])


async def _desk(target: Target, root: Path, backend: tuple[Any, ...] | None = None,
                **kwargs: Any) -> tuple[Any, Any]:
    """The student's ErrorDesk; `backend` names a fake search service, e.g. ("healthy", hits)."""
    errors = target.module("errors")
    desk = errors.ErrorDesk(root, **kwargs)
    if backend is not None:
        desk.backend = _backend(target, errors, *backend)
    return errors, desk


@asynccontextmanager
async def _server_logs(target: Target) -> AsyncIterator[list[dict[str, Any]]]:
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
        yield seen
    finally:
        root.removeHandler(handler)
        seen.extend(_records(target.output(), token))


def _records(output: str, token: str) -> list[dict[str, Any]]:
    """The records `_server_logs` wrote into `output`: level, message, and the exception they carried."""
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


def _files_in(target: Target, folder: Path) -> list[str]:
    """The names in a folder the desk chose (its exports), listed where the desk runs."""
    if not target.library("os.path").isdir(str(folder)):
        return []
    return sorted(target.library("os").listdir(str(folder)))


def _text(result: Any) -> str:
    return "\n".join(getattr(c, "text", "") for c in result.content or [])


def _not_written(text: str, tool: str) -> str:
    if text.strip() == f"Error executing tool {tool}":
        return " (the tool crashed: is its ErrorDesk method written yet?)"
    return ""


async def _ok(client: Any, tool: str, args: dict[str, Any], **kw: Any) -> Any:
    result = await client.call_tool(tool, args, **kw)
    text = _text(result)
    assert not result.is_error, f"{tool} failed: {text[:300]!r}{_not_written(text, tool)}"
    return result


def _key(rng: random.Random) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(16, 32)))


# -- the checks ----------------------------------------------------------------------------------

@check("a mistake the model can fix comes back as a readable tool error", points=2,
       hint="Raise ToolError for an anticipated failure: the call returns is_error=True and the model reads "
            "your message, so name what was wrong and how to find a valid value. Check names before any work starts.")
async def test_tool_error_for_the_model(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, step_seconds=0)
    server = errors.create_server(desk)
    name = rng.choice(workspace.names)
    for mode in MODES:
        missing = f"{rng.choice(['draft', 'memo', 'plan'])}-{rng.randint(1000, 9999)}.md"
        async with target.client(server, mode=mode) as client:
            bad = await client.call_tool("read_document", {"name": missing})
            text = _text(bad)
            assert bad.is_error, (
                f"read_document({missing!r}) for a document that does not exist should be a tool error "
                f"(is_error=True), got a normal result: {text[:200]!r}. Returning an error string hides it.")
            assert missing in text, (
                f"[{mode}] the error for {missing!r} should name it so the model can correct itself; got "
                f"{text[:300]!r}{_not_written(text, 'read_document')}")
            assert "incident" not in text.lower(), (
                "a ToolError came back as an incident: `sanitised` must let ToolError through untouched")
            good = await _ok(client, "read_document", {"name": name})
            assert _text(good) == workspace.texts[name], f"read_document({name!r}) should return the file's text"
            export = await client.call_tool("export_bundle", {"names": [name, missing]})
            assert export.is_error and missing in _text(export), (
                f"export_bundle with the unknown name {missing!r} should be a tool error naming it; got "
                f"{_text(export)[:300]!r}{_not_written(_text(export), 'export_bundle')}")
    assert not desk.jobs, "export_bundle started a job although a name was unknown: validate before doing any work"


@check("a request no model can fix is a JSON-RPC error with code -32602", points=2,
       hint="An idempotency key reused for a different note (another title, another body) is the client's bug, not "
            "the model's: raise MCPError with the invalid-params code from mcp.types and put the key in `data`. "
            "Compare the title and the body apart, never glued into one string.")
async def test_protocol_error_for_the_client(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root)
    server = errors.create_server(desk)
    for mode in MODES:
        key = _key(rng)
        head, tail = _word(rng).title(), _word(rng)
        title, body = head, f"{tail} {_word(rng)}"
        conflicts = [("another body", {"title": title, "body": f"{body} {_word(rng)}"}),
                     ("another title", {"title": f"{title} {_word(rng).title()}", "body": body}),
                     ("the same characters with the title/body boundary moved",
                      {"title": f"{title}{body[:2]}", "body": body[2:]})]
        before = set(desk.notes)  # the notes an earlier era saved
        async with target.client(server, mode=mode) as client:
            first = await _ok(client, "save_note", {"title": title, "body": body, "idempotency_key": key})
            for what, note in conflicts:
                try:
                    result = await client.call_tool("save_note", {**note, "idempotency_key": key})
                except MCPError as exc:
                    assert exc.code == INVALID_PARAMS, (
                        f"[{mode}] reusing a key for a note with {what} should fail with code {INVALID_PARAMS} "
                        f"(invalid params), got {exc.code}: {exc.message}")
                    assert key in repr(exc.error.data) or key in exc.message, (
                        f"[{mode}] the error should carry the reused key (in `data`), got data={exc.error.data!r}")
                else:
                    pytest.fail(f"[{mode}] the key of note (title={title!r}, body={body!r}) was reused for a note "
                                f"with {what} (title={note['title']!r}, body={note['body']!r}) and the call returned "
                                f"a tool result (is_error={result.is_error}: {_text(result)[:150]!r}). That is a "
                                f"different note, and a client whose retry logic is broken is no model's to fix: "
                                f"raise MCPError so the client sees a protocol error")
            retry = await _ok(client, "save_note", {"title": title, "body": body, "idempotency_key": key})
            assert retry.structured_content == first.structured_content, (
                f"[{mode}] after the refused conflicts, a true retry should still get the original receipt "
                f"{first.structured_content}, got {retry.structured_content}")
        notes = desk.notes
        saved = [n for n in notes if n not in before]
        assert len(saved) == 1, f"[{mode}] a rejected request must not save a note (found {len(saved)} new notes)"
        note_id = (first.structured_content or {}).get("note_id")
        assert note_id in saved and notes[note_id].body == body and notes[note_id].title == title, (
            "the original note must stay as it was")


@check("a crash reaches the client as an incident id, never its text (both eras)", points=3,
       hint="Catch what is neither ToolError nor MCPError in `sanitised`, log it with its traceback under a "
            "fresh incident id, and raise a ToolError that says `incident <id>` and nothing of the original.")
async def test_crash_is_sanitised(target: Target, workspace: Workspace) -> None:
    secret = "".join(random.choices(string.ascii_letters + string.digits, k=24))
    # Every kind of bug, in both eras; the same crash three times first, to see that each gets its own id.
    kinds = {"auto": ["RuntimeError", "RuntimeError", "RuntimeError", "ValueError", "KeyError", "PermissionError"],
             "legacy": ["ValueError", "KeyError", "PermissionError", "ZeroDivisionError"]}
    errors, desk = await _desk(target, workspace.root)
    server = errors.create_server(desk)
    crashes: list[tuple[str, str, str]] = []   # (mode, kind, text the client got)
    async with _server_logs(target) as logs:
        for mode in MODES:
            async with target.client(server, mode=mode) as client:
                for kind in kinds[mode]:
                    desk.backend = _backend(target, errors, "crashing", secret, kind)
                    result = await client.call_tool("search_documents", {"query": random.choice(workspace.names)[:3]})
                    wire = result.model_dump_json()
                    text = _text(result)
                    assert secret not in wire, (
                        f"[{mode}] a {kind} raised by the search service (a bug) reached the client with its text, "
                        f"which holds a password: never put str(exc) of an unexpected exception in a result")
                    assert "Traceback" not in wire and "secrets.env" not in wire, (
                        f"[{mode}] after a {kind}, the client received a traceback or a server path")
                    assert result.is_error, (
                        f"[{mode}] a search service that raises {kind} (a bug, not an outage) should make the call "
                        f"fail, got {text[:200]!r}: do not hide bugs behind the fallback")
                    assert incident_ids(text), (
                        f"[{mode}] after a {kind}, the error should say `incident <id>` so the operators can find "
                        f"the details; got {text[:200]!r}")
                    crashes.append((mode, kind, text))

    def carries(record: dict[str, Any], incident: str) -> bool:
        said = re.search(rf"(?<![A-Za-z0-9_-]){re.escape(incident)}(?![A-Za-z0-9_-])", record["message"])
        return bool(said) and (secret in record["exc"] or secret in record["message"])

    seen: list[str] = []
    for mode, kind, text in crashes:
        logged = [(incident, [r for r in logs if carries(r, incident)]) for incident in incident_ids(text)]
        found = next(((incident, hits) for incident, hits in logged if hits), None)
        assert found, (f"[{mode}] the client read {text[:160]!r}, but no server log record names "
                       f"incident {incident_ids(text)[0]!r} together with the original {kind}: log the exception "
                       f"(with exc_info) under the same id, so the operators can see what went wrong")
        incident, hits = found
        assert any(r["levelno"] >= logging.WARNING for r in hits), (
            f"incident {incident} was logged below WARNING; a crash is an ERROR the operators must see")
        seen.append(incident)
    assert len(set(seen[:3])) > 1, (
        f"the same crash, three times, got the same incident id {seen[0]!r} every time: make a fresh id for every "
        f"incident, or the operators cannot tell them apart")


@check("when the search service is down, the answer degrades and says so", points=3,
       hint="Put a deadline around the backend call (anyio.fail_after), catch only the outage errors in "
            "OUTAGES (and the timeout), and answer from title_matches() with degraded=True and a notice. No "
            "backend at all is an outage too; and never pass on more hits than `limit`, whoever sent them.")
async def test_outage_degrades_gracefully(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    limit = rng.randint(2, 4)
    # More matches than `limit`, in titles (any case) and in names only, so the fallback has to cut and to look
    # at both; the query is the marker in another case.
    marker = f"zq{_word(rng, 3, 5)}"
    for index in range(limit + 2):
        in_title = index % 2 == 0
        name = f"{'papers/' if index % 3 == 0 else ''}{_word(rng)}{'' if in_title else '-' + marker}-{index}.md"
        title = f"{_word(rng).title()} {marker.title() if in_title else _word(rng).title()} {_word(rng).title()}"
        workspace.titles[name], workspace.texts[name] = title, f"# {title}\n\n{_word(rng)} {_word(rng)}\n"
        (workspace.root / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace.root / name).write_text(workspace.texts[name])
    query = marker.upper()
    expected = workspace.title_matches(query, limit)
    assert len(workspace.title_matches(query, 1000)) > limit
    remote_hits = rng.sample(workspace.names, k=limit + 3)   # the service sends more than it was asked for
    errors, desk = await _desk(target, workspace.root, backend_timeout=0.3)
    service = Healthy(remote_hits)
    desk.backend = target.expose(service, methods=["search"])
    server = errors.create_server(desk)
    async with target.client(server) as client:
        healthy = (await _ok(client, "search_documents", {"query": query, "limit": limit})).structured_content or {}
        assert healthy.get("hits") == remote_hits[:limit] and not healthy.get("degraded"), (
            f"with a healthy search service that sent {len(remote_hits)} hits for limit={limit}, the answer should "
            f"be its first {limit}, undegraded (never pass on more than the model asked for); got {healthy!r}")
        assert service.queries and service.queries[-1].strip().casefold() == query.casefold(), (
            f"search_documents({query!r}) asked the search service for {service.queries[-1:]}: pass the query on")
        kinds = ["refused", "unavailable", "hang"]
        rng.shuffle(kinds)
        for kind in [*kinds, "none"]:
            desk.backend = None if kind == "none" else _backend(target, errors, kind)
            what = {"refused": "refuses connections", "unavailable": "raises BackendUnavailable",
                    "hang": "never answers", "none": "is not configured (backend=None)"}[kind]
            began = time.monotonic()
            result = None
            with anyio.move_on_after(5):
                result = await client.call_tool("search_documents", {"query": query, "limit": limit})
            took = time.monotonic() - began
            assert result is not None, (
                f"when the search service {what}, search_documents had not answered after 5 s although the desk's "
                f"backend_timeout is 0.3 s: put a deadline on the call to the service")
            answer = result.structured_content or {}
            assert not result.is_error, (
                f"when the search service {what}, the tool failed ({_text(result)[:200]!r}); answer from the "
                f"local titles instead{_not_written(_text(result), 'search_documents')}")
            assert answer.get("degraded") is True and answer.get("source") == "local-titles", (
                f"when the search service {what}, mark the answer degraded=True, source='local-titles'; got {answer!r}")
            assert answer.get("notice"), "a degraded answer needs a notice that tells the model what is missing"
            assert answer.get("hits") == expected, (
                f"when the search service {what}, the fallback for {query!r} (limit {limit}) should be the first "
                f"{limit} title matches {expected} (title or name, any case, sorted), got {answer.get('hits')}")
            if kind == "hang":
                assert took < 2.5, (f"a hanging search service held the call for {took:.1f} s although the desk's "
                                    f"backend_timeout is 0.3 s: put a deadline on the call")


@check("a retried call with the same idempotency key acts once and returns the same receipt", points=3,
       hint="Keep a receipt per key and hold a per-key lock while checking and writing, so retries (even "
            "concurrent ones) find the first receipt; store the note and its receipt together, after the slow write.")
async def test_retry_acts_once(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, write_seconds=0.15)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        args = {"title": _word(rng).title(), "body": _word(rng), "idempotency_key": _key(rng)}
        receipts = [(await _ok(client, "save_note", args)).structured_content for _ in range(rng.randint(2, 4))]
        assert len(desk.notes) == 1, f"{len(receipts)} calls with one idempotency key saved {len(desk.notes)} notes"
        assert all(r == receipts[0] for r in receipts), f"retries returned different receipts: {receipts}"

        burst = {"title": _word(rng).title(), "body": _word(rng), "idempotency_key": _key(rng)}
        results: list[Any] = []

        async def send() -> None:
            results.append((await _ok(client, "save_note", burst)).structured_content)

        async with anyio.create_task_group() as tg:
            for _ in range(rng.randint(3, 5)):
                tg.start_soon(send)
        assert len(desk.notes) == 2, (
            f"{len(results)} concurrent retries with one key saved {len(desk.notes) - 1} notes: two calls both saw "
            f"no receipt and both wrote; hold a lock per key across the check and the write")
        assert all(r == results[0] for r in results), "concurrent retries returned different receipts"

        late = {"title": _word(rng).title(), "body": _word(rng), "idempotency_key": _key(rng)}
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("save_note", late, read_timeout_seconds=0.05)
        assert timed_out.value.code == REQUEST_TIMEOUT
        await anyio.sleep(0.3)
        retried = (await _ok(client, "save_note", late)).structured_content
        assert len(desk.notes) == 3, (
            f"after a timed-out call and its retry there should be exactly one new note, found {len(desk.notes) - 2}")
        assert retried and retried.get("note_id") in desk.notes
        fresh = await _ok(client, "save_note", {**late, "idempotency_key": _key(rng)})
        assert len(desk.notes) == 4 and fresh.structured_content != retried, "a new key must save a new note"


@check("a cancelled call stops its work and cleans up", points=3,
       hint="A client timeout cancels the handler: the cancellation arrives at an await. Mark the job cancelled, "
            "re-raise, and remove the partial file in a finally block; a finished export must keep its file.")
async def test_cancelled_call_stops_work(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    rng = random.Random()
    exports = tmp_path / f"exports-{_word(rng)}"   # an exports folder the operator put outside the workspace
    errors, desk = await _desk(target, workspace.root, step_seconds=0.05, exports=exports)
    server = errors.create_server(desk)
    names = [rng.choice(workspace.names) for _ in range(rng.randint(30, 40))]
    for mode in MODES:
        before = set(desk.jobs)  # the jobs of an earlier era
        async with target.client(server, mode=mode) as client:
            try:
                result = await client.call_tool("export_bundle", {"names": names}, read_timeout_seconds=0.3)
            except MCPError as exc:
                assert exc.code == REQUEST_TIMEOUT, f"expected the client's timeout error, got {exc.code}: {exc.message}"
            else:
                pytest.fail(f"[{mode}] the export of {len(names)} documents should outlast the 0.3 s timeout, but it "
                            f"answered: {_text(result)[:200]!r}{_not_written(_text(result), 'export_bundle')}")
            await anyio.sleep(0.3)
            jobs = desk.jobs
            started = [j for j in jobs if j not in before]
            assert len(started) == 1, f"expected one export job in desk.jobs, found {len(started)}"
            job = jobs[started[0]]
            done = job.done
            await anyio.sleep(0.4)
            assert job.done == done and done < len(names), (
                f"[{mode}] the export kept working after the client gave up ({done} -> {job.done} documents): let "
                f"the cancellation propagate instead of catching it")
            assert job.status == "cancelled", f"[{mode}] a cancelled export should end with status 'cancelled', got {job.status!r}"
            assert job.id in desk.cleanups, f"[{mode}] the cancelled job's cleanup did not run (desk.cleanups)"
            leftovers = _files_in(target, exports) + _files_in(target, workspace.root / ".exports")
            assert not leftovers, f"[{mode}] the cancelled export left files behind: {leftovers}"
            small = rng.sample(workspace.names, k=2)
            done_result = (await _ok(client, "export_bundle", {"names": small})).structured_content or {}
            bundle = exports / str(done_result.get("bundle"))
            assert target.library("os.path").isfile(str(bundle)), (
                f"a finished export must keep its bundle file in the desk's exports folder ({exports}, as "
                f"ErrorDesk(exports=...) was given); {bundle.name} is not there")
            content = target.read_text(bundle)
            assert all(workspace.texts[n].strip() in content for n in small), "the bundle should hold each document's text"
            target.library("os").remove(str(bundle))


@check("an export that fails midway is marked failed and leaves no partial file", points=2,
       hint="Cancellation is not the only way out of the loop: a step can raise too (a document deleted while the "
            "export runs). Mark the job failed, let the error reach the caller, and remove the partial file in the "
            "same finally block that handles cancellation.")
async def test_failed_export_leaves_nothing(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, step_seconds=0.04)
    server = errors.create_server(desk)
    for mode in MODES:
        victim = rng.choice(workspace.names)
        others = [n for n in workspace.names if n != victim]
        batch = [rng.choice(others) for _ in range(rng.randint(10, 13))] + [victim]
        before = set(desk.jobs)
        outcome: list[Any] = []
        async with target.client(server, mode=mode) as client:
            async def export() -> None:
                outcome.append(await client.call_tool("export_bundle", {"names": batch}))

            async with anyio.create_task_group() as tg:
                tg.start_soon(export)
                deadline = time.monotonic() + 5
                while not outcome and time.monotonic() < deadline and len(desk.jobs) == len(before):
                    await anyio.sleep(0.01)
                started = len(desk.jobs) > len(before)
                if started:  # validated and under way: the last document vanishes before its step
                    target.library("os").remove(str(workspace.root / victim))
        assert started, (f"[{mode}] export_bundle of {len(batch)} known documents recorded no job in desk.jobs: "
                         f"{_text(outcome[0])[:200]!r}" if outcome else f"[{mode}] export_bundle recorded no job")
        result = outcome[0]
        assert result.is_error, (
            f"[{mode}] {victim!r} was deleted while the export ran, yet export_bundle answered as if it worked: "
            f"{_text(result)[:200]!r}")
        job = next(desk.jobs[j] for j in desk.jobs if j not in before)
        assert job.status == "failed", (
            f"[{mode}] an export that stopped on an error should end with status 'failed', got {job.status!r} "
            f"({job.done}/{job.total} documents)")
        assert job.id in desk.cleanups, f"[{mode}] the failed job's cleanup did not run (its id is not in desk.cleanups)"
        leftovers = _files_in(target, desk.exports)
        assert not leftovers, f"[{mode}] the failed export left files behind: {leftovers}"
        target.library("pathlib").Path(str(workspace.root / victim)).write_text(workspace.texts[victim])


@check("read_document and export_bundle serve only the workspace's own documents", points=2,
       hint="A name is a document only if a scan of the workspace would list it: no `..`, no absolute path, no link "
            "that leads out, nothing hidden, only .md and .txt files. documents.document_path answers exactly that; "
            "joining the name to the root and checking that a file exists lets a model read any file on the machine.")
async def test_only_workspace_documents(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    secret = "".join(rng.choices(string.ascii_letters + string.digits, k=20))
    root = workspace.root
    beside = root.parent
    outside = beside / f"outside-{_word(rng)}.md"
    outside.write_text(f"# Outside\n\nthe secret is {secret}\n")
    private = beside / f"{root.name}-private"          # shares the workspace's name as a prefix
    private.mkdir()
    (private / "secret.md").write_text(f"# Private\n\n{secret}\n")
    (root / "notes").mkdir(exist_ok=True)
    link, shelf = f"notes/link-{_word(rng)}.md", f"shelf-{_word(rng)}"
    (root / link).symlink_to(outside)                  # a document-looking link that leads out
    (root / shelf).symlink_to(private, target_is_directory=True)
    (root / ".env").write_text(f"API_KEY={secret}\n")
    (root / ".drafts").mkdir()
    (root / ".drafts" / "plan.md").write_text(f"# Plan\n\n{secret}\n")
    (root / "settings.json").write_text(f'{{"token": "{secret}"}}\n')
    refused = [f"../{outside.name}", f"notes/../../{outside.name}", str(outside), f"../{private.name}/secret.md",
               link, f"{shelf}/secret.md", ".env", ".drafts/plan.md", "settings.json"]
    errors, desk = await _desk(target, root, step_seconds=0)
    good = rng.choice(workspace.names)
    async with target.client(errors.create_server(desk)) as client:
        assert _text(await _ok(client, "read_document", {"name": good})) == workspace.texts[good]
        for name in refused:
            result = await client.call_tool("read_document", {"name": name})
            text = _text(result)
            assert secret not in result.model_dump_json(), (
                f"read_document({name!r}) returned a file that is not a document of the workspace: serve only names "
                f"a scan of the workspace lists (documents.document_path), never whatever the path reaches")
            assert result.is_error and name in text and "incident" not in text.lower(), (
                f"read_document({name!r}) is not a document of the workspace; expected a tool error naming it, got "
                f"is_error={result.is_error}: {text[:200]!r}{_not_written(text, 'read_document')}")
            export = await client.call_tool("export_bundle", {"names": [good, name]})
            assert export.is_error and name in _text(export), (
                f"export_bundle([{good!r}, {name!r}]) should be refused with a tool error naming {name!r}, got "
                f"is_error={export.is_error}: {_text(export)[:200]!r}")
    assert not desk.jobs, "export_bundle started a job for a name that is not a document of the workspace"
    bundles = _files_in(target, desk.exports)
    assert not any(secret in target.read_text(desk.exports / b) for b in bundles), (
        "an export copied a file from outside the workspace into a bundle")


@check("an export never writes through a linked exports folder", points=2,
       hint="A write follows whatever is on the disk: a .exports planted as a link leads it out of the workspace. "
            "Open the bundle with start_bundle (it reaches the folder without following links and refuses one), "
            "publish it when done, and do the file work on a worker thread.")
async def test_export_refuses_linked_folder(target: Target, workspace: Workspace, tmp_path: Path) -> None:
    rng = random.Random()
    names = rng.sample(workspace.names, k=2)
    outside = tmp_path / f"outside-{_word(rng)}"
    outside.mkdir()
    errors, desk = await _desk(target, workspace.root, step_seconds=0)
    async with target.client(errors.create_server(desk)) as client:
        fine = (await _ok(client, "export_bundle", {"names": names})).structured_content or {}
    bundle = workspace.root / ".exports" / str(fine.get("bundle"))
    assert target.library("os.path").isfile(str(bundle)) and all(
            workspace.texts[n].strip() in target.read_text(bundle) for n in names), (
        f"export_bundle({names}) answered {fine} but its bundle is not in the workspace's .exports folder")
    shutil.rmtree(workspace.root / ".exports")
    (workspace.root / ".exports").symlink_to(outside, target_is_directory=True)
    errors, desk = await _desk(target, workspace.root, step_seconds=0)
    async with target.client(errors.create_server(desk)) as client:
        result = await client.call_tool("export_bundle", {"names": names})
    written = sorted(p.name for p in outside.iterdir())
    assert not written, (f"with .exports a link to a folder outside the workspace, export_bundle wrote {written} there: "
                         "a write must never follow a link")
    assert result.is_error and "incident" not in _text(result).lower(), (
        f"an export that cannot be written inside the workspace must fail with a tool error saying why, got "
        f"is_error={result.is_error}: {_text(result)[:200]!r}")
    assert not desk.jobs or all(job.status != "finished" for job in desk.jobs.values()), "a refused export finished"


@check("what the desk remembers is bounded, and a full desk says so", points=2,
       hint="A long-running server must not grow forever. Refuse a new note once the desk holds max_notes (a "
            "ToolError that says the limit and how to make room), and keep receipts in the ReceiptBook: find() "
            "forgets a receipt older than receipt_seconds, keep() the oldest beyond max_receipts.")
async def test_memory_is_bounded(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    limit, kept = rng.randint(3, 6), rng.randint(2, 4)
    errors, desk = await _desk(target, workspace.root, max_notes=limit, receipt_seconds=1.0)
    async with target.client(errors.create_server(desk)) as client:
        first_key = _key(rng)
        first = (await _ok(client, "save_note", {"title": "first", "body": "kept", "idempotency_key": first_key})
                 ).structured_content or {}
        again = (await _ok(client, "save_note", {"title": "first", "body": "kept", "idempotency_key": first_key})
                 ).structured_content or {}
        assert again == first, (
            f"a retry within receipt_seconds (1 s) should get the stored receipt {first}, got {again}")
        for n in range(limit - 1):
            await _ok(client, "save_note", {"title": f"n{n}", "body": _word(rng), "idempotency_key": _key(rng)})
        full = await client.call_tool("save_note", {"title": "one too many", "body": "x", "idempotency_key": _key(rng)})
        assert full.is_error and str(limit) in _text(full) and "delete_note" in _text(full), (
            f"the desk holds max_notes={limit} notes; one more should be refused with a tool error that says the "
            f"limit ({limit}) and that delete_note makes room, got is_error={full.is_error}: {_text(full)[:200]!r}")
        assert len(desk.notes) == limit, f"max_notes={limit}, yet the desk holds {len(desk.notes)} notes"
        await _ok(client, "delete_note", {"note_id": first.get("note_id")})
        await anyio.sleep(1.2)   # past receipt_seconds: the first key's receipt is forgotten
        try:
            reused = await client.call_tool("save_note", {"title": "first", "body": "a new note",
                                                          "idempotency_key": first_key})
        except MCPError as exc:
            pytest.fail(f"an idempotency key reused after receipt_seconds (1 s) was refused ({exc.code}: "
                        f"{exc.message}): its receipt should have been forgotten")
        assert not reused.is_error and (reused.structured_content or {}).get("note_id") != first.get("note_id"), (
            f"after receipt_seconds, the same key should save a new note; got {_text(reused)[:200]!r}")
    errors, desk = await _desk(target, workspace.root, max_receipts=kept)
    async with target.client(errors.create_server(desk)) as client:
        for _ in range(kept + 3):
            await _ok(client, "save_note", {"title": "t", "body": _word(rng), "idempotency_key": _key(rng)})
    assert len(desk.receipts) == kept, (
        f"max_receipts={kept}, yet {len(desk.receipts)} receipts are kept after {kept + 3} notes: forget the oldest")


@check("the server keeps serving after a storm of bad calls", points=2,
       hint="Bad input must never take the server down or leave it half-done: invalid arguments fail validation "
            "before your code runs, unknown tools are answered by the SDK, and valid calls still work afterwards.")
async def test_survives_bad_call_storm(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, backend=("healthy", workspace.names[:2]), step_seconds=0)
    server = errors.create_server(desk)
    huge = "x" * rng.randint(100_000, 400_000)
    bad_calls: list[tuple[str, Any]] = [
        (f"{_word(rng)}_{_word(rng)}", {}),
        (f"{_word(rng)}", {"query": "a"}),
        ("search_documents", {}),
        ("search_documents", {"query": rng.randint(1, 99)}),
        ("search_documents", {"query": "ok", "limit": "many"}),
        ("search_documents", {"query": "ok", "limit": -rng.randint(1, 10**9)}),
        ("search_documents", {"query": "ok", "limit": rng.randint(10**6, 10**9)}),
        ("search_documents", {"query": huge}),
        ("read_document", {"name": huge}),
        ("read_document", {"name": ["a", "b"]}),
        ("read_document", {"name": "../" * rng.randint(2, 6) + "etc/passwd"}),
        ("read_document", None),
        ("save_note", {"title": "t", "body": "b"}),
        ("save_note", {"title": "t", "body": huge, "idempotency_key": _key(rng)}),
        ("save_note", {"title": huge[:5000], "body": "b", "idempotency_key": _key(rng)}),
        ("save_note", {"title": "t", "body": "b", "idempotency_key": "no"}),
        ("save_note", {"title": "t", "body": "b", "idempotency_key": "spaces and ; quotes' " * 2}),
        ("delete_note", {"note_id": huge}),
        ("export_bundle", {"names": []}),
        ("export_bundle", {"names": "not-a-list"}),
        ("export_bundle", {"names": [rng.choice(workspace.names)] * rng.randint(5_000, 20_000)}),
    ]
    calls = bad_calls * 2
    rng.shuffle(calls)
    outcomes: list[str] = []

    async def bad(client: Any, tool: str, args: Any) -> None:
        try:
            result = await client.call_tool(tool, args)
        except MCPError:
            outcomes.append("protocol")
            return
        outcomes.append("tool-error" if result.is_error else f"accepted {tool}")

    for mode in MODES:
        outcomes.clear()
        async with target.client(server, mode=mode) as client:
            with anyio.move_on_after(12) as storm:
                async with anyio.create_task_group() as tg:
                    for tool, args in calls:
                        tg.start_soon(bad, client, tool, args)
            assert not storm.cancelled_caught, (
                f"[{mode}] {len(calls) - len(outcomes)} of {len(calls)} bad calls got no answer within 12 s: a bad "
                f"call must fail fast, not hang")
            accepted = [o for o in outcomes if o.startswith("accepted")]
            assert not accepted, (f"[{mode}] a malformed or oversized call was accepted ({accepted[0]}): constrain the "
                                  f"arguments so it is rejected at the edge")
            search = (await _ok(client, "search_documents", {"query": "a"})).structured_content or {}
            assert search.get("hits") == workspace.names[:2], f"after the storm, search answered {search!r}"
            name = rng.choice(workspace.names)
            assert _text(await _ok(client, "read_document", {"name": name})) == workspace.texts[name]
            await _ok(client, "save_note", {"title": "after", "body": "storm", "idempotency_key": _key(rng)})
        assert not desk.jobs, f"[{mode}] a rejected export started a job"
    assert len(desk.notes) == 2, f"only the two good save_note calls may save notes; found {len(desk.notes)}"


@check("argument limits are advertised in the schema and enforced at the edge", points=2,
       hint="Annotated[str, Field(max_length=...)], Annotated[int, Field(ge=..., le=...)] (or gt/lt, or a pattern) put "
            "the limits in the input schema the client sees, and the SDK rejects a value past them with a message "
            "naming the field. Limits count characters, not bytes, and a value exactly at a limit is allowed.")
async def test_limits_advertised_and_enforced(target: Target, workspace: Workspace) -> None:
    from jsonschema import Draft202012Validator

    rng = random.Random()
    # Two documents whose names are exactly at the name limit and one past it, in two-byte characters.
    at_limit = f"{WIDE * 120}/{WIDE * (MAX_NAME_CHARS - 124)}.md"
    past_limit = f"{WIDE * 120}/{WIDE * (MAX_NAME_CHARS - 123)}.md"
    for name in (at_limit, past_limit):
        (workspace.root / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace.root / name).write_text(f"# Long name\n\n{_word(rng)}\n", encoding="utf-8")
    doc = rng.choice(workspace.names)
    huge = "x" * rng.randint(100_000, 150_000)

    def key(length: int) -> str:
        return "".join(rng.choices(KEY_ALPHABET, k=length))

    def note(**changes: Any) -> dict[str, Any]:
        return {"title": "t", "body": "b", "idempotency_key": key(20), **changes}

    low, high = KEY_CHARS
    allowed: list[tuple[str, str, dict[str, Any]]] = [
        ("a query of exactly 500 two-byte characters", "search_documents", {"query": WIDE * MAX_QUERY_CHARS}),
        ("limit=1", "search_documents", {"query": "a", "limit": 1}),
        (f"limit={MAX_LIMIT}", "search_documents", {"query": "a", "limit": MAX_LIMIT}),
        (f"a document name of exactly {MAX_NAME_CHARS} two-byte characters", "read_document", {"name": at_limit}),
        (f"a title of exactly {MAX_TITLE_CHARS} two-byte characters", "save_note", note(title=WIDE * MAX_TITLE_CHARS)),
        (f"a body of exactly {MAX_NOTE_CHARS} two-byte characters", "save_note", note(body=WIDE * MAX_NOTE_CHARS)),
        (f"an idempotency key of {low} characters", "save_note", note(idempotency_key=key(low))),
        (f"an idempotency key of {high} characters", "save_note", note(idempotency_key=key(high))),
        (f"a note id of {MAX_NOTE_ID_CHARS} characters", "delete_note", {"note_id": "n" * MAX_NOTE_ID_CHARS}),
        ("one name to export", "export_bundle", {"names": [at_limit]}),
        (f"{MAX_EXPORT_DOCUMENTS} names to export", "export_bundle", {"names": [doc] * MAX_EXPORT_DOCUMENTS}),
    ]
    refused: list[tuple[str, str, dict[str, Any], str]] = [
        ("a query one character too long", "search_documents", {"query": WIDE * (MAX_QUERY_CHARS + 1)}, "query"),
        ("a 100,000-character query", "search_documents", {"query": huge}, "query"),
        ("limit=0", "search_documents", {"query": "a", "limit": 0}, "limit"),
        ("a negative limit", "search_documents", {"query": "a", "limit": -rng.randint(1, 10**6)}, "limit"),
        (f"limit={MAX_LIMIT + 1}", "search_documents", {"query": "a", "limit": MAX_LIMIT + 1}, "limit"),
        ("a huge limit", "search_documents", {"query": "a", "limit": rng.randint(10**6, 10**9)}, "limit"),
        ("a document name one character too long (the document exists)", "read_document", {"name": past_limit},
         "name"),
        ("a 100,000-character document name", "read_document", {"name": huge}, "name"),
        ("a title one character too long", "save_note", note(title=WIDE * (MAX_TITLE_CHARS + 1)), "title"),
        ("a body one character too long", "save_note", note(body=WIDE * (MAX_NOTE_CHARS + 1)), "body"),
        (f"an idempotency key of {low - 1} characters", "save_note", note(idempotency_key=key(low - 1)),
         "idempotency_key"),
        (f"an idempotency key of {high + 1} characters", "save_note", note(idempotency_key=key(high + 1)),
         "idempotency_key"),
        ("a 100,000-character idempotency key", "save_note", note(idempotency_key=huge), "idempotency_key"),
        ("an idempotency key with a space and a quote", "save_note", note(idempotency_key=f"{key(6)} '{key(6)}"),
         "idempotency_key"),
        ("a note id one character too long", "delete_note", {"note_id": "n" * (MAX_NOTE_ID_CHARS + 1)}, "note_id"),
        ("no names to export", "export_bundle", {"names": []}, "names"),
        (f"{MAX_EXPORT_DOCUMENTS + 1} names to export", "export_bundle",
         {"names": [doc] * (MAX_EXPORT_DOCUMENTS + 1)}, "names"),
        ("a name to export one character too long (the document exists)", "export_bundle",
         {"names": [past_limit]}, "names"),
    ]
    errors, desk = await _desk(target, workspace.root, backend=("healthy", workspace.names), step_seconds=0)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        missing = sorted({"search_documents", "read_document", "save_note", "delete_note", "export_bundle"} - set(tools))
        assert not missing, f"missing tools: {missing}"
        schemas = {name: Draft202012Validator(tool.input_schema) for name, tool in tools.items()}
        for what, tool, args in allowed:
            assert schemas[tool].is_valid(args), (
                f"the input schema of {tool} refuses {what}, which the lesson allows: "
                f"{next(iter(schemas[tool].iter_errors(args))).message[:160]}")
            result = await _ok(client, tool, args)
            if tool == "read_document":
                assert _text(result).startswith("# Long name"), f"read_document with {what} did not return it"
        for what, tool, args, field in refused:
            assert not schemas[tool].is_valid(args), (
                f"the input schema of {tool} accepts {what}: the client cannot see the limit on `{field}`. Put it "
                f"in the argument's type (Annotated[..., Field(...)]) so the schema advertises it")
            try:
                result = await client.call_tool(tool, args)
            except MCPError as exc:
                text, rejected = exc.message, True
            else:
                text, rejected = _text(result), result.is_error
            assert rejected and field in text, (
                f"{tool} with {what} should be rejected at the edge with a message naming `{field}`; got "
                f"is_error={rejected}: {text[:200]!r}")
    saved = len([a for _, tool, a in allowed if tool == "save_note"])
    assert len(desk.notes) == saved, f"only the {saved} calls within the limits may save notes, found {len(desk.notes)}"


@check("tools declare truthful annotations (read-only, idempotent, destructive, open-world)", points=2,
       hint="ToolAnnotations tell a host what it may retry or must confirm. Remember the defaults when a hint is "
            "missing: not read-only, destructive, not idempotent, open world. A writer that destroys nothing, and a "
            "tool that never leaves the desk, must say so.")
async def test_annotations_truthful(target: Target, workspace: Workspace) -> None:
    errors, desk = await _desk(target, workspace.root)
    async with target.client(errors.create_server(desk)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    problems: list[str] = []

    def hints(name: str) -> Any:
        tool = tools.get(name)
        if tool is None or tool.annotations is None:
            problems.append(f"{name} has no annotations")
            return None
        return tool.annotations

    for reader in ("search_documents", "read_document"):
        a = hints(reader)
        if a is not None and a.read_only_hint is not True:
            problems.append(f"{reader} only reads: read_only_hint=True")
    save = hints("save_note")
    if save is not None:
        if save.read_only_hint:
            problems.append("save_note changes state: it is not read-only")
        if save.idempotent_hint is not True:
            problems.append("save_note is idempotent thanks to its key: idempotent_hint=True")
        if save.destructive_hint is not False:
            problems.append("save_note only adds: destructive_hint=False (a missing hint means destructive)")
    delete = hints("delete_note")
    if delete is not None:
        if delete.read_only_hint or delete.destructive_hint is False:
            problems.append("delete_note destroys data: not read-only, destructive_hint True")
        if delete.idempotent_hint is not True:
            problems.append("deleting twice ends in the same state: delete_note is idempotent")
    export = hints("export_bundle")
    if export is not None:
        if export.read_only_hint:
            problems.append("export_bundle writes a file: it is not read-only")
        if export.destructive_hint is not False:
            problems.append("export_bundle only adds a new file: destructive_hint=False (a missing hint means "
                            "destructive)")
        if export.idempotent_hint:
            problems.append("export_bundle writes a new bundle on every call: it is not idempotent")
    search = tools.get("search_documents")
    if search is not None and search.annotations is not None and search.annotations.open_world_hint is False:
        problems.append("search_documents asks an outside search service: it is open-world (open_world_hint True)")
    for name in ("read_document", "save_note", "delete_note", "export_bundle"):
        tool = tools.get(name)
        if tool is not None and tool.annotations is not None and tool.annotations.open_world_hint is not False:
            problems.append(f"{name} touches only the desk's own workspace and notes: open_world_hint=False (a "
                            f"missing hint means open world)")
    assert not problems, "; ".join(problems)
