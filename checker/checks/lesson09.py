"""Lesson 9 checks: the capstone server, wired, deployed and driven like production.

Most checks deploy the student's `build_app(settings)` with a real uvicorn on a free loopback
port and talk to it as a client behind a proxy would: a random public host name in `Host`, a
random bearer token, random replica names and request-state keys. The workspace holds random
documents and, beside it, a private folder whose name shares the workspace's prefix; a secret
word lives only there, and no answer may ever contain it. The stdio check runs the installed
`research-desk-server` command (lesson 8's build) as a real subprocess; the command-line check
runs `python -m research_desk.server` and the documented `uvicorn --factory` command. Those processes run student code, so they start where
student code runs (`target.command`); every process a check starts is stopped in `finally`.
Expected answers are computed here, never by the code under test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
import httpx2
import pytest
from jsonschema import Draft202012Validator
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    INVALID_PARAMS,
    CreateMessageResult,
    ElicitResult,
    InputRequiredResult,
    TextContent,
)

from checker.marks import check, installed_or_skip
from checker.target import Target, free_port, leaf_exception

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODES = {"auto": MODERN, "legacy": LEGACY}
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
WORDS = ("harbour lantern meadow quarry signal archive compass ledger orchard glacier beacon thread river "
         "stone falcon copper willow summit ember cinder").split()


def _word(k: int = 7) -> str:
    return "".join(random.choices(string.ascii_lowercase, k=k))


def _sentence() -> str:
    words = random.sample(WORDS, 6)
    return " ".join(words).capitalize() + "."


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


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    stem = f"ws-{_word(5)}"
    root = tmp_path / stem
    private = tmp_path / f"{stem}-private"        # shares the prefix: a string comparison would let it in
    private.mkdir(parents=True)
    secret = f"zq{_word(10)}"
    (private / "secret.md").write_text(f"# Private {secret}\n\nThe secret is {secret}.\n", encoding="utf-8")
    texts: dict[str, str] = {}
    for index in range(random.randint(3, 6)):
        name = f"{'notes/' if index % 3 == 2 else ''}{_word()}-{index}.md"
        text = f"# {_word().title()} {index}\n\n" + " ".join(_sentence() for _ in range(random.randint(2, 5))) + "\n"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
        texts[name] = text
    return Desk(root=root, private=private, secret=secret, texts=texts)


def _settings(target: Target, desk: Desk, **overrides: Any) -> Any:
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
async def _serve(target: Target, settings: Any) -> AsyncIterator[str]:
    """build_app(settings) under a real uvicorn on 127.0.0.1; yields the MCP endpoint URL."""
    build_app = target.attr("server", "build_app")
    app = build_app(settings)
    async with target.http(app) as url:
        yield url


@asynccontextmanager
async def _client(url: str, desk: Desk, mode: str = "auto", *, token: str | None = None,
                  on_response: Any = None, **kwargs: Any) -> AsyncIterator[Client]:
    """A real MCP client behind the 'proxy': the public Host and the bearer token on every request."""
    headers = {"Host": desk.host, "Authorization": f"Bearer {token or desk.token}"}
    hooks = {"response": [on_response]} if on_response else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(15), event_hooks=hooks) as http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode, **kwargs) as client:
            yield client


@contextlib.contextmanager
def _own_errors() -> Iterator[None]:
    """Re-raise the check's own failure from inside the task groups a client runs in."""
    try:
        yield
    except BaseExceptionGroup as group:
        raise leaf_exception(group) from None


def _text(result: Any) -> str:
    return "\n".join(getattr(block, "text", "") for block in (result.content or []))


