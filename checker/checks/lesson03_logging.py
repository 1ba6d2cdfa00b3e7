"""Lesson 3 checks, logging done right: stdout carries only the protocol, logs go to stderr through `logging`.

The stdio server is driven with raw JSON-RPC (so even bytes flushed at exit are seen), and log
records and warnings are caught where the student's code runs (`support/lesson03.py`).
"""

from __future__ import annotations

import json
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest

from checker.checks.support.lesson03 import (
    MODERN_META,
    Workspace,
    capture_logs_and_warnings,
    check_summary,
    raw_stdio,
    redirected_output,
    summary_of,
)
from checker.checks.support.lesson03 import workspace as workspace  # the fixture, for pytest
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio


@check("the stdio server writes nothing but JSON-RPC to stdout", points=3,
       hint="On stdio, stdout is the wire. A print() (even one that only appears when the buffer is flushed as "
            "the process exits) or a log handler pointed at stdout puts lines there that no client can parse. "
            "Log with the logging module to stderr.")
async def test_stdout_is_only_jsonrpc(target: Target, workspace: Workspace) -> None:
    from mcp.types import jsonrpc_message_adapter

    token = f"lesson3-{random.randint(10_000, 99_999)}"
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
         "params": {"name": "index_documents", "arguments": {}, "_meta": {**MODERN_META, "progressToken": token}}},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "index_documents", "arguments": {}, "_meta": MODERN_META}},
    ]
    lines, stderr = await raw_stdio(target, workspace, requests)
    messages: list[dict[str, Any]] = []
    for line in lines:
        try:
            jsonrpc_message_adapter.validate_json(line)
        except ValueError:
            pytest.fail(f"the server wrote {line[:80]!r} to stdout, which is not a JSON-RPC message: on stdio, "
                        "stdout carries the protocol, so a print() or a log line there corrupts the stream")
        messages.append(json.loads(line))
    results = {m.get("id"): m for m in messages if "id" in m}
    for request_id in (1, 2):
        reply = results.get(request_id, {})
        assert "result" in reply and not reply["result"].get("isError"), (
            f"tools/call #{request_id} did not succeed over stdio: {json.dumps(reply)[:200]}; stderr: {stderr}")
    progress = [m["params"] for m in messages if m.get("method") == "notifications/progress"]
    strangers = sorted({str(p.get("progressToken")) for p in progress} - {token})
    assert not strangers, (f"progress notifications carried the token(s) {strangers}, which the client never sent "
                           f"(it sent {token!r} once, and no token the second time); echo only the caller's token")
    n = len(workspace.names)
    assert len(progress) == n, (f"the call with a progress token got {len(progress)} progress notifications on the "
                                f"wire for {n} documents; expected one per document")


TIMESTAMP = re.compile(r"\d{1,2}:\d{2}(:\d{2})?|\b\d{10}(\.\d+)?\b")
"""A clock time (12:04 or 12:04:31) or seconds since the epoch: any line a reader can date."""


@check("configure_logging sends the package's logs to stderr, once, never stdout", points=2,
       hint="Give the package logger ('research_desk') its own StreamHandler on stderr with a format (time, level, "
            "logger name, message) and the level it is given, and return that logger. logging.basicConfig does "
            "nothing once the root logger has a handler (MCPServer installs one); records that also travel up to "
            "the root's handler print twice (propagate); a second call must not add a second handler, but its "
            "level counts.")
async def test_configure_logging_uses_stderr(target: Target) -> None:
    progress = target.module("progress")
    token = f"lesson3-log-{random.randint(10_000, 99_999)}"
    with redirected_output(target) as (logging_, stdout, stderr):
        root = logging_.getLogger()
        already = logging_.StreamHandler(stderr)  # as after MCPServer(...) configured the root logger
        already.setFormatter(logging_.Formatter("ROOT %(levelname)s %(name)s: %(message)s"))
        root.handlers = [already]
        root.setLevel(logging_.WARNING)
        package = logging_.getLogger("research_desk")
        package.handlers, package.propagate = [], True  # as in a fresh process
        returned = [progress.configure_logging("WARNING") is package]
        logger = logging_.getLogger("research_desk.progress")
        logger.info("%s-quiet", token)
        returned.append(progress.configure_logging("DEBUG") is package)
        logger.info("%s indexed", token)
        logger.debug("%s-debug", token)
    out, written = stdout.getvalue(), stderr.getvalue()
    assert token not in out, (
        "a log record reached stdout: on the stdio transport that line lands in the protocol stream; log to stderr")
    assert f"{token}-quiet" not in written, (
        "after configure_logging('WARNING') an INFO record was still written: honour the level you are given")
    lines = [line for line in written.splitlines() if f"{token} indexed" in line]
    assert lines, ("an INFO record from research_desk.progress did not reach stderr after configure_logging('WARNING') "
                   "then configure_logging('DEBUG'): give the package logger its own stderr handler, and let a later "
                   "call set the level again")
    assert len(lines) == 1, (
        f"one record was written {len(lines)} times ({lines}): a second configure_logging() call added another "
        "handler, or the records also travel up to the root logger's handler (set propagate to False)")
    assert f"{token}-debug" in written, "configure_logging('DEBUG') still held a DEBUG record back: apply its level"
    line = lines[0]
    assert "INFO" in line and "research_desk.progress" in line and TIMESTAMP.search(line.replace(token, "")), (
        f"the log line {line!r} should show the time, the level and the logger's name, so a reader knows when and "
        "who said it")
    assert returned == [True, True], (
        f"configure_logging should return the package logger, logging.getLogger('research_desk'); per call that "
        f"held: {returned}")


@check("the tool logs with the logging module, not deprecated protocol logging", points=2,
       hint="A module-level logger (logging.getLogger) and one INFO line summarising the work (how many "
            "documents). ctx.info()/ctx.log() send protocol log notifications, deprecated in 2026-07-28: they "
            "warn, and modern clients drop them unless they opted in.")
async def test_tool_logs_with_stdlib_logging(target: Target, workspace: Workspace) -> None:
    progress = target.module("progress")
    protocol_logs: list[Any] = []

    async def on_log(params: Any) -> None:
        protocol_logs.append(params)

    with capture_logs_and_warnings(target) as (sink, deprecated):
        async with target.client(progress.create_server(workspace.root), mode="legacy",
                                 logging_callback=on_log) as client:
            result = await client.call_tool("index_documents", {})
    check_summary(summary_of(result, "a legacy client", target), workspace, "a legacy client")
    assert not deprecated, f"the tool used a deprecated API: {deprecated[0]}"
    assert not protocol_logs, (
        f"the tool sent {len(protocol_logs)} protocol log notifications (ctx.info / ctx.log), deprecated since "
        "2026-07-28; log with the logging module, which writes to stderr")
    edition = str(target.edition.resolve())
    n = len(workspace.names)
    ours = [message for pathname, levelno, message in sink.records
            if str(Path(pathname).resolve()).startswith(edition) and levelno >= logging.INFO]
    assert any(str(n) in message for message in ours), (
        f"indexing {n} documents logged no INFO (or higher) line mentioning {n} through the logging module "
        f"(found: {ours[:3]}); log a one-line summary with a module-level logger")
