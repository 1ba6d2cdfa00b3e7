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
INCIDENT = re.compile(r"incident[\s:#=]+([A-Za-z0-9_-]{6,})", re.IGNORECASE)


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
    def __init__(self, hits: list[str]) -> None:
        self.hits = hits
        self.calls = 0

    async def search(self, query: str, limit: int) -> list[str]:
        self.calls += 1
        return self.hits[:limit]


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

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def search(self, query: str, limit: int) -> list[str]:
        kind = random.choice([RuntimeError, ValueError, KeyError, PermissionError])
        raise kind(f"cannot open index at postgres://desk:{self.secret}@10.1.2.3/search (/srv/desk/secrets.env)")


# -- helpers -------------------------------------------------------------------------------------

def _backend(target: Target, errors: Any, kind: str, *args: Any) -> Any:
    """One of the fake search services above, handed to student code: its calls run in this process."""
    if kind == "healthy":
        service: Any = Healthy(list(args[0]))
    elif kind == "crashing":
        service = Crashing(str(args[0]))
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
            assert not INCIDENT.search(text), (
                "a ToolError came back as an incident: `sanitised` must let ToolError through untouched")
            good = await _ok(client, "read_document", {"name": name})
            assert _text(good) == workspace.texts[name], f"read_document({name!r}) should return the file's text"
            export = await client.call_tool("export_bundle", {"names": [name, missing]})
            assert export.is_error and missing in _text(export), (
                f"export_bundle with the unknown name {missing!r} should be a tool error naming it; got "
                f"{_text(export)[:300]!r}{_not_written(_text(export), 'export_bundle')}")
    assert not desk.jobs, "export_bundle started a job although a name was unknown: validate before doing any work"


@check("a request no model can fix is a JSON-RPC error with code -32602", points=2,
       hint="An idempotency key reused for a different note is the client's bug, not the model's: raise "
            "MCPError with the invalid-params code from mcp.types and put the key in `data`.")
async def test_protocol_error_for_the_client(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root)
    server = errors.create_server(desk)
    for mode in MODES:
        key = _key(rng)
        title, body = _word(rng).title(), " ".join(_word(rng) for _ in range(8))
        before = set(desk.notes)  # the notes an earlier era saved
        async with target.client(server, mode=mode) as client:
            first = await _ok(client, "save_note", {"title": title, "body": body, "idempotency_key": key})
            other = {"title": title, "body": body + " " + _word(rng), "idempotency_key": key}
            try:
                result = await client.call_tool("save_note", other)
            except MCPError as exc:
                assert exc.code == INVALID_PARAMS, (
                    f"[{mode}] reusing a key for a different note should fail with code {INVALID_PARAMS} "
                    f"(invalid params), got {exc.code}: {exc.message}")
                assert key in repr(exc.error.data) or key in exc.message, (
                    f"[{mode}] the error should carry the reused key (in `data`), got data={exc.error.data!r}")
            else:
                pytest.fail(f"[{mode}] reusing an idempotency key for a different note returned a tool result "
                            f"(is_error={result.is_error}: {_text(result)[:150]!r}); the client's retry logic is "
                            f"broken, which no model can fix: raise MCPError so the client sees a protocol error")
        notes = desk.notes
        saved = [n for n in notes if n not in before]
        assert len(saved) == 1, f"[{mode}] a rejected request must not save a note (found {len(saved)})"
        note_id = (first.structured_content or {}).get("note_id")
        assert note_id in saved and notes[note_id].body == body, (
            "the original note must stay as it was")


@check("a crash reaches the client as an incident id, never its text (both eras)", points=3,
       hint="Catch what is neither ToolError nor MCPError in `sanitised`, log it with its traceback under a "
            "fresh incident id, and raise a ToolError that says `incident <id>` and nothing of the original.")
async def test_crash_is_sanitised(target: Target, workspace: Workspace) -> None:
    secret = "".join(random.choices(string.ascii_letters + string.digits, k=24))
    errors, desk = await _desk(target, workspace.root, backend=("crashing", secret))
    server = errors.create_server(desk)
    seen: list[str] = []
    async with _server_logs(target) as logs:
        for mode in MODES:
            async with target.client(server, mode=mode) as client:
                result = await client.call_tool("search_documents", {"query": random.choice(workspace.names)[:3]})
            wire = result.model_dump_json()
            text = _text(result)
            assert secret not in wire, (
                f"[{mode}] the exception's text (with a password) reached the client: never put str(exc) of an "
                f"unexpected exception in a result")
            assert "Traceback" not in wire and "secrets.env" not in wire, (
                f"[{mode}] the client received a traceback or a server path")
            assert result.is_error, (
                f"[{mode}] a crashing search service (a bug, not an outage) should make the call fail, got "
                f"{text[:200]!r}: do not hide bugs behind the fallback")
            match = INCIDENT.search(text)
            assert match, (f"[{mode}] the error should say `incident <id>` so the operators can find the details; "
                           f"got {text[:200]!r}")
            seen.append(match.group(1))
    assert len(set(seen)) == len(seen), f"two crashes got the same incident id {seen[0]!r}: make a fresh one each time"

    def carries(record: dict[str, Any], incident: str) -> bool:
        return incident in record["message"] and (secret in record["exc"] or secret in record["message"])

    for incident in seen:
        hits = [r for r in logs if carries(r, incident)]
        assert hits, (f"no server log record carries incident {incident} together with the original exception: "
                      f"log it (with exc_info) so the operators can see what went wrong")
        assert any(r["levelno"] >= logging.WARNING for r in hits), (
            f"incident {incident} was logged below WARNING; a crash is an ERROR the operators must see")