async def _call(client: Client, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
    """Call a tool that must succeed; fail with what the server said otherwise."""
    try:
        result = await client.call_tool(name, arguments, **kwargs)
    except MCPError as exc:
        pytest.fail(f"{name} failed with a protocol error {exc.code}: {exc.message}")
    assert not result.is_error, f"{name}({json.dumps(arguments)[:80]}) returned an error: {_text(result)[:200]}"
    return result


def _model(marker: str, name: str) -> Any:
    """A client-side 'model' that answers every sampling request with `marker`, recording the prompts."""
    prompts: list[str] = []

    async def sample(context: Any, params: Any) -> CreateMessageResult:
        prompts.append(" ".join(getattr(m.content, "text", "") for m in params.messages))
        return CreateMessageResult(role="assistant", model=name, content=TextContent(type="text", text=marker))

    sample.prompts = prompts  # type: ignore[attr-defined]
    return sample


async def _echo_model(context: Any, params: Any) -> CreateMessageResult:
    """A client-side 'model' whose summary repeats what it was sent (so whatever reaches it shows)."""
    text = " ".join(getattr(m.content, "text", "") for m in params.messages)
    return CreateMessageResult(role="assistant", model="echo", content=TextContent(type="text", text=text))


async def _accept_filing(context: Any, params: Any) -> ElicitResult:
    return ElicitResult(action="accept", content={"file_it": True})


# --- configuration -------------------------------------------------------------------------------


@check("Settings.from_env reads every RESEARCH_DESK_* variable into a typed setting", points=2,
       hint="One field, one variable: RESEARCH_DESK_<FIELD>. Strip the text, then convert it to the field's type "
            "(numbers; booleans 1/true/yes/on and 0/false/no/off in any case; comma-separated tuples and "
            "os.pathsep-separated roots, skipping empty items). A blank variable keeps the default; RESEARCH_DESK_ROOT "
            "is the fallback when RESEARCH_DESK_ROOTS is blank; a value that does not convert is a SettingsError "
            "that names the variable.")
async def test_settings_from_environment(target: Target, tmp_path: Path) -> None:
    settings_class = target.attr("server", "Settings")
    first, second = tmp_path / f"a-{_word()}", tmp_path / f"b-{_word()}"
    first.mkdir()
    second.mkdir()
    port = random.randint(1025, 65000)
    hosts = (f"{_word()}.example", f"{_word()}.example")
    keys = (secrets.token_hex(32), secrets.token_hex(32))
    replica = random.choice(string.ascii_lowercase) + secrets.token_hex(2)
    timeout = round(random.uniform(0.2, 5.0), 2)
    words = random.randint(100, 5000)
    env = {
        "RESEARCH_DESK_ROOTS": os.pathsep.join([str(first), str(second)]),
        "RESEARCH_DESK_TRANSPORT": "http", "RESEARCH_DESK_PORT": str(port),
        "RESEARCH_DESK_ALLOWED_HOSTS": " , ".join(hosts), "RESEARCH_DESK_TOKEN": "t-" + secrets.token_hex(8),
        "RESEARCH_DESK_STATE_KEYS": ",".join(keys), "RESEARCH_DESK_REPLICA": replica,
        "RESEARCH_DESK_STATELESS": random.choice(["1", "yes", "true", "on"]),
        "RESEARCH_DESK_SEARCH_TIMEOUT": str(timeout), "RESEARCH_DESK_LARGE_DOCUMENT_WORDS": str(words),
        "RESEARCH_DESK_LOG_LEVEL": "ERROR", "RESEARCH_DESK_HOST": "127.0.0.1",
        "RESEARCH_DESK_REDIS_URL": "", "UNRELATED_VARIABLE": "x",
    }
    try:
        got = settings_class.from_env(env)
    except ValueError as exc:
        pytest.fail(f"Settings.from_env refused a valid environment: {exc}")
    expected = {"roots": (first, second), "transport": "http", "port": port, "allowed_hosts": hosts,
                "state_keys": keys, "replica": replica, "stateless": True, "search_timeout": timeout,
                "large_document_words": words, "log_level": "ERROR", "redis_url": ""}
    for name, want in expected.items():
        have = getattr(got, name, None)
        if name == "roots":
            have = tuple(Path(p) for p in have or ())
        assert have == want, (f"Settings.from_env: {name} is {have!r}, expected {want!r} from "
                              f"{_env_name(name)}={env.get(_env_name(name), '')!r}")
    defaults = settings_class()
    assert got.index_pace == defaults.index_pace, "an unset variable must keep the field's default"
    one = settings_class.from_env({"RESEARCH_DESK_ROOT": str(second)})
    assert tuple(Path(p) for p in one.roots) == (second,), (
        "with only RESEARCH_DESK_ROOT set (one folder, the lesson 1 name), roots should be that folder")
    for name, words, want in (("RESEARCH_DESK_STATELESS", ("1", "true", "yes", "on"), True),
                              ("RESEARCH_DESK_STATELESS", ("0", "false", "no", "off"), False)):
        for word in words:
            for text in (word, word.upper(), word.capitalize()):
                have = settings_class.from_env({"RESEARCH_DESK_ROOTS": str(first), name: text}).stateless
                assert have is want, f"Settings.from_env: {name}={text!r} gave stateless={have!r}, expected {want}"
    sep = os.pathsep
    edges = {"RESEARCH_DESK_ROOTS": f"{sep}{first}{sep}{sep}{second}{sep}", "RESEARCH_DESK_ROOT": str(tmp_path),
             "RESEARCH_DESK_PORT": f"  {port} ", "RESEARCH_DESK_ALLOWED_HOSTS": f",{hosts[0]},, {hosts[1]} , ,",
             "RESEARCH_DESK_SEARCH_TIMEOUT": "   ", "RESEARCH_DESK_LOG_LEVEL": "\t", "RESEARCH_DESK_REPLICA": "  ",
             "RESEARCH_DESK_TRANSPORT": " "}
    got = settings_class.from_env(edges)
    have = {"roots": tuple(Path(p) for p in got.roots), "port": got.port, "allowed_hosts": tuple(got.allowed_hosts),
            "search_timeout": got.search_timeout, "log_level": got.log_level, "replica": got.replica,
            "transport": got.transport}
    want = {"roots": (first, second), "port": port, "allowed_hosts": hosts, "search_timeout": defaults.search_timeout,
            "log_level": defaults.log_level, "replica": defaults.replica, "transport": defaults.transport}
    for name, value in want.items():
        assert have[name] == value, (
            f"Settings.from_env: {_env_name(name)}={edges[_env_name(name)]!r} gave {name}={have[name]!r}, expected "
            f"{value!r}: strip each value, skip empty list items (stray separators), let a blank variable keep the "
            f"default, and prefer RESEARCH_DESK_ROOTS to RESEARCH_DESK_ROOT")
    fallback = settings_class.from_env({"RESEARCH_DESK_ROOTS": "  ", "RESEARCH_DESK_ROOT": str(second)})
    assert tuple(Path(p) for p in fallback.roots) == (second,), (
        "with RESEARCH_DESK_ROOTS blank and RESEARCH_DESK_ROOT set, roots should be RESEARCH_DESK_ROOT's folder: a "
        "blank variable counts as unset")
    for variable, bad in (("RESEARCH_DESK_PORT", f"port-{_word(3)}"), ("RESEARCH_DESK_STATELESS", "maybe"),
                          ("RESEARCH_DESK_SEARCH_TIMEOUT", "soon")):
        try:
            settings_class.from_env({"RESEARCH_DESK_ROOTS": str(first), variable: bad})
        except ValueError as exc:
            assert variable in str(exc), f"the error for {variable}={bad!r} should name the variable; it said: {exc}"
        else:
            pytest.fail(f"Settings.from_env accepted {variable}={bad!r}; it should raise a SettingsError naming it")


def _env_name(name: str) -> str:
    return "RESEARCH_DESK_" + name.upper()


@check("settings that would expose the desk, or cannot work, refuse to start", points=2,
       hint="validate() is the gate between configuration and serving, and returns the settings it accepts. HTTP "
            "that others can reach (any host but a loopback name, or a public URL off loopback) needs a token unless "
            "allow_anonymous says a proxy authenticates. Ports run 1-65535; every root must be an existing folder; "
            "every state key and the replica name must pass lesson 6's rules; every error names its variable.")
async def test_unsafe_settings_refused(target: Target, desk: Desk) -> None:
    settings_class = target.attr("server", "Settings")
    base = {"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_TRANSPORT": "http"}

    def outcome(**env: str) -> str:
        try:
            settings_class.from_env({**base, **env})
        except ValueError as exc:
            return f"refused: {exc}"
        return "accepted"

    local = outcome()
    assert local == "accepted", f"plain local HTTP on 127.0.0.1 with no token should start (local development): {local}"
    for label, env in (("a public URL behind a proxy", {"RESEARCH_DESK_PUBLIC_URL": f"https://{desk.host}/mcp"}),
                       ("listening on every interface", {"RESEARCH_DESK_HOST": "0.0.0.0"})):
        verdict = outcome(**env)
        assert verdict.startswith("refused") and "RESEARCH_DESK_TOKEN" in verdict, (
            f"HTTP with {label} and no token was {verdict!r}: anyone who reaches it could read the workspace. "
            f"Refuse it, naming RESEARCH_DESK_TOKEN")
        with_token = outcome(**env, RESEARCH_DESK_TOKEN=desk.token)
        assert with_token == "accepted", f"with a token, {label} should start: {with_token}"
        anonymous = outcome(**env, RESEARCH_DESK_ALLOW_ANONYMOUS="1")
        assert anonymous == "accepted", f"RESEARCH_DESK_ALLOW_ANONYMOUS=1 should allow {label} without a token: {anonymous}"
    stdio = outcome(RESEARCH_DESK_TRANSPORT="stdio", RESEARCH_DESK_HOST="0.0.0.0")
    assert stdio == "accepted", f"stdio listens on no network, so it needs no token: {stdio}"
    for variable, bad in (("RESEARCH_DESK_STATE_KEYS", "short-" + _word(4)), ("RESEARCH_DESK_REPLICA", "Replica A"),
                          ("RESEARCH_DESK_TRANSPORT", "carrier-pigeon"), ("RESEARCH_DESK_ROOTS", str(desk.root / _word())),
                          ("RESEARCH_DESK_PORT", "70000"), ("RESEARCH_DESK_LOG_LEVEL", "LOUD")):
        verdict = outcome(**{variable: bad})
        assert verdict.startswith("refused") and variable in verdict, (
            f"{variable}={bad!r} was {verdict!r}: a setting that cannot work must stop the server at startup, "
            f"with a message naming {variable}")

    def checked(**values: Any) -> str:
        """Settings(**values).validate(): 'accepted' (it returned the settings) or 'refused: <message>'."""
        try:
            settings = settings_class(**{"roots": (desk.root,), **values})
        except TypeError as exc:
            pytest.fail(f"Settings(...) does not take the documented fields: {exc}")
        try:
            result = settings.validate()
        except ValueError as exc:
            return f"refused: {exc}"
        if result is None or getattr(result, "port", None) != settings.port:
            pytest.fail(f"Settings({values}).validate() returned {result!r}; it should return the settings themselves")
        return "accepted"

    document = desk.root / desk.names[0]
    alphabet = string.ascii_lowercase + string.digits
    good_replica = "r" + "".join(random.choices(alphabet, k=31))
    accepted = [({"port": 1}, "port 1 is the lowest TCP port"), ({"port": 65535}, "port 65535 is the highest"),
                ({"replica": good_replica}, "a replica name of 32 lowercase letters and digits is allowed"),
                ({"state_keys": (secrets.token_hex(32), secrets.token_urlsafe(33))}, "two keys of 32+ bytes rotate"),
                ({"transport": "http", "host": "localhost"}, "HTTP on loopback (by name) is local development"),
                ({"transport": "http", "host": "::1"}, "HTTP on loopback (IPv6) is local development"),
                ({"transport": "http", "public_url": "http://localhost:8000/mcp"},
                 "a public URL on loopback reaches this machine only")]
    for values, reason in accepted:
        verdict = checked(**values)
        assert verdict == "accepted", f"Settings({values}).validate() {verdict[:240]}; expected acceptance: {reason}"
    refused = [({"port": 0}, "RESEARCH_DESK_PORT", "port 0 cannot be listened on"),
               ({"roots": (document,)}, "RESEARCH_DESK_ROOTS", f"{document.name} is a file, not a folder"),
               ({"roots": (desk.root, desk.root / f"gone-{_word(4)}")}, "RESEARCH_DESK_ROOTS",
                "the second root does not exist: check every root"),
               ({"roots": ()}, "RESEARCH_DESK_ROOTS", "no roots leaves nothing to serve"),
               ({"replica": good_replica + "x"}, "RESEARCH_DESK_REPLICA", "a 33-character replica name is too long"),
               ({"state_keys": (secrets.token_hex(32), "short-" + _word(4))}, "RESEARCH_DESK_STATE_KEYS",
                "the second key is too short: every key must be usable"),
               ({"transport": "http", "host": f"192.168.{random.randint(0, 255)}.{random.randint(1, 254)}"},
                "RESEARCH_DESK_TOKEN", "HTTP on a private-network address without a token exposes the workspace")]
    for values, variable, reason in refused:
        verdict = checked(**values)
        assert verdict.startswith("refused") and variable in verdict, (
            f"Settings({values}).validate() was {verdict[:240]!r}; expected a SettingsError naming {variable}: {reason}")


@check("create_server wires every setting into the tools: roots, document limit, replica, search timeout, pace",
       points=2,
       hint="Each lesson's register(...) takes what Settings says: the document tools the workspace (the first "
            "root), the file tools every configured root, summarise_document large_document_words, index_documents "
            "index_pace and progress_interval (as report_every), lesson 6's tools the replica's effective name (Settings.replica_name: p<pid> when none is "
            "set), lesson 7's desk search_timeout. A setting nobody passes on is a setting that silently does nothing.")
async def test_settings_wired_into_tools(target: Target, desk: Desk, tmp_path: Path) -> None:
    limit = random.randint(25, 45)
    short, long = f"brief-{_word(5)}.md", f"lengthy-{_word(5)}.md"
    texts = {short: f"# Brief\n\n{' '.join(random.choices(WORDS, k=limit - 4))}.\n",
             long: f"# Lengthy\n\n{' '.join(random.choices(WORDS, k=limit + 10))}.\n"}
    for name, text in texts.items():
        (desk.root / name).write_text(text, encoding="utf-8")
    assert len(texts[short].split()) <= limit < len(texts[long].split())
    names = sorted([*desk.texts, *texts])
    second = tmp_path / f"second-{_word(5)}"
    second.mkdir()
    far_text = f"# Far\n\n{secrets.token_hex(8)}\n"
    (second / "far.md").write_text(far_text, encoding="utf-8")
    word = desk.texts[desk.names[0]].split()[-1].strip(".").lower()
    pace = 0.12
    server_module = target.module("server")
    got: dict[str, Any] = {}
    for label, settings in (("configured", dict(roots=(desk.root, second), large_document_words=limit, replica="",
                                                  search_timeout=0.0, index_pace=pace, progress_interval=3600.0)),
                            ("patient", dict(roots=(desk.root,), search_timeout=10.0))):
        try:
            server = server_module.create_server(server_module.Settings(**settings), http=False)
        except NotImplementedError:
            raise  # reported as 'not written yet', with where
        except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
            pytest.fail(f"create_server(Settings({settings}), http=False) raised {type(exc).__name__}: {str(exc)[:300]}")
        async with target.client(server) as client:
            seen: dict[str, Any] = {"search": await client.call_tool("search_documents", {"query": word})}
            if label == "configured":
                seen["listed"] = await client.call_tool("list_documents", {})
                seen["far"] = await client.call_tool("read_file", {"path": str(second / "far.md")})
                seen["short"] = await client.call_tool("summarise_document", {"name": short})
                seen["long"] = await client.call_tool("summarise_document", {"name": long})
                seen["replica"] = await client.call_tool("replica_info", {})
                steps: list[float] = []

                async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                    steps.append(progress)

                began = time.monotonic()
                seen["index"] = await client.call_tool("index_documents", {}, progress_callback=on_progress)
                seen["index took"] = time.monotonic() - began
                seen["index steps"] = steps
        got[label] = seen
    seen = got["configured"]
    listed = (seen["listed"].structured_content or {}).get("result") if not seen["listed"].is_error else None
    assert listed is not None and sorted(listed) == names, (
        f"with roots (workspace, {second.name}), list_documents gave {listed or _text(seen['listed'])[:160]!r}; "
        f"expected the first root's documents {names}: the workspace is the first root")
    assert not seen["far"].is_error and _text(seen["far"]) == far_text, (
        f"read_file of {second.name}/far.md, inside the second configured root, gave "
        f"{_text(seen['far'])[:160]!r}: the file tools must be given every configured root")
    summary = seen["short"].structured_content or {}
    assert not seen["short"].is_error and summary.get("model") == FALLBACK_MODEL, (
        f"summarise_document({short!r}), {len(texts[short].split())} words with large_document_words={limit}, gave "
        f"{_text(seen['short'])[:160]!r}; expected the desk's own summary (a client with no model)")
    assert seen["long"].is_error, (
        f"summarise_document({long!r}) is {len(texts[long].split())} words, above large_document_words={limit}, "
        f"and this client cannot be asked, yet it was summarised: pass the setting on to lesson 2's tools")
    replica = (seen["replica"].structured_content or {}).get("replica") if not seen["replica"].is_error else None
    assert isinstance(replica, str) and re.fullmatch(r"p\d+", replica), (
        f"with no replica configured, replica_info named the replica {replica!r}; expected the default p<pid> "
        f"(Settings.replica_name)")
    steps = len(names)
    assert not seen["index"].is_error and seen["index took"] >= steps * pace * 0.9, (
        f"index_documents over {steps} documents with index_pace={pace} took {seen['index took']:.2f} s, less than "
        f"{steps} x {pace} s: pass index_pace on to lesson 3's indexer")
    reported = [float(p) for p in seen["index steps"]]
    assert reported == [float(steps)], (
        f"with progress_interval=3600, indexing {steps} documents (in about {seen['index took']:.1f} s) reported "
        f"progress {reported}; expected only the last document ({steps}.0): pass progress_interval on to lesson 3's "
        f"register as report_every")
    quick = got["configured"]["search"].structured_content or {}
    patient = got["patient"]["search"].structured_content or {}
    assert quick.get("degraded") is True and patient.get("source") == "search-service", (
        f"with search_timeout=0 the search service cannot answer in time, so search_documents should degrade "
        f"(got {quick}); with search_timeout=10 it should answer from the service (got {patient}): give lesson 7's "
        f"desk the configured search_timeout")


# --- over HTTP ------------------------------------------------------------------------------------


@check("over HTTP, both eras see every lesson's tools with descriptions and schemas", points=2,
       hint="register_tools adds each lesson's tools through that lesson's register(...). Two lessons built a "
            "read_document: keep lesson 7's (validated, sanitised) and remove the other before adding it, since "
            "the SDK keeps the first tool registered under a name.")
async def test_http_tools_listed(target: Target, desk: Desk) -> None:
    seen: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            for mode in MODES:
                async with _client(url, desk, mode) as client:
                    tools = (await client.list_tools()).tools
                    resources = [str(r.uri) for r in (await client.list_resources()).resources]
                    seen[mode] = (client.protocol_version, {t.name: t for t in tools}, resources)
    for mode, (version, tools, resources) in seen.items():
        assert version == MODES[mode], f"a {mode} client negotiated {version}, expected {MODES[mode]}"
        missing = sorted(EXPECTED_TOOLS - set(tools))
        assert not missing, f"{version}: the capstone does not list {missing}; every lesson's tools belong in it"
        for name in EXPECTED_TOOLS:
            tool = tools[name]
            assert (tool.description or "").strip(), f"{name} has no description: a model picks tools by reading them"
            assert tool.input_schema.get("type") == "object", f"{name}'s input schema is not a JSON object schema"
        too_long = {"name": "x" * 201}   # lesson 7 limits a document name to 200 characters; lesson 1 does not
        assert not Draft202012Validator(tools["read_document"].input_schema).is_valid(too_long), (
            "read_document is lesson 1's (its schema lets a 201-character name through): lesson 7's validated, "
            "sanitised read_document must be the one served")
        assert NOTES in resources, f"{version}: the {NOTES} resource (lesson 6) is not listed"


@check("over HTTP, the bearer token and the Host/Origin allowlists guard MCP, bodies are capped, /health stays open",
       points=2,
       hint="Authentication is fixed when the MCPServer is built: pass lesson 5's auth_options when a token is "
            "configured. The Host allowlist is settings.hosts (the public URL's host plus loopback names unless "
            "allowed_hosts says otherwise), the Origin allowlist settings.origins, the body limit max_body_bytes, "
            "on both apps the router serves; /health is a custom route, which the SDK never authenticates.")
async def test_http_auth_and_hosts(target: Target, desk: Desk) -> None:
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
            "MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}
    outcomes: dict[str, int] = {}
    async with _serve(target, _settings(target, desk)) as url, httpx2.AsyncClient(timeout=10) as http:
        health_url = url.rsplit("/mcp", 1)[0] + "/health"
        cases = {
            "right token, public Host": {"Host": desk.host, "Authorization": f"Bearer {desk.token}"},
            "no token": {"Host": desk.host},
            "a wrong token": {"Host": desk.host, "Authorization": f"Bearer {secrets.token_urlsafe(24)}"},
            "an unknown Host": {"Host": f"evil-{_word(4)}.example", "Authorization": f"Bearer {desk.token}"},
        }
        for label, headers in cases.items():
            outcomes[label] = (await http.post(url, json=discover, headers=base | headers)).status_code
        health = await http.get(health_url, headers={"Host": desk.host})
    assert outcomes["right token, public Host"] == 200, (
        f"a request with the right token and the public Host got HTTP {outcomes['right token, public Host']}, "
        f"expected 200 (is {desk.host} on the allowlist? is the token verifier given the token?)")
    for label in ("no token", "a wrong token"):
        assert outcomes[label] == 401, (f"a request with {label} got HTTP {outcomes[label]}, expected 401: the "
                                        f"MCP endpoint must require the bearer token when one is configured")
    assert outcomes["an unknown Host"] == 421, (
        f"a request with an unknown Host got HTTP {outcomes['an unknown Host']}, expected 421 (DNS-rebinding "
        f"protection: only the configured names may appear in Host)")
    assert health.status_code == 200 and health.json().get("status") == "ok", (
        f"GET /health without a token got HTTP {health.status_code}: probes must reach it without credentials")

    # The same desk told its own Host names, browser origins and body limit.
    alias, origin = f"alias-{_word(5)}.example", f"https://app-{_word(5)}.example"
    limit = random.randint(20_000, 40_000)
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "course-check", "version": "1.0"}}}
    legacy = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    auth = {"Host": alias, "Authorization": f"Bearer {desk.token}"}

    def padded(message: dict[str, Any], size: int) -> bytes:
        body = json.dumps(message).encode()
        return body + b" " * (size - len(body))   # JSON allows trailing white space: same message, exact size

    told: dict[str, int] = {}
    settings = _settings(target, desk, allowed_hosts=(alias, desk.host), allowed_origins=(origin,), max_body_bytes=limit)
    async with _serve(target, settings) as url, httpx2.AsyncClient(timeout=10) as http:
        told["alias"] = (await http.post(url, json=discover, headers=base | auth)).status_code
        told["allowed origin"] = (await http.post(url, json=discover, headers=base | auth | {"Origin": origin})
                                  ).status_code
        told["other origin"] = (await http.post(url, json=discover, headers=base | auth | {
            "Origin": f"https://evil-{_word(4)}.example"})).status_code
        for era, message, headers in (("modern", discover, base), ("legacy", initialize, legacy)):
            for size in (limit, limit + 1):
                told[f"{era} {size}"] = (await http.post(url, content=padded(message, size),
                                                         headers=headers | auth)).status_code
    assert told["alias"] == 200, (
        f"with allowed_hosts=({alias!r}, ...), a request with Host {alias} got HTTP {told['alias']}: serve the "
        f"configured Host names (settings.hosts)")
    assert told["allowed origin"] == 200 and told["other origin"] == 403, (
        f"with allowed_origins=({origin!r},), a browser request from {origin} got HTTP {told['allowed origin']} "
        f"(expected 200) and one from another origin {told['other origin']} (expected 403): pass settings.origins on")
    for era in ("modern", "legacy"):
        assert told[f"{era} {limit}"] == 200 and told[f"{era} {limit + 1}"] == 413, (
            f"with max_body_bytes={limit}, a {era} request of exactly {limit} bytes got HTTP {told[f'{era} {limit}']} "
            f"(expected 200) and one of {limit + 1} bytes {told[f'{era} {limit + 1}']} (expected 413): give the limit "
            f"to every app the desk serves")


