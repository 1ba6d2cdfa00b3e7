"""Lesson 9 checks, deploying it: replicas behind a proxy, stdio as a desktop host runs it, the command line.

The replica checks deploy `build_app(settings)` under real uvicorns; the Redis check starts
redis-server (skipped with install advice without it). The stdio check runs the installed
`research-desk-server` command (lesson 8's build) as a real subprocess; the command-line check
runs `python -m research_desk.server` and the documented `uvicorn --factory` command. Those
processes run student code, so they start where student code runs (`target.command`); every
process a check starts is stopped when it ends.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import INVALID_PARAMS, CreateMessageResult, InputRequiredResult, TextContent

from checker.checks.kit.eras import LEGACY, MODERN, MODES
from checker.checks.kit.processes import free_ports, log_file, log_text, stop
from checker.checks.kit.services import redis_server, wait_for_health
from checker.checks.kit.text import text_of, word
from checker.checks.support.lesson06 import accept_filing  # lesson 6's file_note asks before filing
from checker.checks.support.lesson08 import build
from checker.checks.support.lesson09 import (
    EXPECTED_TOOLS,
    NOTES,
    Desk,
    Model,
    call_ok,
    desk_client,
    desk_fixture,  # noqa: F401 - the `desk` fixture, which the checks take by name
    desk_settings,
    last_line,
    modern_request,
    own_errors,
    sentence,
    serve,
    spawn,
)
from checker.marks import check, installed_or_skip
from checker.target import Target, leaf_exception

pytestmark = pytest.mark.anyio


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
    json_only = {"Host": desk.host, "Authorization": f"Bearer {desk.token}", "Accept": "application/json",
                 "Content-Type": "application/json", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call",
                 "Mcp-Name": "replica_info"}
    call = modern_request("replica_info", {})
    with own_errors():
        async with serve(target, desk_settings(target, desk)) as url:
            for mode in MODES:
                async with desk_client(url, desk, mode, on_response=recorder(mode)) as client:
                    info = (await call_ok(client, "desk_info", {})).structured_content or {}
                    versions[mode] = str(info.get("protocol_version"))
            async with httpx2.AsyncClient(timeout=10) as http:
                versions["routed"] = str((await http.post(url, json=call, headers=json_only)).status_code)
        async with serve(target, desk_settings(target, desk, stateless=True, stream_all=True)) as url:
            async with desk_client(url, desk, "legacy", on_response=recorder("stateless")) as client:
                info = (await call_ok(client, "replica_info", {})).structured_content or {}
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
    passage = " ".join(sentence() for _ in range(3))
    marker = f"summary {word()}"
    outcome: dict[str, str] = {}

    async def declare(context: Any, params: Any) -> CreateMessageResult:  # the rounds are driven by hand
        raise AssertionError("not called: the check answers the sampling request itself")

    with own_errors():
        a_settings = desk_settings(target, desk, replica="a" + secrets.token_hex(2))
        b_settings = desk_settings(target, desk, replica="b" + secrets.token_hex(2))
        c_settings = desk_settings(target, desk, replica="c" + secrets.token_hex(2),
                                   state_keys=(secrets.token_hex(32),))
        async with serve(target, a_settings) as a_url, serve(target, b_settings) as b_url, \
                serve(target, c_settings) as c_url:
            async with desk_client(a_url, desk, sampling_callback=declare) as a:
                first = await a.session.call_tool("summarise", {"text": passage}, allow_input_required=True)
            assert isinstance(first, InputRequiredResult), (
                f"round 1 of summarise on replica A should ask for a sampling answer, got {type(first).__name__}")
            reply = CreateMessageResult(role="assistant", model="m", content=TextContent(type="text", text=marker))
            answers: dict[str, Any] = {key: reply for key in first.input_requests or {}}
            for label, url in (("same keys", b_url), ("other keys", c_url)):
                async with desk_client(url, desk, sampling_callback=declare) as other:
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
    heard: list[Any] = []
    async with redis_server(binary, tmp_path / "redis") as url:
        bus = {"redis_url": url, "bus_channel": f"desk-{word()}"}
        with own_errors():
            async with serve(target, desk_settings(target, desk, replica="a" + secrets.token_hex(2), **bus)) as a_url, \
                    serve(target, desk_settings(target, desk, replica="b" + secrets.token_hex(2), **bus)) as b_url:
                ready = anyio.Event()

                async def listen() -> None:
                    async with desk_client(a_url, desk) as client, \
                            client.listen(resource_subscriptions=[NOTES]) as subscription:
                        ready.set()
                        async for event in subscription:
                            heard.append(event)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(listen)
                    with anyio.fail_after(8):
                        await ready.wait()
                    async with desk_client(b_url, desk, elicitation_callback=accept_filing) as writer:
                        await call_ok(writer, "file_note", {"title": f"note {word()}", "text": sentence()})
                    with anyio.move_on_after(4):
                        while not heard:
                            await anyio.sleep(0.02)
                    tg.cancel_scope.cancel()
    assert any(getattr(event, "uri", None) == NOTES for event in heard), (
        f"a client listening for {NOTES} on replica A never heard of the note filed on replica B (heard {heard}): "
        f"the event must travel through Redis, so both replicas need the Redis bus, running")


@check("the installed research-desk-server serves the whole desk over stdio, both eras, protocol-only stdout", points=3,
       hint="What users run is the wheel's research-desk-server command (research_desk.server:main). main() with no "
            "transport serves stdio from the server built without HTTP parts. Log through logging (stderr); a "
            "print() or a stdout log handler puts a line on the wire that no client can parse.")
async def test_stdio_both_eras(target: Target, desk: Desk, tmp_path: Path,
                               tmp_path_factory: pytest.TempPathFactory) -> None:
    marker, model_name = f"summary {word()}", f"model-{word(low=4, high=4)}"
    inside = random.choice(desk.names)
    # The wheel of this very project, installed offline into a fresh environment (lesson 8's build, made
    # where student code runs).
    venv = build(target, tmp_path_factory).require().venv
    assert venv is not None  # require() returned: the wheel is installed there
    command = venv / "bin" / "research-desk-server"
    assert target.library("os.path").isfile(str(command)), (
        "installing the wheel made no `research-desk-server` command: keep it in [project.scripts] of your "
        "pyproject.toml")
    env = target.env({"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_LOG_LEVEL": "INFO",
                      "RESEARCH_DESK_TOKEN": desk.token, "RESEARCH_DESK_PROGRESS_INTERVAL": "0",
                      "PYTHONUNBUFFERED": "1"})  # a stray write shows at once
    env.pop("PYTHONPATH")  # the installed package, not the source tree
    report: dict[str, dict[str, Any]] = {}
    errlogs = {mode: log_file(tmp_path) for mode in MODES}

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
                          sampling_callback=Model(marker, model_name), read_timeout_seconds=15) as client:
            got["version"] = client.protocol_version
            got["tools"] = {t.name for t in (await client.list_tools()).tools}
            got["inside"] = text_of(await call_ok(client, "read_file", {"path": inside}))
            outside = await client.call_tool("read_file", {"path": str(desk.secret_file)})
            got["outside"] = (outside.is_error, text_of(outside))
            got["summary"] = (await call_ok(client, "summarise", {"text": sentence() + " " + sentence()})
                              ).structured_content
            got["index"] = (await call_ok(client, "index_documents", {}, progress_callback=on_progress)
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
        logs = " | ".join(last_line(errlogs[m]) for m in MODES)
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


@check("the command refuses unsafe settings, serves HTTP where its flags say; the uvicorn factory serves the "
       "configured desk", points=2,
       hint="main() turns a SettingsError into an argparse error (usage and one error line on stderr, exit code 2) "
            "before serving anything, and with --transport http runs uvicorn on the configured host and port (flags "
            "win over variables). build_app() with no argument reads the process environment, which is how "
            "`uvicorn --factory research_desk.server:build_app` configures each replica.")
async def test_command_line_and_factory(target: Target, desk: Desk, tmp_path: Path) -> None:
    port, main_port, elsewhere, refused_port = free_ports(4)
    main_replica = "m" + secrets.token_hex(3)
    logs = {name: log_file(tmp_path) for name in ("refused", "factory", "main")}
    refused = spawn(target, ["-m", f"{target.package}.server", "--transport", "http", "--port", str(refused_port)],
                     target.env({"RESEARCH_DESK_ROOTS": str(desk.root),
                                 "RESEARCH_DESK_PUBLIC_URL": f"https://{desk.host}/mcp"}),
                     tmp_path, logs["refused"])
    served = spawn(target, ["-m", "uvicorn", "--factory", f"{target.package}.server:build_app", "--host", "127.0.0.1",
                             "--port", str(port), "--no-access-log", "--log-level", "warning"],
                    target.env({"RESEARCH_DESK_ROOTS": str(desk.root), "RESEARCH_DESK_TOKEN": desk.token,
                                "RESEARCH_DESK_REPLICA": desk.replica}), tmp_path, logs["factory"])
    # main() itself over HTTP: the transport from a flag, the port from a flag over a variable naming another one
    by_main = spawn(target, ["-m", f"{target.package}.server", "--transport", "http", "--port", str(main_port)],
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
        stderr = log_text(logs["refused"])
        assert refused.returncode == 2, (
            f"`python -m {target.package}.server --transport http` with a public URL and no token exited with "
            f"{refused.returncode}, expected 2 (a refused setting). Its stderr ended: {last_line(logs['refused'])}")
        assert "RESEARCH_DESK_TOKEN" in stderr and not stdout.strip(), (
            "the refusal should be an error on stderr naming RESEARCH_DESK_TOKEN, and nothing on stdout")
        for label, process, at, how in (
                ("factory", served, port, f"`uvicorn --factory {target.package}.server:build_app --port {port}`"),
                ("main", by_main, main_port, f"`python -m {target.package}.server --transport http --port {main_port}` "
                                             f"(with RESEARCH_DESK_PORT={elsewhere}, which the flag overrides)")):
            def exited(process: subprocess.Popen[bytes] = process) -> bool:
                return process.poll() is not None

            if not await wait_for_health(at, exited):
                pytest.fail(f"{how} exited ({process.returncode}): {last_line(logs[label])}")
            local = Desk(root=desk.root, private=desk.private, secret=desk.secret, texts=desk.texts, token=desk.token,
                         host=f"127.0.0.1:{at}")
            with own_errors(), anyio.fail_after(10):
                async with desk_client(f"http://127.0.0.1:{at}/mcp", local) as client:
                    info[label] = (await call_ok(client, "replica_info", {})).structured_content or {}
                    if label == "factory":
                        listed = {t.name for t in (await client.list_tools()).tools}
    finally:
        for process in (refused, served, by_main):
            stop(process)
        for log in logs.values():
            log.close()
    assert info["factory"].get("replica") == desk.replica, (
        f"the factory's server reported replica {info['factory'].get('replica')!r}, expected {desk.replica!r} from "
        f"RESEARCH_DESK_REPLICA: build_app() must read its settings from the environment")
    assert listed >= EXPECTED_TOOLS, f"the factory's server does not list {sorted(EXPECTED_TOOLS - listed)}"
    assert info["main"].get("replica") == main_replica, (
        f"`python -m {target.package}.server --transport http` answered as replica {info['main'].get('replica')!r}, "
        f"expected {main_replica!r} from RESEARCH_DESK_REPLICA: serve the app made from these settings "
        "(build_app(settings))")
