"""Lesson 9's check plumbing: a random deployment, the capstone served by a real uvicorn, and clients.

Most checks deploy the student's `build_app(settings)` with a real uvicorn on a free loopback port
(`serve`) and talk to it as a client behind a proxy would (`desk_client`): a random public host name
in `Host`, a random bearer token, random replica names and request-state keys. The workspace
(`Desk`, the `desk` fixture) holds random documents and, beside it, a private folder whose name
shares the workspace's prefix; a secret word lives only there, and no answer may ever contain it.
Processes that run student code start where student code runs (`spawn`, through
`target.command`), with their stderr in a nameless file (`kit.processes.log_file`).
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import sqlite3  # noqa: F401 - preloaded for the desk (see below)
import string
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio
import anyio.from_thread  # noqa: F401 - preloaded for the desk (see below)
import httpx2
import jwt  # noqa: F401 - preloaded for the desk
import opentelemetry.sdk.trace.export.in_memory_span_exporter  # noqa: F401 - preloaded for the span checks
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CreateMessageResult, TextContent

from checker.checks.kit.eras import MODERN
from checker.checks.kit.processes import log_text
from checker.checks.kit.text import text_of, word
from checker.target import Target, leaf_exception

# Every check imports the student's desk in its own fork, and with it the libraries it uses: jwt
# (lesson 5's tokens), sqlite3 (lesson 1's index), anyio's thread portal (lesson 3's indexer),
# and, for the span checks, the OpenTelemetry SDK. The worker, which never imports student code,
# loads those libraries once before it forks, instead of every fork paying ~0.02 s of CPU for them.

NOTES = "desk://notes"
FALLBACK_MODEL = "research-desk/extractive-fallback"
EXPECTED_TOOLS = {
    "desk_info", "list_documents",                                        # lesson 1
    "summarise", "summarise_document",                                    # lesson 2
    "index_documents",                                                    # lesson 3
    "list_files", "read_file", "search_files",                            # lesson 4
    "replica_info", "file_note",                                          # lesson 6
    "search_documents", "read_document", "save_note", "delete_note", "export_bundle",  # lesson 7
}
WORDS = ["harbour", "lantern", "meadow", "quarry", "signal", "archive", "compass", "ledger", "orchard", "glacier",
         "beacon", "thread", "river", "stone", "falcon", "copper", "willow", "summit", "ember", "cinder"]


def sentence() -> str:
    """A sentence of six different words from WORDS."""
    words = random.sample(WORDS, 6)
    return " ".join(words).capitalize() + "."


def env_name(name: str) -> str:
    """The variable that configures the setting `name`."""
    return "RESEARCH_DESK_" + name.upper()


# --- the workspace and the deployment -----------------------------------------------------------


@dataclass
class Desk:
    """One random deployment: a workspace, a private sibling folder, and the production settings."""

    root: Path                         # the workspace (first and only root)
    private: Path                      # a sibling whose name starts with the workspace's name
    secret: str                        # a word that exists only in the private folder
    texts: dict[str, str]              # document name -> text
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    host: str = field(default_factory=lambda: f"desk-{secrets.token_hex(3)}.example")
    replica: str = field(default_factory=lambda: random.choice(string.ascii_lowercase) + secrets.token_hex(2))
    key: str = field(default_factory=lambda: secrets.token_hex(32))

    @property
    def names(self) -> list[str]:
        return sorted(self.texts)

    @property
    def secret_file(self) -> Path:
        return self.private / "secret.md"

    def env(self, **extra: str) -> dict[str, str]:
        """The RESEARCH_DESK_* variables of this deployment."""
        base = {"RESEARCH_DESK_ROOTS": str(self.root), "RESEARCH_DESK_TOKEN": self.token,
                "RESEARCH_DESK_PUBLIC_URL": f"https://{self.host}/mcp", "RESEARCH_DESK_REPLICA": self.replica,
                "RESEARCH_DESK_STATE_KEYS": self.key}
        base.update(extra)
        return base


@pytest.fixture(name="desk")
def desk_fixture(tmp_path: Path) -> Desk:
    """`desk`: a random deployment in `tmp_path` (a checks module imports it to take `desk` by name)."""
    stem = f"ws-{word(low=5, high=5)}"
    root = tmp_path / stem
    private = tmp_path / f"{stem}-private"        # shares the prefix: a string comparison would let it in
    private.mkdir(parents=True)
    secret = f"zq{word(low=10, high=10)}"
    (private / "secret.md").write_text(f"# Private {secret}\n\nThe secret is {secret}.\n", encoding="utf-8")
    texts: dict[str, str] = {}
    for index in range(random.randint(3, 6)):
        name = f"{'notes/' if index % 3 == 2 else ''}{word()}-{index}.md"
        text = f"# {word().title()} {index}\n\n" + " ".join(sentence() for _ in range(random.randint(2, 5))) + "\n"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
        texts[name] = text
    return Desk(root=root, private=private, secret=secret, texts=texts)


def desk_settings(target: Target, desk: Desk, **overrides: Any) -> Any:
    """The student's Settings for this deployment, built directly (so only lesson 9's wiring is judged)."""
    settings_class = target.attr("server", "Settings")
    values: dict[str, Any] = dict(roots=(desk.root,), token=desk.token, public_url=f"https://{desk.host}/mcp",
                                  replica=desk.replica, state_keys=(desk.key,))
    values.update(overrides)
    try:
        return settings_class(**values)
    except TypeError as exc:
        pytest.fail(f"Settings(...) does not take the documented fields: {exc}")


@asynccontextmanager
async def serve(target: Target, settings: Any) -> AsyncIterator[str]:
    """build_app(settings) under a real uvicorn on 127.0.0.1; yields the MCP endpoint URL."""
    build_app = target.attr("server", "build_app")
    app = build_app(settings)
    async with target.http(app) as url:
        yield url


@asynccontextmanager
async def desk_client(url: str, desk: Desk, mode: str = "auto", *, token: str | None = None,
                 on_response: Any = None, **kwargs: Any) -> AsyncIterator[Client]:
    """A real MCP client behind the 'proxy': the public Host and the bearer token on every request."""
    headers = {"Host": desk.host, "Authorization": f"Bearer {token or desk.token}"}
    hooks = {"response": [on_response]} if on_response else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(15), event_hooks=hooks) as http, \
            Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as connected:
        yield connected


@contextlib.contextmanager
def own_errors() -> Iterator[None]:
    """Re-raise the check's own failure from inside the task groups a client runs in."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise leaf_exception(group) from None