@check("over HTTP, every file-reading tool stays inside the roots", points=3,
       hint="Roots are the server's configuration: lesson 4's file tools get the configured roots, and the tools "
            "that read documents by name (lessons 2 and 7) get the workspace, i.e. the first root. Never a parent "
            "folder, never the working directory.")
async def test_http_roots_enforced(target: Target, desk: Desk) -> None:
    link = desk.root / "shortcut-out.md"
    inside = random.choice(desk.names)
    attempts = [
        ("read_file", {"path": f"../{desk.private.name}/secret.md"}),
        ("read_file", {"path": str(desk.secret_file)}),
        ("read_file", {"path": desk.secret_file.as_uri()}),
        ("read_file", {"path": link.name}),
        ("list_files", {"path": str(desk.private)}),
        ("search_files", {"query": desk.secret, "path": str(desk.private)}),
        ("search_files", {"query": desk.secret}),
        ("read_document", {"name": f"../{desk.private.name}/secret.md"}),
        ("read_document", {"name": f"{desk.private.name}/secret.md"}),
        ("summarise_document", {"name": f"../{desk.private.name}/secret.md"}),
        ("summarise_document", {"name": f"{desk.private.name}/secret.md"}),
        ("export_bundle", {"names": [f"{desk.private.name}/secret.md"]}),
        ("search_documents", {"query": desk.secret}),
    ]
    leaks: list[str] = []
    with _own_errors():  # a generous search timeout: a busy machine must not turn this into lesson 7's fallback
        async with _serve(target, _settings(target, desk, search_timeout=10.0)) as url:
            link.symlink_to(desk.secret_file)  # a link inside the workspace that leads out of it
            async with _client(url, desk, sampling_callback=_echo_model) as client:
                result = await _call(client, "read_file", {"path": inside})
                assert _text(result) == desk.texts[inside], (
                    f"read_file({inside!r}) inside the workspace did not return the file's text")
                result = await _call(client, "read_document", {"name": inside})
                assert _text(result) == desk.texts[inside], f"read_document({inside!r}) did not return the document"
                for name, arguments in attempts:
                    try:
                        result = await client.call_tool(name, arguments)
                        shown = _text(result) + json.dumps(result.structured_content or {})
                    except MCPError as exc:
                        shown = exc.message
                    if desk.secret in shown:
                        leaks.append(f"{name}({json.dumps(arguments)})")
    assert not leaks, (
        f"these calls returned text from {desk.private.name}/ (or sent it to the client's model), a folder outside "
        f"the roots that only shares the workspace's name prefix: {'; '.join(leaks[:3])}. Give every tool the "
        f"configured roots or the workspace")


