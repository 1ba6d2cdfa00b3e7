"""The reference capstone run as deploy/CAPSTONE.md says, probed as an attacker and an impatient client would.

Regression tests for issue 15: each reproduces a broken promise of the lessons against the
solutions (the servers are the documented `uvicorn --factory research_desk.server:build_app`
processes, driven over real HTTP), so the fix cannot quietly come undone:

* a client that hangs up or times out cancels its call, in every mode the capstone ships;
* writes stay inside the workspace: no write through a link, no silent replacement;
* with no token the desk answers only this machine, however uvicorn was told to bind;
* search results never show server paths; /health obeys the Host allowlist; browsers get CORS
  for the allowed origins; no made-up authorization server; no capabilities the desk never uses;
* notes and idempotency receipts are bounded; no file is touched on the event loop;
* every request passes lesson 7's RequestGuard: audited, and limited per client when configured.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import REQUEST_TIMEOUT, ElicitResult, Implementation

from checker import verify
from tests.conftest import COURSE

pytestmark = pytest.mark.full  # slow: the full suite only (tests/conftest.py)

MODERN = "2026-07-28"
PUBLIC_HOST = "desk.example.com"
DOCS = {"alpha.md": "# Alpha\n\nThe fox crossed the river at dawn.\n",
        "beta.txt": "Beta ledger\n\nOwls watched the orchard.\n",
        "notes/gamma.md": "# Gamma\n\nA lantern by the harbour signals the boats home.\n"}
VICTIM = "# Victim\n\nA file outside every root. Nobody may overwrite it.\n"


@dataclass
class Desk:
    process: subprocess.Popen[bytes]
    port: int
    root: Path
    outside: Path
    token: str | None
    host: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def headers(self, **extra: str) -> dict[str, str]:
        out = {"Host": self.host}
        if self.token:
            out["Authorization"] = f"Bearer {self.token}"
        return out | extra


def _workspace(folder: Path) -> tuple[Path, Path]:
    root, outside = folder / "workspace", folder / "outside"
    for name, text in DOCS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    outside.mkdir()
    (outside / "victim.md").write_text(VICTIM, encoding="utf-8")
    return root, outside


@contextlib.contextmanager
def deployed(folder: Path, *, token: bool = True, bind: str = "127.0.0.1", **settings: str) -> Iterator[Desk]:
    """The documented deployment command, one process on a free port; stopped on the way out."""
    root, outside = _workspace(folder)
    secret = secrets.token_urlsafe(24) if token else None
    env = {"RESEARCH_DESK_ROOTS": str(root), "RESEARCH_DESK_REPLICA": "t1", "RESEARCH_DESK_LOG_LEVEL": "WARNING"}
    if secret:
        env |= {"RESEARCH_DESK_TOKEN": secret, "RESEARCH_DESK_PUBLIC_URL": f"https://{PUBLIC_HOST}/mcp"}
    env |= settings
    port = verify.free_port()
    log = folder / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "research_desk.server:build_app", "--host", bind,
             "--port", str(port), "--no-access-log", "--log-level", "warning"],
            env=verify.python_env(COURSE.solutions, env), cwd=folder, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True)
    desk = Desk(process, port, root, outside, secret, PUBLIC_HOST if secret else f"127.0.0.1:{port}", log)
    try:
        problem = verify.wait_healthy(verify.HttpServer("t1", port, process, log, secret))
        assert not problem, problem
        yield desk
    finally:
        verify.stop_process(process)


@asynccontextmanager
async def client(desk: Desk, mode: str = "auto", **kwargs: Any) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=desk.headers(), timeout=30) as http:
        async with Client(streamable_http_client(desk.url, http_client=http), mode=mode, **kwargs) as mcp:
            yield mcp


def _meta() -> dict[str, Any]:
    return {"io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "issue-15", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}


def _modern_request(desk: Desk, method: str, params: dict[str, Any], name: str | None = None,
                    **headers: str) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": _meta()}}).encode()
    head = desk.headers(**{"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                           "MCP-Protocol-Version": MODERN, "Mcp-Method": method, **headers})
    if name:
        head["Mcp-Name"] = name
    return head, body


def _discover(desk: Desk, base: str | None = None, **headers: str) -> httpx2.Response:
    head, body = _modern_request(desk, "server/discover", {}, **headers)
    return httpx2.post(base or desk.url, content=body, headers=head, timeout=10)


def _exports(desk: Desk) -> list[str]:
    folder = desk.root / ".exports"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _text(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content or [])


async def _accept_filing(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"file_it": True})


LONG_EXPORT = {"names": ["alpha.md"] * 100}   # 100 steps of 50 ms: five seconds of work


def _wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _assert_export_stopped(desk: Desk, how: str) -> None:
    """After the caller gave up: the unfinished bundle must vanish at once, and no bundle may appear."""
    gone = _wait_for(lambda: not _exports(desk), 2.0)
    assert gone, (f"{how}, yet two seconds later the export is still writing {_exports(desk)} (it would finish "
                  f"a bundle nobody waits for): the handler was not cancelled")


# --- cancellation, in every mode the capstone ships ---------------------------------------------------


@pytest.mark.parametrize("stream_all", ["0", "1"], ids=["json-app", "stream-all"])
def test_a_modern_client_that_hangs_up_cancels_its_call(tmp_path: Path, stream_all: str) -> None:
    with deployed(tmp_path, RESEARCH_DESK_STREAM_ALL=stream_all) as desk:
        head, body = _modern_request(desk, "tools/call", {"name": "export_bundle", "arguments": LONG_EXPORT},
                                     "export_bundle")
        request = (f"POST /mcp HTTP/1.1\r\nContent-Length: {len(body)}\r\n"
                   + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body
        with socket.create_connection(("127.0.0.1", desk.port)) as sock:
            sock.sendall(request)
            assert _wait_for(lambda: bool(_exports(desk)), 5), "the export never started writing"
        _assert_export_stopped(desk, "the client closed its connection")


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_a_client_that_times_out_cancels_its_call(tmp_path: Path, mode: str) -> None:
    async def call(desk: Desk) -> None:
        async with client(desk, mode) as mcp:
            with pytest.raises(MCPError) as timed_out:
                await mcp.call_tool("export_bundle", LONG_EXPORT, read_timeout_seconds=1)
            assert timed_out.value.code == REQUEST_TIMEOUT

    with deployed(tmp_path) as desk:
        anyio.run(call, desk)
        _assert_export_stopped(desk, f"a {mode} client timed out (-32001)")


# --- writes stay inside the workspace -----------------------------------------------------------------


def _file_note(desk: Desk, title: str) -> Any:
    async def call() -> Any:
        async with client(desk, elicitation_callback=_accept_filing) as mcp:
            return await mcp.call_tool("file_note", {"title": title, "text": "owned"})

    return anyio.run(call)


def test_file_note_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    with deployed(tmp_path) as desk:
        (desk.root / "notes" / "pwn.md").symlink_to(desk.outside / "victim.md")
        result = _file_note(desk, "pwn")
        assert (desk.outside / "victim.md").read_text() == VICTIM, "file_note wrote through a link, out of the roots"
        if not result.is_error:
            filed = desk.root / result.structured_content["name"]
            assert not filed.is_symlink() and filed.read_text().startswith("# pwn"), result.structured_content
        (desk.root / "notes").rename(desk.root / "notes-moved")
        (desk.root / "notes").symlink_to(desk.outside)
        result = _file_note(desk, "folder")
        assert sorted(p.name for p in desk.outside.iterdir()) == ["victim.md"], (
            f"file_note wrote into a linked notes/ folder outside the roots: {sorted(os.listdir(desk.outside))}")
        assert result.is_error, f"a note that cannot be filed inside the workspace must say so: {_text(result)}"


def test_file_note_never_replaces_an_existing_document(tmp_path: Path) -> None:
    with deployed(tmp_path) as desk:
        result = _file_note(desk, "Gamma")
        assert (desk.root / "notes" / "gamma.md").read_text() == DOCS["notes/gamma.md"], (
            "file_note(title='Gamma') replaced the document notes/gamma.md")
        receipt = result.structured_content or {}
        assert not result.is_error and receipt["name"] != "notes/gamma.md", receipt
        assert "notes/gamma.md" in (receipt.get("notice") or ""), f"the receipt must say what happened: {receipt}"
        assert (desk.root / receipt["name"]).read_text().startswith("# Gamma")


def test_export_never_writes_through_a_linked_exports_folder(tmp_path: Path) -> None:
    async def export(desk: Desk) -> Any:
        async with client(desk) as mcp:
            return await mcp.call_tool("export_bundle", {"names": ["alpha.md"]})

    with deployed(tmp_path) as desk:
        (desk.root / ".exports").symlink_to(desk.outside)
        result = anyio.run(export, desk)
        assert sorted(os.listdir(desk.outside)) == ["victim.md"], "export_bundle wrote through a linked .exports"
        assert result.is_error and "incident" not in _text(result), (
            f"the refusal should be a tool error saying why: {_text(result)}")


# --- no token: this machine only ------------------------------------------------------------------------


def _non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (the source address towards a documentation IP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))   # UDP: no packet is sent
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_without_a_token_only_this_machine_is_served(tmp_path: Path) -> None:
    with deployed(tmp_path, token=False, bind="0.0.0.0") as desk:
        local = _discover(desk)
        assert local.status_code == 200, f"a local client without a token should be served: {local.status_code}"
        forwarded = _discover(desk, **{"X-Forwarded-For": "203.0.113.9"})
        assert forwarded.status_code == 403, (
            f"a request a local proxy forwarded from 203.0.113.9 was answered {forwarded.status_code}: with no "
            f"token the desk must serve this machine only")
        address = _non_loopback_address()
        if address is not None:
            remote = _discover(desk, base=f"http://{address}:{desk.port}/mcp", Host="127.0.0.1")
            assert remote.status_code == 403, (
                f"bound to 0.0.0.0 without a token, a request to {address} claiming Host 127.0.0.1 got "
                f"{remote.status_code}: the network can read the workspace")


# --- the smaller promises -----------------------------------------------------------------------------------


def test_search_results_show_no_server_paths(tmp_path: Path) -> None:
    async def search(desk: Desk) -> tuple[list[dict[str, Any]], str]:
        async with client(desk) as mcp:
            hits = (await mcp.call_tool("search_files", {"query": "lantern"})).structured_content["result"]
            text = _text(await mcp.call_tool("read_file", {"path": hits[0]["path"]}))
            return hits, text

    with deployed(tmp_path) as desk:
        hits, text = anyio.run(search, desk)
    assert [h["path"] for h in hits] == ["notes/gamma.md"], f"search_files named {hits}: never the server's path"
    assert text == DOCS["notes/gamma.md"], "a hit's path must be one read_file takes back"


def test_health_obeys_the_host_allowlist(tmp_path: Path) -> None:
    with deployed(tmp_path) as desk:
        base = f"http://127.0.0.1:{desk.port}/health"
        assert httpx2.get(base, headers={"Host": PUBLIC_HOST}).status_code == 200
        evil = httpx2.get(base, headers={"Host": "evil.example"})
    assert evil.status_code == 421, f"/health answered a foreign Host with {evil.status_code}, not 421"


def test_browsers_of_allowed_origins_get_cors(tmp_path: Path) -> None:
    origin = "https://app.example.com"
    wanted = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name"
    with deployed(tmp_path, RESEARCH_DESK_ALLOWED_ORIGINS=origin) as desk:
        preflight = httpx2.options(desk.url, headers={"Host": PUBLIC_HOST, "Origin": origin,
                                                      "Access-Control-Request-Method": "POST",
                                                      "Access-Control-Request-Headers": wanted})
        foreign = httpx2.options(desk.url, headers={"Host": PUBLIC_HOST, "Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
        answer = _discover(desk, Origin=origin)
    assert preflight.status_code in (200, 204), f"the preflight of an allowed origin got {preflight.status_code}"
    assert preflight.headers.get("access-control-allow-origin") == origin
    allowed = preflight.headers.get("access-control-allow-headers", "").lower()
    assert all(h.strip() in allowed for h in wanted.split(",")), allowed
    assert "access-control-allow-origin" not in foreign.headers, "a foreign origin was allowed by CORS"
    assert answer.status_code == 200 and answer.headers.get("access-control-allow-origin") == origin
    exposed = answer.headers.get("access-control-expose-headers", "").lower()
    assert "mcp-session-id" in exposed and "www-authenticate" in exposed, exposed


def test_no_made_up_authorization_server(tmp_path: Path) -> None:
    metadata = "/.well-known/oauth-protected-resource/mcp"
    with deployed(tmp_path) as desk:
        served = httpx2.get(f"http://127.0.0.1:{desk.port}{metadata}", headers={"Host": PUBLIC_HOST})
        challenge = _discover(desk, Authorization="Bearer wrong").headers.get("www-authenticate", "")
    assert served.status_code == 404, (
        f"with a static token and no issuer the desk published {served.text[:200]}: it names an authorization "
        f"server that does not exist")
    assert challenge.startswith("Bearer") and "resource_metadata" not in challenge, challenge
    with deployed(tmp_path / "issuer", RESEARCH_DESK_ISSUER_URL="https://auth.example.com") as desk:
        served = httpx2.get(f"http://127.0.0.1:{desk.port}{metadata}", headers={"Host": PUBLIC_HOST})
    assert served.status_code == 200, served.status_code
    assert [s.rstrip("/") for s in served.json()["authorization_servers"]] == ["https://auth.example.com"]


def test_capabilities_advertise_only_what_the_desk_sends(tmp_path: Path) -> None:
    with deployed(tmp_path) as desk:
        answer = _discover(desk).json()["result"]["capabilities"]
    assert not answer.get("tools", {}).get("listChanged"), answer
    assert not answer.get("prompts", {}).get("listChanged"), answer
    assert not answer.get("resources", {}).get("listChanged"), answer
    assert answer.get("resources", {}).get("subscribe") is True, "desk://notes updates are really sent"


FROZEN_AFTER_BUILD = """
import gc, json, os
from research_desk.server import build_app
if os.environ.get("BUILD_FROM") == "mapping":
    build_app({key: value for key, value in os.environ.items() if key.startswith("RESEARCH_DESK_")})
