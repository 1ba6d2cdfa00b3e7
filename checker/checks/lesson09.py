"""Lesson 9 checks: the capstone server, wired, deployed and driven like production.

Most checks deploy the student's `build_app(settings)` with a real uvicorn on a free loopback
port and talk to it as a client behind a proxy would: a random public host name in `Host`, a
random bearer token, random replica names and request-state keys. The workspace holds random
documents and, beside it, a private folder whose name shares the workspace's prefix; a secret
word lives only there, and no answer may ever contain it (see `support/lesson09.py`). Expected
answers are computed here, never by the code under test.

This file holds the configuration (`Settings`, `validate`, `create_server`'s wiring); the parts
hold the production app over HTTP (`lesson09_http.py`), its production promises and load
(`lesson09_production.py`), and deploying it: replicas, stdio and the command line
(`lesson09_deploy.py`).
"""

from __future__ import annotations

import os
import random
import re
import secrets
import string
import time
from pathlib import Path
from typing import Any

import pytest

from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson09 import (
    FALLBACK_MODEL,
    WORDS,
    Desk,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    env_name,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("Settings.from_env reads every RESEARCH_DESK_* variable into a typed setting", points=2,
       hint="One field, one variable: RESEARCH_DESK_<FIELD>. Strip the text, then convert it to the field's type "
            "(numbers; booleans 1/true/yes/on and 0/false/no/off in any case; comma-separated tuples and "
            "os.pathsep-separated roots, skipping empty items). A blank variable keeps the default; RESEARCH_DESK_ROOT "
            "is the fallback when RESEARCH_DESK_ROOTS is blank; a value that does not convert is a SettingsError "
            "that names the variable.")
async def test_settings_from_environment(target: Target, tmp_path: Path) -> None:
    settings_class = target.attr("server", "Settings")
    first, second = tmp_path / f"a-{word()}", tmp_path / f"b-{word()}"
    first.mkdir()
    second.mkdir()
    port = random.randint(1025, 65000)
    hosts = (f"{word()}.example", f"{word()}.example")
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
                              f"{env_name(name)}={env.get(env_name(name), '')!r}")
    defaults = settings_class()
    assert got.index_pace == defaults.index_pace, "an unset variable must keep the field's default"
    one = settings_class.from_env({"RESEARCH_DESK_ROOT": str(second)})
    assert tuple(Path(p) for p in one.roots) == (second,), (
        "with only RESEARCH_DESK_ROOT set (one folder, the lesson 1 name), roots should be that folder")
    for name, spellings, want in (("RESEARCH_DESK_STATELESS", ("1", "true", "yes", "on"), True),
                                  ("RESEARCH_DESK_STATELESS", ("0", "false", "no", "off"), False)):
        for spelling in spellings:
            for text in (spelling, spelling.upper(), spelling.capitalize()):
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
            f"Settings.from_env: {env_name(name)}={edges[env_name(name)]!r} gave {name}={have[name]!r}, expected "
            f"{value!r}: strip each value, skip empty list items (stray separators), let a blank variable keep the "
            f"default, and prefer RESEARCH_DESK_ROOTS to RESEARCH_DESK_ROOT")
    fallback = settings_class.from_env({"RESEARCH_DESK_ROOTS": "  ", "RESEARCH_DESK_ROOT": str(second)})
    assert tuple(Path(p) for p in fallback.roots) == (second,), (
        "with RESEARCH_DESK_ROOTS blank and RESEARCH_DESK_ROOT set, roots should be RESEARCH_DESK_ROOT's folder: a "
        "blank variable counts as unset")
    for variable, bad in (("RESEARCH_DESK_PORT", f"port-{word(low=3, high=3)}"), ("RESEARCH_DESK_STATELESS", "maybe"),
                          ("RESEARCH_DESK_SEARCH_TIMEOUT", "soon")):
        try:
            settings_class.from_env({"RESEARCH_DESK_ROOTS": str(first), variable: bad})
        except ValueError as exc:
            assert variable in str(exc), f"the error for {variable}={bad!r} should name the variable; it said: {exc}"
        else:
            pytest.fail(f"Settings.from_env accepted {variable}={bad!r}; it should raise a SettingsError naming it")


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
        assert anonymous == "accepted", (
            f"RESEARCH_DESK_ALLOW_ANONYMOUS=1 should allow {label} without a token: {anonymous}")
    stdio = outcome(RESEARCH_DESK_TRANSPORT="stdio", RESEARCH_DESK_HOST="0.0.0.0")
    assert stdio == "accepted", f"stdio listens on no network, so it needs no token: {stdio}"
    for variable, bad in (("RESEARCH_DESK_STATE_KEYS", "short-" + word(low=4, high=4)),
                          ("RESEARCH_DESK_REPLICA", "Replica A"), ("RESEARCH_DESK_TRANSPORT", "carrier-pigeon"),
                          ("RESEARCH_DESK_ROOTS", str(desk.root / word())), ("RESEARCH_DESK_PORT", "70000"),
                          ("RESEARCH_DESK_LOG_LEVEL", "LOUD")):
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
    accepted: list[tuple[dict[str, Any], str]] = [
        ({"port": 1}, "port 1 is the lowest TCP port"), ({"port": 65535}, "port 65535 is the highest"),
        ({"replica": good_replica}, "a replica name of 32 lowercase letters and digits is allowed"),
        ({"state_keys": (secrets.token_hex(32), secrets.token_urlsafe(33))}, "two keys of 32+ bytes rotate"),
        ({"transport": "http", "host": "localhost"}, "HTTP on loopback (by name) is local development"),
        ({"transport": "http", "host": "::1"}, "HTTP on loopback (IPv6) is local development"),
        ({"transport": "http", "public_url": "http://localhost:8000/mcp"},
         "a public URL on loopback reaches this machine only")]
    for values, reason in accepted:
        verdict = checked(**values)
        assert verdict == "accepted", f"Settings({values}).validate() {verdict[:240]}; expected acceptance: {reason}"
    refused: list[tuple[dict[str, Any], str, str]] = [
        ({"port": 0}, "RESEARCH_DESK_PORT", "port 0 cannot be listened on"),
        ({"roots": (document,)}, "RESEARCH_DESK_ROOTS", f"{document.name} is a file, not a folder"),
        ({"roots": (desk.root, desk.root / f"gone-{word(low=4, high=4)}")}, "RESEARCH_DESK_ROOTS",
         "the second root does not exist: check every root"),
        ({"roots": ()}, "RESEARCH_DESK_ROOTS", "no roots leaves nothing to serve"),
        ({"replica": good_replica + "x"}, "RESEARCH_DESK_REPLICA", "a 33-character replica name is too long"),
        ({"state_keys": (secrets.token_hex(32), "short-" + word(low=4, high=4))}, "RESEARCH_DESK_STATE_KEYS",
         "the second key is too short: every key must be usable"),
        ({"transport": "http", "host": f"192.168.{random.randint(0, 255)}.{random.randint(1, 254)}"},
         "RESEARCH_DESK_TOKEN", "HTTP on a private-network address without a token exposes the workspace")]
    for values, variable, reason in refused:
        verdict = checked(**values)
        assert verdict.startswith("refused") and variable in verdict, (
            f"Settings({values}).validate() was {verdict[:240]!r}; expected a SettingsError naming {variable}: "
            f"{reason}")