@check("over HTTP, summaries borrow the client's model, and fall back when it has none", points=2,
       hint="Register lesson 2's summarise tools as they are: their resolver asks the client's model only when the "
            "client declared sampling, and otherwise answers with the desk's own extractive summary. A tool wired "
            "straight to Sample(...) fails with -32021 for clients that cannot sample.")
async def test_http_summary_through_sampling(target: Target, desk: Desk) -> None:
    passage = " ".join(_sentence() for _ in range(4))
    marker, model_name = f"summary {_word()} {_word()}", f"model-{_word(5)}"
    name = random.choice(desk.names)
    got: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            for mode in MODES:
                model = _model(marker, model_name)
                async with _client(url, desk, mode, sampling_callback=model) as client:
                    got[mode] = (await _call(client, "summarise", {"text": passage})).structured_content
                    got[mode + " document"] = (await _call(client, "summarise_document", {"name": name})
                                               ).structured_content
                got[mode + " prompts"] = model.prompts
            async with _client(url, desk) as client:
                try:
                    got["no sampling"] = (await client.call_tool("summarise", {"text": passage})).structured_content
                except MCPError as exc:
                    pytest.fail(f"a client without sampling got a protocol error {exc.code} ({exc.message}): the "
                                f"summary must degrade to the desk's own, not fail")
    for mode, version in MODES.items():
        for what in (mode, mode + " document"):
            summary = got[what] or {}
            assert summary.get("summary") == marker and summary.get("model") == model_name, (
                f"{version}: summarise{'_document' if 'document' in what else ''} answered {summary}, expected the "
                f"client's model's reply {marker!r} from {model_name!r}")
            assert summary.get("fallback") is False, f"{version}: a summary from the client's model is not a fallback"
        prompts = got[mode + " prompts"]
        assert any(passage[:40] in p for p in prompts), f"{version}: the client's model never saw the passage"
    fallback = got["no sampling"] or {}
    assert fallback.get("fallback") is True and fallback.get("model") == FALLBACK_MODEL, (
        f"a client without sampling got {fallback}; expected the extractive fallback (fallback=True, "
        f"model={FALLBACK_MODEL!r})")
    assert fallback.get("summary", "").split()[:3] == passage.split()[:3], (
        "the fallback summary should be extractive: the passage's opening sentences")


@check("over HTTP, indexing reports progress to clients of both eras", points=2,
       hint="Progress travels in an SSE response. A JSON-only app drops it, so calls to tools that report "
            "progress (STREAMING_TOOLS) must reach the streaming app, and so must legacy sessions.")