@check("when the search service is down, the answer degrades and says so", points=3,
       hint="Put a deadline around the backend call (anyio.fail_after), catch only the outage errors in "
            "OUTAGES (and the timeout), and answer from title_matches() with degraded=True and a notice.")
async def test_outage_degrades_gracefully(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    name = rng.choice(workspace.names)
    title = workspace.titles[name]
    start = rng.randint(0, max(0, len(title) - 3))
    query = title[start:start + 3].swapcase()
    limit = rng.randint(2, 6)
    expected = workspace.title_matches(query, limit)
    remote_hits = rng.sample(workspace.names, k=3)
    errors, desk = await _desk(target, workspace.root, backend=("healthy", remote_hits), backend_timeout=0.3)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        healthy = (await _ok(client, "search_documents", {"query": query, "limit": limit})).structured_content or {}
        assert healthy.get("hits") == remote_hits[:limit] and not healthy.get("degraded"), (
            f"with a healthy search service, return its hits undegraded; got {healthy!r}")
        kinds = ["refused", "unavailable", "hang"]
        rng.shuffle(kinds)
        for kind in kinds:
            desk.backend = _backend(target, errors, kind)
            what = {"refused": "refuses connections", "unavailable": "raises BackendUnavailable",
                    "hang": "never answers"}[kind]
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
                f"the fallback for {query!r} (limit {limit}) should be the title matches {expected}, "
                f"got {answer.get('hits')}")
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
async def test_cancelled_call_stops_work(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, step_seconds=0.05)
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
            leftovers = _files_in(target, desk.exports)
            assert not leftovers, f"[{mode}] the cancelled export left files behind: {leftovers}"
            small = rng.sample(workspace.names, k=2)
            done_result = (await _ok(client, "export_bundle", {"names": small})).structured_content or {}
            bundle = desk.exports / str(done_result.get("bundle"))
            assert target.library("os.path").isfile(str(bundle)), (
                f"a finished export must keep its bundle file; {bundle.name} is missing")
            content = target.read_text(bundle)
            assert all(workspace.texts[n].strip() in content for n in small), "the bundle should hold each document's text"
            target.library("os").remove(str(bundle))


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
    assert result.is_error and not INCIDENT.search(_text(result)), (
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
       hint="Annotated[str, Field(max_length=...)] and Annotated[int, Field(ge=..., le=...)] put the limits in the "
            "input schema the client sees, and the SDK rejects a value past them with a message naming the field.")
async def test_limits_advertised_and_enforced(target: Target, workspace: Workspace) -> None:
    rng = random.Random()
    errors, desk = await _desk(target, workspace.root, backend=("healthy", workspace.names), step_seconds=0)
    server = errors.create_server(desk)
    async with target.client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        missing = sorted({"search_documents", "read_document", "save_note", "export_bundle"} - set(tools))
        assert not missing, f"missing tools: {missing}"

        def prop(tool: str, arg: str) -> dict[str, Any]:
            return tools[tool].input_schema.get("properties", {}).get(arg, {})

        wants = [("search_documents", "query", "maxLength"), ("search_documents", "limit", "maximum"),
                 ("search_documents", "limit", "minimum"), ("save_note", "title", "maxLength"),
                 ("save_note", "body", "maxLength"), ("save_note", "idempotency_key", "maxLength"),
                 ("read_document", "name", "maxLength"), ("export_bundle", "names", "maxItems")]
        for tool, arg, keyword in wants:
            assert keyword in prop(tool, arg), (
                f"the input schema of {tool} does not limit `{arg}` ({keyword}): the client cannot see the limit "
                f"and nothing stops a huge value")
        max_query, max_limit = prop("search_documents", "query")["maxLength"], prop("search_documents", "limit")["maximum"]
        max_body, max_names = prop("save_note", "body")["maxLength"], prop("export_bundle", "names")["maxItems"]
        assert max_query <= 10_000 and max_limit <= 1_000 and max_body <= 1_000_000 and max_names <= 10_000, (
            "the limits are so large they protect nothing")
        assert prop("search_documents", "limit")["minimum"] >= 0, "a negative limit makes no sense"

        over = [("search_documents", {"query": "q" * (max_query + rng.randint(1, 50))}, "query"),
                ("search_documents", {"query": "a", "limit": max_limit + rng.randint(1, 50)}, "limit"),
                ("save_note", {"title": "t", "body": "b" * (max_body + rng.randint(1, 50)),
                               "idempotency_key": _key(rng)}, "body"),
                ("export_bundle", {"names": [workspace.names[0]] * (max_names + rng.randint(1, 5))}, "names")]
        for tool, args, field in over:
            result = await client.call_tool(tool, args)
            text = _text(result)
            assert result.is_error and field in text, (
                f"{tool} with `{field}` past its advertised limit should be rejected with a message naming "
                f"`{field}`; got is_error={result.is_error}: {text[:200]!r}")
        at_limit = [("search_documents", {"query": "a" * max_query, "limit": max_limit}),
                    ("save_note", {"title": "t", "body": "b" * max_body, "idempotency_key": _key(rng)}),
                    ("export_bundle", {"names": [rng.choice(workspace.names)] * max_names})]
        for tool, args in at_limit:
            await _ok(client, tool, args)
    assert len(desk.notes) == 1, "only the call exactly at the limit may save a note"


@check("tools declare truthful annotations (read-only, idempotent, destructive)", points=2,
       hint="ToolAnnotations tell a host what it may retry or must confirm. Remember the defaults when a hint is "
            "missing: not read-only, destructive, not idempotent. A writer that destroys nothing must say so.")
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
    if export is not None and export.read_only_hint:
        problems.append("export_bundle writes a file: it is not read-only")
    assert not problems, "; ".join(problems)