else:
    build_app()
print(json.dumps({"frozen": gc.get_freeze_count(), "collecting": gc.isenabled()}))
"""


@pytest.mark.parametrize("build_from", ["environment", "mapping"])
def test_only_the_serving_process_freezes_its_startup_heap(tmp_path: Path, build_from: str) -> None:
    """The uvicorn factory's process exists to serve: what it built at start leaves the collector's
    full passes (each one stalled every request ~35 ms under load). Built with settings in someone
    else's process (a test, a notebook, a check), the app leaves that process's heap alone; and
    the collector keeps running either way, for everything made after the start."""
    root, _ = _workspace(tmp_path)
    env = {"RESEARCH_DESK_ROOTS": str(root), "RESEARCH_DESK_LOG_LEVEL": "WARNING", "BUILD_FROM": build_from}
    done = subprocess.run([sys.executable, "-c", FROZEN_AFTER_BUILD], env=verify.python_env(COURSE.solutions, env),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["collecting"] is True, seen
    if build_from == "environment":
        assert seen["frozen"] > 10_000, seen
    else:
        assert seen["frozen"] == 0, seen


# --- lesson 7's middleware around every request -------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_every_request_is_audited_and_each_client_rate_limited(tmp_path: Path, mode: str) -> None:
    limit = 4
    with deployed(tmp_path, RESEARCH_DESK_RATE_LIMIT=str(limit), RESEARCH_DESK_LOG_LEVEL="INFO") as desk:
        async def run() -> MCPError:
            eager, patient = Implementation(name="eager", version="1"), Implementation(name="patient", version="1")
            # cache=None: the desk marks tools/list cacheable (lesson 6's hints), and a caching client
            # would answer the repeated listings itself, so they would never reach the rate limit.
            async with client(desk, mode, client_info=eager, cache=None) as first, \
                    client(desk, mode, client_info=patient, cache=None) as second:
                for _ in range(limit):
                    await first.list_tools()
                with pytest.raises(MCPError) as refused:
                    await first.call_tool("read_document", {"name": "alpha.md"})
                served = await second.call_tool("read_document", {"name": "alpha.md"})
                assert not served.is_error, _text(served)
            return refused.value
        refusal = anyio.run(run)
    assert refusal.code == -32010 and 0 < refusal.error.data["retryAfter"] <= 60, (refusal.code, refusal.error)
    records = [json.loads(line.split(" request ", 1)[1]) for line in desk.log.read_text().splitlines()
               if "research_desk.middleware" in line and " request {" in line]
    calls = [(r["client"].rsplit("/", 1)[1], r["tool"], r["outcome"], r["code"]) for r in records
             if r["method"] == "tools/call"]
    assert calls == [("eager", "read_document", "error", -32010), ("patient", "read_document", "ok", None)], calls
    listed = [r for r in records if r["method"] == "tools/list" and r["client"].endswith("/eager")]
    assert len(listed) == limit and all(r["outcome"] == "ok" for r in listed), listed


# --- in-process: memory bounds, and the event loop never touches a file ------------------------------------


@pytest.fixture
def desk_package(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(COURSE.solutions))
    for name in [n for n in sys.modules if n.startswith(COURSE.package)]:
        monkeypatch.delitem(sys.modules, name)
    import research_desk.server as server

    return server


def test_notes_and_receipts_are_bounded(desk_package: Any, tmp_path: Path) -> None:
    errors = sys.modules["research_desk.errors"]
    from mcp.server.mcpserver.exceptions import ToolError

    async def fill() -> str:
        desk = errors.ErrorDesk(tmp_path)
        for n in range(20_000):
            try:
                await desk.save_note(f"note {n}", "body", f"key-{n:08d}")
            except ToolError as exc:
                assert len(desk.key_locks) == 0, "the per-key locks pile up"
                return str(exc)
        return ""

    refusal = anyio.run(fill)
    assert refusal and "delete_note" in refusal, "20,000 notes were kept: memory grows without end"

    async def expire() -> tuple[bool, int]:
        desk = errors.ErrorDesk(tmp_path, receipt_seconds=0.2, max_receipts=5)
        first = await desk.save_note("a", "b", "key-expiring")
        await anyio.sleep(0.3)
        again = await desk.save_note("a", "b", "key-expiring")
        for n in range(20):
            await desk.save_note("a", "b", f"key-{n:08d}")
        return first.note_id != again.note_id, len(desk.receipts)

    expired, kept = anyio.run(expire)
    assert expired, "an idempotency receipt outlived receipt_seconds"
    assert kept <= 5, f"{kept} receipts kept with max_receipts=5"


def test_no_file_is_touched_on_the_event_loop(desk_package: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = _workspace(tmp_path)
    server = desk_package.create_server(desk_package.Settings(roots=(root,)), http=False)
    loop_thread = threading.current_thread()
    touched: list[str] = []

    def watch(name: str, real: Any) -> Any:
        def watched(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is loop_thread and recording:
                touched.append(f"{name}({args[0]!r})")
            return real(*args, **kwargs)
        return watched

    recording = False
    for module, name in ((io, "open"), (os, "open"), (os, "scandir"), (os, "listdir")):
        monkeypatch.setattr(module, name, watch(name, getattr(module, name)))
    calls = [("read_document", {"name": "alpha.md"}), ("read_file", {"path": "beta.txt"}), ("list_files", {}),
             ("search_files", {"query": "fox"}), ("search_documents", {"query": "fox"}),
             ("summarise_document", {"name": "alpha.md"}), ("index_documents", {}),
             ("export_bundle", {"names": ["alpha.md", "beta.txt"]}), ("file_note", {"title": "t", "text": "x"}),
             ("list_documents", {}), ("desk_info", {})]
    report: dict[str, list[str]] = {}

    async def run() -> None:
        nonlocal recording
        async with Client(server, elicitation_callback=_accept_filing) as mcp:
            for tool, arguments in calls:
                touched.clear()
                recording = True
                result = await mcp.call_tool(tool, arguments)
                recording = False
                assert not result.is_error, f"{tool}: {_text(result)}"
                report[tool] = list(touched)

    anyio.run(run)
    blocking = {tool: found[:2] for tool, found in report.items() if found}
    assert not blocking, f"these tools touched files on the event-loop thread (every client waits): {blocking}"


def test_document_path_agrees_with_a_full_scan(desk_package: Any, tmp_path: Path) -> None:
    """`document_path` (one name, a few system calls) must answer exactly as a lookup in `scan_documents`."""
    import random

    documents = sys.modules["research_desk.documents"]
    rng = random.Random(15)
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".hidden").mkdir()
    outside.mkdir()
    for name in ("x.md", "a/y.txt", "a/b/z.MD", ".hidden/h.md", "a/.dot.md", "a/b/notes.pdf", "a/b/deep.md"):
        (root / name).write_text(name)
    (outside / "o.md").write_text("outside")
    (root / "in-link.md").symlink_to(root / "a" / "y.txt")
    (root / "out-link.md").symlink_to(outside / "o.md")
    (root / "dir-link").symlink_to(root / "a", target_is_directory=True)
    (root / "dangling.md").symlink_to(tmp_path / "missing.md")
    (root / "folder.md").mkdir()
    scanned = {p.relative_to(root).as_posix() for p in documents.scan_documents(root)}
    assert scanned == {"x.md", "a/y.txt", "a/b/z.MD", "a/b/deep.md", "in-link.md"}, scanned
    names = [*scanned, "missing.md", "out-link.md", "dir-link/y.txt", "dangling.md", "folder.md", ".hidden/h.md",
             "a/.dot.md", "a/b/notes.pdf", "a/../x.md", "./x.md", "a//y.txt", "/x.md", "", "x.md/", "a\x00.md",
             "../outside/o.md", "a/b/../../x.md"]
    names += ["/".join(rng.choice(["a", "b", "..", ".", "x.md", "z.MD", "dir-link", "y.txt"])
                       for _ in range(rng.randint(1, 4))) for _ in range(200)]
    for name in names:
        found = documents.document_path(root, name)
        assert (found is not None) == (name in scanned), f"document_path({name!r}) = {found}, scan says {name in scanned}"
        if found is not None:
            assert found == root / name


METRICS_FLOOD = """
import json
from prometheus_client import generate_latest
from research_desk.observability import MAX_SERIES, OTHER, DeskTelemetry

telemetry = DeskTelemetry()
for n in range(3 * MAX_SERIES):  # what a client calling made-up tools and methods would make
    telemetry.observe(f"made-up-tool-{n}", 0.01)
    telemetry.count(f"made/up-{n}", "error")
text = generate_latest(telemetry.registry).decode()
tools = {line.split('tool="')[1].split('"')[0] for line in text.splitlines() if 'tool="' in line}
methods = {line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line}
print(json.dumps({"limit": MAX_SERIES, "other": OTHER, "tools": sorted(tools), "methods": sorted(methods),
                  "lines": len(text.splitlines())}))
"""


def test_made_up_names_cannot_grow_the_metrics_without_end(tmp_path: Path) -> None:
    """Tool and method names label the metrics, and a client chooses them: three times the cap of
    made-up names leave /metrics at the cap plus one series of "other", not growing with each."""
    done = subprocess.run([sys.executable, "-c", METRICS_FLOOD], env=verify.python_env(COURSE.solutions, {}),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert len(seen["tools"]) == seen["limit"] + 1 and seen["other"] in seen["tools"], seen["tools"][-5:]
    assert len(seen["methods"]) == seen["limit"] + 1 and seen["other"] in seen["methods"], seen["methods"][-5:]