async def test_http_progress_while_indexing(target: Target, desk: Desk) -> None:
    total = len(desk.names)
    seen: dict[str, list[float]] = {}
    results: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk, progress_interval=0.0)) as url:
            for mode in MODES:
                steps: list[float] = []

                async def on_progress(progress: float, total_: float | None, message: str | None,
                                      steps: list[float] = steps) -> None:
                    steps.append(progress)

                async with _client(url, desk, mode) as client:
                    results[mode] = (await _call(client, "index_documents", {}, progress_callback=on_progress)
                                     ).structured_content
                    with anyio.move_on_after(2):
                        while len(steps) < total:
                            await anyio.sleep(0.02)
                seen[mode] = sorted(steps)
    for mode, version in MODES.items():
        assert (results[mode] or {}).get("documents") == total, (
            f"{version}: index_documents reported {results[mode]}, expected {total} documents")
        assert seen[mode], (f"{version}: no progress notification arrived while indexing {total} documents. Was the "
                            f"call answered by a JSON-only app (json_response drops notifications)?")
        assert [float(p) for p in seen[mode]] == [float(i) for i in range(1, total + 1)], (
            f"{version}: progress went {seen[mode]}, expected 1..{total}, one per document with progress_interval=0")


@check("over HTTP, a retried note is saved once, whichever era or connection retries it", points=2,
       hint="Build one MCPServer per process and serve every app from it: a second server (or a second "
            "ErrorDesk) would keep its own receipts, and a retry that lands there saves the note twice.")
async def test_http_idempotent_retry(target: Target, desk: Desk) -> None:
    key = f"key-{secrets.token_hex(8)}"
    title, body = f"note {_word()}", " ".join(_sentence() for _ in range(2))
    receipts: list[dict[str, Any]] = []
    conflict: MCPError | None = None
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            for mode in ("auto", "legacy", "auto"):
                async with _client(url, desk, mode) as client:
                    receipts.append((await _call(client, "save_note", {
                        "title": title, "body": body, "idempotency_key": key})).structured_content or {})
            async with _client(url, desk) as client:
                try:
                    await client.call_tool("save_note", {"title": title, "body": body + " changed",
                                                         "idempotency_key": key})
                except MCPError as exc:
                    conflict = exc
                other = (await _call(client, "save_note", {"title": title, "body": body,
                                                           "idempotency_key": f"other-{secrets.token_hex(6)}"})
                         ).structured_content or {}
    ids = [r.get("note_id") for r in receipts]
    assert ids[0] and ids.count(ids[0]) == 3, (
        f"the same save_note retried (modern, then legacy, then modern again, each on a new connection) gave note "
        f"ids {ids}; a retry must return the first receipt. Do all apps serve the same server and desk?")
    assert other.get("note_id") not in (None, ids[0]), "a new idempotency key must save a new note"
    assert conflict is not None and conflict.code == INVALID_PARAMS, (
        "reusing an idempotency key for a different note must be refused with -32602 (lesson 7), "
        f"got {conflict.code if conflict else 'no error'}")


@check("legacy sessions name their replica; the stateless and stream-all switches take effect", points=2,
       hint="Wrap the streaming app with lesson 6's SessionOwnerTag for this replica, so nginx can send a "
            "session home; RESEARCH_DESK_STATELESS switches sessions off for 2025-era clients only; "
            "RESEARCH_DESK_STREAM_ALL sends every request to the streaming app (no JSON-only twin).")
async def test_legacy_sessions_tagged(target: Target, desk: Desk) -> None:
    sessions: dict[str, set[str]] = {}

    def recorder(label: str) -> Any:
        async def record(response: httpx2.Response) -> None:
            sid = response.headers.get("mcp-session-id")
            sessions.setdefault(label, set())
            if sid:
                sessions[label].add(sid)
        return record

    versions: dict[str, str] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            for mode in MODES:
                async with _client(url, desk, mode, on_response=recorder(mode)) as client:
                    info = (await _call(client, "desk_info", {})).structured_content or {}
                    versions[mode] = str(info.get("protocol_version"))
        json_only = {"Host": desk.host, "Authorization": f"Bearer {desk.token}", "Accept": "application/json",
                     "Content-Type": "application/json", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                     "Mcp-Name": "replica_info"}
        call = _modern_request("replica_info", {})
        async with _serve(target, _settings(target, desk)) as url, httpx2.AsyncClient(timeout=10) as http:
            versions["routed"] = str((await http.post(url, json=call, headers=json_only)).status_code)
        async with _serve(target, _settings(target, desk, stateless=True, stream_all=True)) as url:
            async with _client(url, desk, "legacy", on_response=recorder("stateless")) as client:
                info = (await _call(client, "replica_info", {})).structured_content or {}
                versions["stateless"] = str(info.get("protocol_version"))
            async with httpx2.AsyncClient(timeout=10) as http:
                versions["stream all"] = str((await http.post(url, json=call, headers=json_only)).status_code)
    assert versions["auto"] == MODERN and versions["legacy"] == LEGACY, f"the eras served were {versions}"
    assert not sessions.get("auto"), f"a 2026-07-28 client was given a session id {sessions['auto']}: modern has none"
    legacy = sessions.get("legacy", set())
    assert legacy, "a 2025-era client got no Mcp-Session-Id: legacy clients need sessions unless stateless is set"
    assert all(sid.startswith(f"{desk.replica}.") for sid in legacy), (
        f"legacy session ids {sorted(legacy)} do not start with '{desk.replica}.' (this replica's name): without "
        f"the owner tag, nginx cannot route a session back to the replica that holds it")
    assert versions["stateless"] == LEGACY and not sessions.get("stateless"), (
        f"with stateless=True a legacy client should be served without a session id, got {sessions.get('stateless')}")
    assert versions["routed"] == "200" and versions["stream all"] == "406", (
        f"a modern call that accepts only application/json got HTTP {versions['routed']} by default (expected 200: "
        f"the JSON-only twin answers it) and {versions['stream all']} with stream_all=True (expected 406: every "
        f"request goes to the streaming app, which insists on text/event-stream). Honour settings.stream_all")


@check("two replicas with the same keys finish each other's multi-round calls; other keys cannot", points=2,
       hint="Every replica uses one server name (the seal's audience) and lesson 6's request-state policy built "
            "from RESEARCH_DESK_STATE_KEYS. Never add the replica's name to the server name.")
async def test_replicas_share_request_state(target: Target, desk: Desk) -> None:
    passage = " ".join(_sentence() for _ in range(3))
    marker = f"summary {_word()}"
    outcome: dict[str, str] = {}

    async def declare(context: Any, params: Any) -> CreateMessageResult:  # the rounds are driven by hand
        raise AssertionError("not called: the check answers the sampling request itself")

    with _own_errors():
        a_settings = _settings(target, desk, replica="a" + secrets.token_hex(2))
        b_settings = _settings(target, desk, replica="b" + secrets.token_hex(2))
        c_settings = _settings(target, desk, replica="c" + secrets.token_hex(2), state_keys=(secrets.token_hex(32),))
        async with _serve(target, a_settings) as a_url, _serve(target, b_settings) as b_url, \
                _serve(target, c_settings) as c_url:
            async with _client(a_url, desk, sampling_callback=declare) as a:
                first = await a.session.call_tool("summarise", {"text": passage}, allow_input_required=True)
            assert isinstance(first, InputRequiredResult), (
                f"round 1 of summarise on replica A should ask for a sampling answer, got {type(first).__name__}")
            answers = {key: CreateMessageResult(role="assistant", model="m", content=TextContent(type="text", text=marker))
                       for key in first.input_requests}
            for label, url in (("same keys", b_url), ("other keys", c_url)):
                async with _client(url, desk, sampling_callback=declare) as other:
                    try:
                        second = await other.session.call_tool("summarise", {"text": passage}, input_responses=answers,
                                                               request_state=first.request_state,
                                                               allow_input_required=True)
                        outcome[label] = json.dumps(getattr(second, "structured_content", None) or {})
                    except MCPError as exc:
                        outcome[label] = f"MCPError {exc.code}: {exc.message}"
    assert marker in outcome["same keys"], (
        f"round 2 on replica B (same keys, same server name) gave {outcome['same keys']!r}: replicas must share "
        f"the request-state keys from RESEARCH_DESK_STATE_KEYS and one server name")
    assert outcome["other keys"].startswith(f"MCPError {INVALID_PARAMS}"), (
        f"round 2 on a replica with other keys gave {outcome['other keys']!r}; it must be refused (-32602). Are the "
        f"configured keys used at all?")