async def call_ok(client: Client, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
    """Call a tool that must succeed; fail with what the server said otherwise."""
    try:
        result = await client.call_tool(name, arguments, **kwargs)
    except MCPError as exc:
        pytest.fail(f"{name} failed with a protocol error {exc.code}: {exc.message}")
    assert not result.is_error, f"{name}({json.dumps(arguments)[:80]}) returned an error: {text_of(result)[:200]}"
    return result


class Model:
    """A client-side 'model' that answers every sampling request with `marker`, recording the prompts."""

    def __init__(self, marker: str, name: str) -> None:
        self.marker, self.name = marker, name
        self.prompts: list[str] = []

    async def __call__(self, context: Any, params: Any) -> CreateMessageResult:
        self.prompts.append(" ".join(getattr(m.content, "text", "") for m in params.messages))
        return CreateMessageResult(role="assistant", model=self.name,
                                   content=TextContent(type="text", text=self.marker))


async def echo_model(context: Any, params: Any) -> CreateMessageResult:
    """A client-side 'model' whose summary repeats what it was sent (so whatever reaches it shows)."""
    text = " ".join(getattr(m.content, "text", "") for m in params.messages)
    return CreateMessageResult(role="assistant", model="echo", content=TextContent(type="text", text=text))


# --- raw requests ---------------------------------------------------------------------------------


def modern_request(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC body of a 2026-07-28 tools/call."""
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": {}}}}


def modern_call(desk: Desk, port: int, name: str, arguments: dict[str, Any], **headers: str) -> bytes:
    """One raw 2026-07-28 tools/call request, as bytes for a socket: what a modern client sends."""
    body = json.dumps(modern_request(name, arguments)).encode()
    head = {"Host": desk.host, "Authorization": f"Bearer {desk.token}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call", "Mcp-Name": name, "Content-Length": str(len(body)), **headers}
    return ("POST /mcp HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body


def modern_discover() -> dict[str, Any]:
    """The JSON-RPC body of a 2026-07-28 server/discover."""
    return {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}


DISCOVER_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                    "MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}


def exports(desk: Desk) -> list[str]:
    """What the workspace's .exports folder holds now."""
    folder = desk.root / ".exports"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def until(condition: Callable[[], bool], seconds: float) -> bool:
    """Wait up to `seconds` for `condition()`; what it says in the end."""
    with anyio.move_on_after(seconds):
        while not condition():
            await anyio.sleep(0.03)
    return bool(condition())


# --- processes that run student code ----------------------------------------------------------------


def last_line(log: TextIO) -> str:
    """The last non-empty line a process wrote to its log (usually the error that ended it)."""
    try:
        lines = [line.strip() for line in log_text(log).splitlines() if line.strip()]
    except (OSError, ValueError):
        return "(no log)"
    return lines[-1][:300] if lines else "(empty)"


def spawn(target: Target, args: list[str], env: dict[str, str], cwd: Path, log: TextIO) -> subprocess.Popen[bytes]:
    """`python ARGS` from the graded edition, run where student code runs, leading its own process group."""
    return subprocess.Popen(target.command([sys.executable, *args]), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=log, start_new_session=True)