@check("create_server wires every setting into the tools: roots, document limit, replica, search timeout, pace",
       points=2,
       hint="Each lesson's register(...) takes what Settings says: the document tools the workspace (the first "
            "root), the file tools every configured root, summarise_document large_document_words, index_documents "
            "index_pace and progress_interval (as report_every), lesson 6's tools the replica's effective name "
            "(Settings.replica_name: p<pid> when none is set), lesson 7's desk search_timeout. A setting nobody "
            "passes on is a setting that silently does nothing.")
async def test_settings_wired_into_tools(target: Target, desk: Desk, tmp_path: Path) -> None:
    limit = random.randint(25, 45)
    short, long = f"brief-{word(low=5, high=5)}.md", f"lengthy-{word(low=5, high=5)}.md"
    texts = {short: f"# Brief\n\n{' '.join(random.choices(WORDS, k=limit - 4))}.\n",
             long: f"# Lengthy\n\n{' '.join(random.choices(WORDS, k=limit + 10))}.\n"}
    for name, text in texts.items():
        (desk.root / name).write_text(text, encoding="utf-8")
    assert len(texts[short].split()) <= limit < len(texts[long].split())
    names = sorted([*desk.texts, *texts])
    second = tmp_path / f"second-{word(low=5, high=5)}"
    second.mkdir()
    far_text = f"# Far\n\n{secrets.token_hex(8)}\n"
    (second / "far.md").write_text(far_text, encoding="utf-8")
    query = desk.texts[desk.names[0]].split()[-1].strip(".").lower()
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
            pytest.fail(f"create_server(Settings({settings}), http=False) raised {type(exc).__name__}: "
                        f"{str(exc)[:300]}")
        async with target.client(server) as client:
            seen: dict[str, Any] = {"search": await client.call_tool("search_documents", {"query": query})}
            if label == "configured":
                seen["listed"] = await client.call_tool("list_documents", {})
                seen["far"] = await client.call_tool("read_file", {"path": str(second / "far.md")})
                seen["short"] = await client.call_tool("summarise_document", {"name": short})
                seen["long"] = await client.call_tool("summarise_document", {"name": long})
                seen["replica"] = await client.call_tool("replica_info", {})
                steps: list[float] = []

                async def on_progress(progress: float, total: float | None, message: str | None,
                                      steps: list[float] = steps) -> None:
                    steps.append(progress)

                began = time.monotonic()
                seen["index"] = await client.call_tool("index_documents", {}, progress_callback=on_progress)
                seen["index took"] = time.monotonic() - began
                seen["index steps"] = steps
        got[label] = seen
    seen = got["configured"]
    listed = (seen["listed"].structured_content or {}).get("result") if not seen["listed"].is_error else None
    assert listed is not None and sorted(listed) == names, (
        f"with roots (workspace, {second.name}), list_documents gave {listed or text_of(seen['listed'])[:160]!r}; "
        f"expected the first root's documents {names}: the workspace is the first root")
    assert not seen["far"].is_error and text_of(seen["far"]) == far_text, (
        f"read_file of {second.name}/far.md, inside the second configured root, gave "
        f"{text_of(seen['far'])[:160]!r}: the file tools must be given every configured root")
    summary = seen["short"].structured_content or {}
    assert not seen["short"].is_error and summary.get("model") == FALLBACK_MODEL, (
        f"summarise_document({short!r}), {len(texts[short].split())} words with large_document_words={limit}, gave "
        f"{text_of(seen['short'])[:160]!r}; expected the desk's own summary (a client with no model)")
    assert seen["long"].is_error, (
        f"summarise_document({long!r}) is {len(texts[long].split())} words, above large_document_words={limit}, "
        f"and this client cannot be asked, yet it was summarised: pass the setting on to lesson 2's tools")
    replica = (seen["replica"].structured_content or {}).get("replica") if not seen["replica"].is_error else None
    assert isinstance(replica, str) and re.fullmatch(r"p\d+", replica), (
        f"with no replica configured, replica_info named the replica {replica!r}; expected the default p<pid> "
        f"(Settings.replica_name)")
    documents = len(names)
    assert not seen["index"].is_error and seen["index took"] >= documents * pace * 0.9, (
        f"index_documents over {documents} documents with index_pace={pace} took {seen['index took']:.2f} s, less than "
        f"{documents} x {pace} s: pass index_pace on to lesson 3's indexer")
    reported = [float(p) for p in seen["index steps"]]
    assert reported == [float(documents)], (
        f"with progress_interval=3600, indexing {documents} documents (in about {seen['index took']:.1f} s) reported "
        f"progress {reported}; expected only the last document ({documents}.0): pass progress_interval on to "
        f"lesson 3's register as report_every")
    quick = got["configured"]["search"].structured_content or {}
    patient = got["patient"]["search"].structured_content or {}
    assert quick.get("degraded") is True and patient.get("source") == "search-service", (
        f"with search_timeout=0 the search service cannot answer in time, so search_documents should degrade "
        f"(got {quick}); with search_timeout=10 it should answer from the service (got {patient}): give lesson 7's "
        f"desk the configured search_timeout")