@check("with Redis configured, a note filed on one replica reaches a listener on another", points=2,
       hint="Build the bus from the settings (Redis when RESEARCH_DESK_REDIS_URL is set), give it to the MCPServer as "
            "its subscription bus, and keep it running for the server's life in the lifespan.")
async def test_redis_bus_across_replicas(target: Target, desk: Desk, tmp_path: Path) -> None:
    binary = installed_or_skip("redis-server")
    port = free_port()
    redis = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(tmp_path)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    heard: list[Any] = []
    try:
        with anyio.fail_after(5):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    await stream.aclose()
                    break
                except OSError:
                    await anyio.sleep(0.05)
        channel = f"desk-{_word()}"
        bus = {"redis_url": f"redis://127.0.0.1:{port}/0", "bus_channel": channel}
        with _own_errors():
            async with _serve(target, _settings(target, desk, replica="a" + secrets.token_hex(2), **bus)) as a_url, \
                    _serve(target, _settings(target, desk, replica="b" + secrets.token_hex(2), **bus)) as b_url:
                ready = anyio.Event()

                async def listen() -> None:
                    async with _client(a_url, desk) as client:
                        async with client.listen(resource_subscriptions=[NOTES]) as subscription:
                            ready.set()
                            async for event in subscription:
                                heard.append(event)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(listen)
                    with anyio.fail_after(8):
                        await ready.wait()
                    async with _client(b_url, desk, elicitation_callback=_accept_filing) as writer:
                        await _call(writer, "file_note", {"title": f"note {_word()}", "text": _sentence()})
                    with anyio.move_on_after(4):
                        while not heard:
                            await anyio.sleep(0.02)
                    tg.cancel_scope.cancel()
    finally:
        redis.terminate()
        redis.wait(timeout=5)
    assert any(getattr(event, "uri", None) == NOTES for event in heard), (
        f"a client listening for {NOTES} on replica A never heard of the note filed on replica B (heard {heard}): "
        f"the event must travel through Redis, so both replicas need the Redis bus, running")


# --- production promises: cancellation, writes, exposure, honesty -----------------------------------


def _modern_request(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The JSON-RPC body of a 2026-07-28 tools/call."""
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": name, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
            "io.modelcontextprotocol/clientCapabilities": {}}}}


def _modern_call(desk: Desk, port: int, name: str, arguments: dict[str, Any], **headers: str) -> bytes:
    """One raw 2026-07-28 tools/call request, as bytes for a socket: what a modern client sends."""
    body = json.dumps(_modern_request(name, arguments)).encode()
    head = {"Host": desk.host, "Authorization": f"Bearer {desk.token}", "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream", "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/call", "Mcp-Name": name, "Content-Length": str(len(body)), **headers}
    return ("POST /mcp HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n").encode() + body


def _exports(desk: Desk) -> list[str]:
    folder = desk.root / ".exports"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


async def _until(condition: Any, seconds: float) -> bool:
    with anyio.move_on_after(seconds):
        while not condition():
            await anyio.sleep(0.03)
    return bool(condition())


@check("over HTTP, a call the client abandons stops, on the JSON-only app too", points=3,
       hint="Closing the response is how a 2026-07-28 client cancels (its SDK does it when it times out with -32001). "
            "The streaming app notices; the SDK's JSON-response app never listens for http.disconnect, so wrap the "
            "JSON-only twin in CancelOnDisconnect, or a cancelled export runs on and writes its bundle anyway.")
async def test_http_abandoned_call_stops(target: Target, desk: Desk) -> None:
    names = [random.choice(desk.names) for _ in range(100)]     # 100 steps of 50 ms: five seconds of work
    outcome: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            port = int(url.split(":")[2].split("/")[0])
            stream = await anyio.connect_tcp("127.0.0.1", port)
            async with stream:
                await stream.send(_modern_call(desk, port, "export_bundle", {"names": names}))
                outcome["started"] = await _until(lambda: bool(_exports(desk)), 5)
            outcome["after hang-up"] = await _until(lambda: not _exports(desk), 2) or _exports(desk)
            async with _client(url, desk) as client:
                try:
                    await client.call_tool("export_bundle", {"names": names}, read_timeout_seconds=1)
                    outcome["timeout"] = "answered"
                except MCPError as exc:
                    outcome["timeout"] = exc.code
            outcome["after timeout"] = await _until(lambda: not _exports(desk), 2) or _exports(desk)
    assert outcome["started"], "export_bundle of 100 documents never started writing its bundle into .exports"
    for how, key in (("closed its connection", "after hang-up"), ("timed out (-32001)", "after timeout")):
        assert outcome[key] is True, (
            f"a 2026-07-28 client {how}, yet two seconds later the export is still writing {outcome[key]}: the "
            f"handler was not cancelled, and would finish a bundle nobody waits for")


@check("over HTTP, notes and bundles are written inside the workspace: no link followed, nothing replaced",
       points=3,
       hint="A write acts on whatever is on the disk: a link planted at notes/x.md or .exports leads it out of the "
            "roots, and an existing document with the same name gets overwritten. Register lesson 6's and 7's tools "
            "as given (they write through research_desk.writing) over the workspace, never a folder above it.")
async def test_http_writes_stay_inside(target: Target, desk: Desk) -> None:
    planted = f"{_word()}-{_word(4)}"
    existing = next((n for n in desk.names if n.startswith("notes/")), None)
    if existing is None:
        existing = f"notes/{_word()}.md"
        (desk.root / existing).parent.mkdir(parents=True, exist_ok=True)
        (desk.root / existing).write_text(f"# {_word()}\n\n{_sentence()}\n")
    original = target.read_text(desk.root / existing)
    title = Path(existing).stem                                  # file_note files `notes/<slug>.md`
    secret_before = target.read_text(desk.secret_file)
    results: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            (desk.root / "notes").mkdir(exist_ok=True)
            (desk.root / "notes" / f"{planted}.md").symlink_to(desk.secret_file)
            async with _client(url, desk, elicitation_callback=_accept_filing) as client:
                results["link"] = await client.call_tool("file_note", {"title": planted, "text": _sentence()})
                results["clash"] = await client.call_tool("file_note", {"title": title, "text": _sentence()})
                (desk.root / ".exports").symlink_to(desk.private)
                results["export"] = await client.call_tool("export_bundle", {"names": [desk.names[0]]})
    assert target.read_text(desk.secret_file) == secret_before, (
        f"file_note({planted!r}) wrote through the link notes/{planted}.md into {desk.private.name}/secret.md, outside "
        f"every root: a write must never follow a link")
    assert target.read_text(desk.root / existing) == original, (
        f"file_note({title!r}) replaced the existing document {existing}: never replace a file without saying so")
    clash = results["clash"].structured_content or {}
    said = _text(results["clash"]) if results["clash"].is_error else json.dumps(clash)
    assert results["clash"].is_error or clash.get("name") not in (None, existing), (
        f"file_note({title!r}) answered {said[:200]!r} as if it had filed {existing}, which already exists")
    assert existing in said, f"file_note({title!r}) did not say that {existing} was taken: {said[:200]!r}"
    assert sorted(p.name for p in desk.private.iterdir()) == ["secret.md"], (
        f"export_bundle wrote through the link .exports into {desk.private.name}/: {sorted(os.listdir(desk.private))}")
    assert results["export"].is_error, "an export that cannot be written inside the workspace must fail and say why"


@check("over HTTP, a desk without a token serves only its own machine, whatever uvicorn binds", points=2,
       hint="The settings cannot see `uvicorn --host 0.0.0.0` or a local proxy forwarding the world. Judge each "
            "request by its connection (the ASGI scope's client and server addresses, never the Host header): "
            "without a token, and unless allow_anonymous is set, wrap the app in LoopbackOnly.")
async def test_http_no_token_loopback_only(target: Target, desk: Desk) -> None:
    forwarded = {"X-Forwarded-For": f"203.0.113.{random.randint(1, 254)}"}
    status: dict[str, int] = {}
    discover = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": {"name": "course-check", "version": "1.0"},
        "io.modelcontextprotocol/clientCapabilities": {}}}}
    base = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
            "MCP-Protocol-Version": MODERN, "Mcp-Method": "server/discover"}
    async with httpx2.AsyncClient(timeout=10) as http:
        async with _serve(target, _settings(target, desk, token="", public_url="")) as url:
            local = {"Host": url.split("/")[2]}
            status["local"] = (await http.post(url, json=discover, headers=base | local)).status_code
            status["network"] = (await http.post(url, json=discover, headers=base | local | forwarded)).status_code
            status["network, Host 127.0.0.1"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": "127.0.0.1"})).status_code
        async with _serve(target, _settings(target, desk)) as url:
            status["network with the token"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": desk.host, "Authorization": f"Bearer {desk.token}"})).status_code
        async with _serve(target, _settings(target, desk, token="", public_url="", allow_anonymous=True)) as url:
            status["network, anonymous allowed"] = (await http.post(url, json=discover, headers=base | forwarded | {
                "Host": url.split("/")[2]})).status_code
    assert status["local"] == 200, f"without a token, a client on this machine should be served: got {status['local']}"
    for label in ("network", "network, Host 127.0.0.1"):
        assert status[label] == 403, (
            f"without a token, a request from {forwarded['X-Forwarded-For']} ({label}, through a local proxy) got "
            f"HTTP {status[label]}, expected 403: whoever reaches the port reads the workspace")
    assert status["network with the token"] == 200, (
        f"with a token, a request from the network should be served: got {status['network with the token']}")
    assert status["network, anonymous allowed"] == 200, (
        f"with allow_anonymous=True (a proxy in front authenticates), a request from the network should be served "
        f"without a token: got {status['network, anonymous allowed']} (settings.loopback_only says when to guard)")


@check("over HTTP, the desk advertises only what it does: no unsent listChanged, no made-up issuer", points=2,
       hint="Advertise only notifications the desk sends (the SDK says listChanged for every list once listen is "
            "served: honest_capabilities corrects server/discover). With a static token there is no authorization "
            "server: publish protected-resource metadata only when RESEARCH_DESK_ISSUER_URL names a real one.")
async def test_http_honest_advertising(target: Target, desk: Desk) -> None:
    issuer = f"https://auth-{_word(5)}.example"
    metadata_path = "/.well-known/oauth-protected-resource/mcp"
    seen: dict[str, Any] = {}
    with _own_errors():
        async with _serve(target, _settings(target, desk)) as url:
            async with _client(url, desk) as client:
                seen["capabilities"] = client.server_capabilities
            async with httpx2.AsyncClient(timeout=10, headers={"Host": desk.host}) as http:
                seen["static"] = await http.get(url.rsplit("/mcp", 1)[0] + metadata_path)
                seen["challenge"] = (await http.post(url, json={})).headers.get("www-authenticate", "")
        async with _serve(target, _settings(target, desk, issuer_url=issuer)) as url:
            async with httpx2.AsyncClient(timeout=10, headers={"Host": desk.host}) as http:
                seen["issued"] = await http.get(url.rsplit("/mcp", 1)[0] + metadata_path)
    capabilities = seen["capabilities"]
    assert capabilities is not None and capabilities.tools is not None, "server/discover advertised no tools"
    for kind in ("tools", "prompts", "resources"):
        advertised = getattr(capabilities, kind, None)
        assert not getattr(advertised, "list_changed", None), (
            f"the desk advertises {kind}.listChanged but never changes that list, so no such notification ever "
            f"comes: a client waits for nothing")
    assert capabilities.resources is not None and capabilities.resources.subscribe, (
        "desk://notes updates are really sent: resources.subscribe should stay advertised")
    assert seen["static"].status_code == 404 and "resource_metadata" not in seen["challenge"], (
        f"with a static token and no issuer the desk published {seen['static'].text[:160]!r} (the 401 says "
        f"{seen['challenge'][:120]!r}): it names an authorization server that does not exist")
    assert seen["issued"].status_code == 200 and issuer in json.dumps(seen["issued"].json()), (
        f"with RESEARCH_DESK_ISSUER_URL={issuer} the protected-resource metadata should name it; got "
        f"HTTP {seen['issued'].status_code} {seen['issued'].text[:160]!r}")


# --- stdio and the command line ---------------------------------------------------------------------


@check("the installed research-desk-server serves the whole desk over stdio, both eras, protocol-only stdout", points=3,
       hint="What users run is the wheel's research-desk-server command (research_desk.server:main). main() with no "
            "transport serves stdio from the server built without HTTP parts. Log through logging (stderr); a "
            "print() or a stdout log handler puts a line on the wire that no client can parse.")
async def test_stdio_both_eras(target: Target, desk: Desk, tmp_path: Path,
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    marker, model_name = f"summary {_word()}", f"model-{_word(4)}"
    inside = random.choice(desk.names)
    # The wheel of this very project, installed offline into a fresh environment (lesson 8's build, made
    # where student code runs).
    from lesson08 import build

    command = build(target, tmp_path_factory).require().venv / "bin" / "research-desk-server"
    assert target.library("os.path").isfile(str(command)), (
        "installing the wheel made no `research-desk-server` command: keep it in [project.scripts] of your "
        "pyproject.toml")
    env = target.env({"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_LOG_LEVEL": "INFO",
                      "RESEARCH_DESK_TOKEN": desk.token, "RESEARCH_DESK_PROGRESS_INTERVAL": "0",
                      "PYTHONUNBUFFERED": "1"})  # a stray write shows at once
    env.pop("PYTHONPATH")  # the installed package, not the source tree
    report: dict[str, dict[str, Any]] = {}
    errlogs = {mode: _log(tmp_path) for mode in MODES}

    async def session(mode: str) -> None:
        junk: list[str] = []

        async def on_message(message: Any) -> None:
            if isinstance(message, Exception):
                found = re.search(r"input_value='([^']*)'", str(message))
                junk.append(found.group(1) if found else str(message)[:120])

        steps: list[float] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            steps.append(progress)

        program, *args = target.command([str(command)])
        params = StdioServerParameters(command=program, args=args, env=env, cwd=str(tmp_path))
        got: dict[str, Any] = {"junk": junk, "steps": steps}
        async with Client(stdio_client(params, errlog=errlogs[mode]), mode=mode, message_handler=on_message,
                          sampling_callback=_model(marker, model_name), read_timeout_seconds=15) as client:
            got["version"] = client.protocol_version
            got["tools"] = {t.name for t in (await client.list_tools()).tools}
            got["inside"] = _text(await _call(client, "read_file", {"path": inside}))
            outside = await client.call_tool("read_file", {"path": str(desk.secret_file)})
            got["outside"] = (outside.is_error, _text(outside))
            got["summary"] = (await _call(client, "summarise", {"text": _sentence() + " " + _sentence()})
                              ).structured_content
            got["index"] = (await _call(client, "index_documents", {}, progress_callback=on_progress)
                            ).structured_content
            with anyio.move_on_after(2):
                while len(steps) < len(desk.names):
                    await anyio.sleep(0.02)
        report[mode] = got

    try:
        with anyio.fail_after(18):
            async with anyio.create_task_group() as tg:
                for mode in MODES:
                    tg.start_soon(session, mode)
    except BaseException as exc:  # explained below, or re-raised as the check's own failure
        leaf = leaf_exception(exc)
        if isinstance(leaf, (AssertionError, pytest.fail.Exception, pytest.skip.Exception)):
            raise leaf from None
        if not isinstance(leaf, Exception):
            raise
        logs = " | ".join(_last_line(errlogs[m]) for m in MODES)
        pytest.fail(f"the installed `research-desk-server` did not serve stdio ({type(leaf).__name__}: {leaf}). "
                    f"Its stderr ended: {logs or '(empty)'}")
    finally:
        for errlog in errlogs.values():
            errlog.close()
    for mode, version in MODES.items():
        got = report[mode]
        assert not got["junk"], (f"{version}: the server wrote {got['junk'][0]!r} to stdout, which is not JSON-RPC: on "
                                 f"stdio, stdout is the protocol stream. Log to stderr; never print")
        assert got["version"] == version, f"a {mode} client over stdio negotiated {got['version']}"
        missing = sorted(EXPECTED_TOOLS - got["tools"])
        assert not missing, f"{version} over stdio: {missing} are not listed"
        assert got["inside"] == desk.texts[inside], f"{version} over stdio: read_file inside the root failed"
        assert got["outside"][0] and desk.secret not in got["outside"][1], (
            f"{version} over stdio: read_file outside the roots was not refused")
        assert (got["summary"] or {}).get("summary") == marker, (
            f"{version} over stdio: summarise answered {got['summary']}, expected the client's model's {marker!r}")
        assert (got["index"] or {}).get("documents") == len(desk.names) and len(got["steps"]) == len(desk.names), (
            f"{version} over stdio: indexing {len(desk.names)} documents gave {len(got['steps'])} progress steps")


def _log(folder: Path) -> IO[str]:
    """A nameless file for a process's stderr: read back through this handle, nothing can swap it."""
    return tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace", dir=folder)


def _read(log: IO[str]) -> str:
    log.flush()
    log.seek(0)
    return log.read()


def _last_line(log: IO[str]) -> str:
    """The last non-empty line a process wrote to its log (usually the error that ended it)."""
    try:
        lines = [line.strip() for line in _read(log).splitlines() if line.strip()]
    except (OSError, ValueError):
        return "(no log)"
    return lines[-1][:300] if lines else "(empty)"


def _spawn(target: Target, args: list[str], env: dict[str, str], cwd: Path, log: IO[str]) -> subprocess.Popen[bytes]:
    """`python ARGS` from the graded edition, run where student code runs."""
    return subprocess.Popen(target.command([sys.executable, *args]), env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=log, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@check("the command refuses unsafe settings, serves HTTP where its flags say; the uvicorn factory serves the "
       "configured desk", points=2,
       hint="main() turns a SettingsError into an argparse error (usage and one error line on stderr, exit code 2) "
            "before serving anything, and with --transport http runs uvicorn on the configured host and port (flags "
            "win over variables). build_app() with no argument reads the process environment, which is how "
            "`uvicorn --factory research_desk.server:build_app` configures each replica.")
async def test_command_line_and_factory(target: Target, desk: Desk, tmp_path: Path) -> None:
    port, main_port, elsewhere = free_port(), free_port(), free_port()
    main_replica = "m" + secrets.token_hex(3)
    logs = {name: _log(tmp_path) for name in ("refused", "factory", "main")}
    refused = _spawn(target, ["-m", f"{target.package}.server", "--transport", "http", "--port", str(free_port())],
                     target.env({"RESEARCH_DESK_ROOTS": str(desk.root),
                                 "RESEARCH_DESK_PUBLIC_URL": f"https://{desk.host}/mcp"}),
                     tmp_path, logs["refused"])
    served = _spawn(target, ["-m", "uvicorn", "--factory", f"{target.package}.server:build_app", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log", "--log-level", "warning"],
                    target.env({"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_TOKEN": desk.token,
                                "RESEARCH_DESK_REPLICA": desk.replica}), tmp_path, logs["factory"])
    # main() itself over HTTP: the transport from a flag, the port from a flag over a variable naming another one
    by_main = _spawn(target, ["-m", f"{target.package}.server", "--transport", "http", "--port", str(main_port)],
                     target.env({"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_TOKEN": desk.token,
                                 "RESEARCH_DESK_PORT": str(elsewhere), "RESEARCH_DESK_REPLICA": main_replica}),
                     tmp_path, logs["main"])
    info: dict[str, dict[str, Any]] = {}
    listed: set[str] = set()
    try:
        with anyio.fail_after(15):
            while refused.poll() is None:
                await anyio.sleep(0.05)
        stdout = refused.stdout.read().decode(errors="replace") if refused.stdout else ""
        stderr = _read(logs["refused"])
        assert refused.returncode == 2, (
            f"`python -m {target.package}.server --transport http` with a public URL and no token exited with "
            f"{refused.returncode}, expected 2 (a refused setting). Its stderr ended: {_last_line(logs['refused'])}")
        assert "RESEARCH_DESK_TOKEN" in stderr and not stdout.strip(), (
            "the refusal should be an error on stderr naming RESEARCH_DESK_TOKEN, and nothing on stdout")
        for label, process, at, how in (
                ("factory", served, port, f"`uvicorn --factory {target.package}.server:build_app --port {port}`"),
                ("main", by_main, main_port, f"`python -m {target.package}.server --transport http --port {main_port}` "
                                             f"(with RESEARCH_DESK_PORT={elsewhere}, which the flag overrides)")):
            with anyio.fail_after(15):
                async with httpx2.AsyncClient(timeout=2) as http:
                    while True:
                        if process.poll() is not None:
                            pytest.fail(f"{how} exited ({process.returncode}): {_last_line(logs[label])}")
                        try:
                            if (await http.get(f"http://127.0.0.1:{at}/health")).status_code == 200:
                                break
                        except httpx2.HTTPError:
                            pass
                        await anyio.sleep(0.1)
            local = Desk(root=desk.root, private=desk.private, secret=desk.secret, texts=desk.texts, token=desk.token,
                         host=f"127.0.0.1:{at}")
            with _own_errors(), anyio.fail_after(10):
                async with _client(f"http://127.0.0.1:{at}/mcp", local) as client:
                    info[label] = (await _call(client, "replica_info", {})).structured_content or {}
                    if label == "factory":
                        listed = {t.name for t in (await client.list_tools()).tools}
    finally:
        for process in (refused, served, by_main):
            _stop(process)
        for log in logs.values():
            log.close()
    assert info["factory"].get("replica") == desk.replica, (
        f"the factory's server reported replica {info['factory'].get('replica')!r}, expected {desk.replica!r} from "
        f"RESEARCH_DESK_REPLICA: build_app() must read its settings from the environment")
    assert EXPECTED_TOOLS <= listed, f"the factory's server does not list {sorted(EXPECTED_TOOLS - listed)}"
    assert info["main"].get("replica") == main_replica, (
        f"`python -m {target.package}.server --transport http` answered as replica {info['main'].get('replica')!r}, "
        f"expected {main_replica!r} from RESEARCH_DESK_REPLICA: serve create_http_app(settings)")


# --- load ----------------------------------------------------------------------------------------------


@check("a burst of concurrent mixed calls gets only correct answers", points=2,
       hint="Under load every answer must still be right: one server, one desk index opened by the lifespan, "
            "the search service answering within its timeout (not degrading), progress reaching its caller.")
async def test_short_load_zero_errors(target: Target, desk: Desk) -> None:
    names = desk.names
    first = names[0]
    word = desk.texts[first].split()[-1].strip(".").lower()
    calls: list[tuple[str, dict[str, Any], Any]] = [
        ("replica_info", {}, lambda r: r.structured_content.get("replica") == desk.replica),
        ("read_document", {"name": first}, lambda r: _text(r) == desk.texts[first]),
        ("read_file", {"path": names[-1]}, lambda r: _text(r) == desk.texts[names[-1]]),
        ("search_documents", {"query": word},
         lambda r: r.structured_content.get("source") == "search-service" and first in r.structured_content["hits"]),
        ("list_documents", {}, lambda r: sorted(r.structured_content.get("result", [])) == names),
        ("summarise", {"text": _sentence() + " " + _sentence()}, lambda r: r.structured_content.get("fallback") is True),
        ("index_documents", {}, lambda r: r.structured_content.get("documents") == len(names)),
        ("save_note", {"title": "burst", "body": "same", "idempotency_key": f"burst-{secrets.token_hex(6)}"},
         lambda r: bool(r.structured_content.get("note_id"))),
    ]
    done: list[str] = []
    errors: list[str] = []
    steps: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(progress)

    async def worker(offset: int, url: str) -> None:
        mode = "legacy" if offset % 4 == 3 else "auto"
        async with _client(url, desk, mode) as client:
            for step in range(offset, offset + len(calls)):   # every kind of call once, in its own order
                name, arguments, ok = calls[step % len(calls)]
                try:
                    result = await client.call_tool(name, arguments,
                                                    progress_callback=on_progress if name == "index_documents" else None)
                    if result.is_error or not ok(result):
                        errors.append(f"{name}: {_text(result)[:120]}")
                    else:
                        done.append(name)
                except MCPError as exc:
                    errors.append(f"{name}: MCPError {exc.code} {exc.message}")

    clients = 8
    with _own_errors():
        async with _serve(target, _settings(target, desk, search_timeout=10.0)) as url:
            try:
                with anyio.fail_after(15):
                    async with anyio.create_task_group() as tg:
                        for offset in range(clients):
                            tg.start_soon(worker, offset, url)
            except TimeoutError:
                pytest.fail(f"{clients} clients making {clients * len(calls)} calls between them had {len(done)} "
                            f"answered after 15 s: something holds calls up (a lock held across an await, a blocked "
                            f"event loop)")
    assert not errors, f"{len(errors)} of {len(errors) + len(done)} calls under load went wrong; the first: {errors[0]}"
    assert len(done) == clients * len(calls), f"{len(done)} of {clients * len(calls)} calls were answered"
    assert steps, "no progress reached the clients that indexed under load"
