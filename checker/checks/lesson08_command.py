"""Lesson 8 checks, the command: its settings, its logging, and what it serves on stdio and HTTP.

They call `load_settings` and `configure_logging` where student code runs, and run
`python -m research_desk` from the graded edition as a real subprocess (support/lesson08_process.py),
stopping every process they start.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from checker.checks.kit.eras import MODES
from checker.checks.kit.processes import free_ports, log_file, wait_for_port
from checker.checks.kit.text import word
from checker.checks.support.lesson08 import SCRIPT, edition_version
from checker.checks.support.lesson08 import workspace as workspace  # the fixture, for pytest
from checker.checks.support.lesson08_build import last_line
from checker.checks.support.lesson08_process import (
    LEVELS,
    exchange_over_stdio,
    first_line,
    log_tail,
    logging_probe,
    run_modules,
    settings_outcome,
    stderr_tail,
)
from checker.marks import check
from checker.target import Target

pytestmark = pytest.mark.anyio



@check(
    "--help and --version answer without starting a server",
    points=2,
    hint="argparse gives you both: a parser with a help text per option (name its RESEARCH_DESK_* variable too), "
    "and action='version'. Neither may start serving or write anything but their answer.",
)
async def test_help_and_version(target: Target, tmp_path: Path) -> None:
    version = edition_version(target)
    shown, helped = run_modules(target, [["--version"], ["--help"]], cwd=tmp_path)
    assert shown.returncode == 0, f"--version exited with {shown.returncode}: {last_line(shown.stderr)}"
    assert shown.stdout.strip() == f"{SCRIPT} {version}", (
        f"--version should print `{SCRIPT} {version}`, it printed {shown.stdout.strip()!r}"
    )
    assert helped.returncode == 0, f"--help exited with {helped.returncode}: {last_line(helped.stderr)}"
    text = helped.stdout
    assert SCRIPT in first_line(text), (
        f"the usage line should name the command `{SCRIPT}` (ArgumentParser(prog=...)), got {first_line(text)!r}"
    )
    for option, variable in (
        ("--transport", "RESEARCH_DESK_TRANSPORT"),
        ("--host", "RESEARCH_DESK_HOST"),
        ("--port", "RESEARCH_DESK_PORT"),
        ("--root", "RESEARCH_DESK_ROOTS"),
        ("--log-level", "RESEARCH_DESK_LOG_LEVEL"),
        ("--version", ""),
    ):
        assert option in text, f"--help does not mention {option}"
        assert variable in text, f"--help does not say that {variable} sets {option}: users of a host config need it"


@check(
    "settings come from defaults, then RESEARCH_DESK_* variables, then flags",
    points=3,
    hint="Read os.environ-style variables first and let a flag given on the command line win; leave argparse "
    "defaults at None so you can tell 'not given' from 'given'. Several roots are split with os.pathsep.",
)
async def test_settings_precedence(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    folders = [tmp_path / word(rng) for _ in range(4)]
    for folder in folders:
        folder.mkdir(exist_ok=True)

    def load(argv: list[str], env: dict[str, str]) -> Any:
        try:
            return main.load_settings(argv, env)
        except SystemExit as exc:
            pytest.fail(f"load_settings({argv}, {env}) exited ({exc.code}) on valid settings")

    defaults = load(["--root", str(folders[0])], {})
    assert (defaults.transport, defaults.host, defaults.port, defaults.log_level) == (
        "stdio",
        "127.0.0.1",
        8000,
        "WARNING",
    ), f"with no variables and no flags, expect stdio on 127.0.0.1:8000 at WARNING, got {defaults}"
    env_port, flag_port = rng.randint(1024, 30000), rng.randint(30001, 65000)
    env_host = f"127.0.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    level = rng.choice(["debug", "info", "error"])
    mixed = level[0].upper() + level[1:]  # neither all lower nor all upper case: any case is allowed
    env = {
        "RESEARCH_DESK_TRANSPORT": "http",
        "RESEARCH_DESK_HOST": env_host,
        "RESEARCH_DESK_PORT": str(env_port),
        "RESEARCH_DESK_ROOTS": os.pathsep.join(str(f) for f in folders[:2]),
        "RESEARCH_DESK_LOG_LEVEL": mixed,
        "UNRELATED_PORT": "1",
    }
    from_env = load([], env)
    assert from_env.transport == "http" and from_env.host == env_host and from_env.port == env_port, (
        f"the RESEARCH_DESK_* variables were not applied: got {from_env}"
    )
    assert [Path(r) for r in from_env.roots] == folders[:2], (
        f"RESEARCH_DESK_ROOTS holds two folders separated by {os.pathsep!r}; got roots {from_env.roots}"
    )
    assert from_env.log_level == env["RESEARCH_DESK_LOG_LEVEL"].upper(), (
        f"RESEARCH_DESK_LOG_LEVEL={env['RESEARCH_DESK_LOG_LEVEL']} should give {env['RESEARCH_DESK_LOG_LEVEL'].upper()}"
    )
    flags = [
        "--transport",
        "stdio",
        "--port",
        str(flag_port),
        "--root",
        str(folders[2]),
        "--root",
        str(folders[3]),
        "--log-level",
        "critical",
    ]
    from_flags = load(flags, env)
    assert from_flags.transport == "stdio" and from_flags.port == flag_port and from_flags.log_level == "CRITICAL", (
        f"a flag must win over its variable: got {from_flags}"
    )
    assert [Path(r) for r in from_flags.roots] == folders[2:], (
        f"--root flags replace RESEARCH_DESK_ROOTS, got {from_flags.roots}"
    )
    assert from_flags.host == env_host, "a variable still applies when its flag is not given (host)"
    flag_host = f"127.1.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    with_host = load(["--host", flag_host], env)
    assert with_host.host == flag_host and with_host.port == env_port, (
        f"--host {flag_host} must win over RESEARCH_DESK_HOST={env_host} (and the port still come from its "
        f"variable): got host {with_host.host!r}, port {with_host.port!r}"
    )
    missing = tmp_path / f"missing-{rng.randint(1000, 9999)}"
    for argv, bad_env in (
        ([], {**env, "RESEARCH_DESK_PORT": word(rng)}),
        (["--root", str(missing)], {}),
        ([], {"RESEARCH_DESK_ROOTS": str(missing)}),
        ([], {**env, "RESEARCH_DESK_TRANSPORT": "carrier-pigeon"}),
    ):
        try:
            main.load_settings(argv, bad_env)
        except SystemExit as exc:
            assert exc.code == 2, f"a bad setting should exit with code 2 (usage error), got {exc.code}"
        else:
            pytest.fail(
                f"load_settings accepted a bad setting (argv={argv}, "
                f"{ {k: v for k, v in bad_env.items() if k.startswith('RESEARCH_DESK_')} })"
            )


@check(
    "load_settings draws the lines exactly: ports 1-65535, roots that are folders, folder names kept whole",
    points=2,
    hint="A TCP port is 1 to 65535, both ends included, wherever it came from (flag or variable). A root must be "
    "an existing folder: a file is refused too. RESEARCH_DESK_ROOTS is split on os.pathsep only, so folder "
    "names keep their spaces, commas and accents.",
)
async def test_settings_boundaries(target: Target, tmp_path: Path) -> None:
    main = target.module("__main__")
    rng = random.Random()
    root = ["--root", str(tmp_path)]
    for port in (1, 65535):
        for argv, env in ((root + ["--port", str(port)], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = settings_outcome(main, argv, env)
            assert code is None and settings.port == port, (
                f"port {port} ({'--port' if env == {} else 'RESEARCH_DESK_PORT'}) should be accepted: 1-65535 are "
                f"all ports; got {'exit code ' + str(code) if code is not None else 'port ' + repr(settings.port)}"
            )
    for port in (0, 65536, -rng.randint(1, 999)):
        for argv, env in ((root + [f"--port={port}"], {}), (root, {"RESEARCH_DESK_PORT": str(port)})):
            settings, code = settings_outcome(main, argv, env)
            assert code == 2, (
                f"port {port} ({'--port' if env == {} else 'RESEARCH_DESK_PORT'}) is not a TCP port (1-65535): "
                f"expected exit code 2, got {'acceptance' if code is None else f'exit code {code}'}"
            )
    folders = [tmp_path / name for name in ("my notes", "q&a, drafts", "semi;colon", "caf\u00e9 \u7814\u7a76")]
    for folder in folders:
        folder.mkdir()
    env = {"RESEARCH_DESK_ROOTS": os.pathsep.join(str(f) for f in folders)}
    settings, code = settings_outcome(main, [], env)
    assert code is None and [Path(r) for r in settings.roots] == folders, (
        f"RESEARCH_DESK_ROOTS named the folders {[f.name for f in folders]}, joined with {os.pathsep!r}; got "
        f"{'exit code ' + str(code) if code is not None else [str(r) for r in settings.roots]}: "
        "split on os.pathsep only"
    )
    document = folders[0] / "a-document.md"
    document.write_text("# not a folder\n")
    for argv, bad in (
        (["--root", str(document)], {}),
        ([], {"RESEARCH_DESK_ROOTS": str(document)}),
        ([], {"RESEARCH_DESK_ROOTS": os.pathsep.join([str(folders[1]), str(document)])}),
    ):
        settings, code = settings_outcome(main, argv, bad)
        assert code == 2, (
            f"{document.name} exists but is a file, so it cannot be a root (`{' '.join(argv) or bad}`): expected "
            f"exit code 2, got {'acceptance' if code is None else f'exit code {code}'}"
        )


@check(
    "configure_logging sends records at or above the level to stderr, once each, with level and logger",
    points=2,
    hint="Give the root logger exactly one handler, a StreamHandler on sys.stderr (replace the list, do not "
    "append: a second call must not double every line, and an old handler must stop), set the root's level, "
    "and format lines with the level name and the logger's name.",
)
async def test_logging_to_stderr(target: Target) -> None:
    main = target.module("__main__")
    rng = random.Random()
    for level in ("INFO", "ERROR"):  # one below the logging module's default (WARNING), one above it
        names = [f"research_desk.{word(rng)}", f"{word(rng)}.client"]
        records = [(names[i % 2], lvl, f"{lvl.lower()}-{word(rng, 8, 12)}") for i, lvl in enumerate(LEVELS)]
        seen = logging_probe(target, main, level, records)
        assert not seen["error"], f"configure_logging({level!r}) raised {seen['error']}"
        assert not seen["stdout"], (
            f"logging wrote to stdout ({seen['stdout'].strip()[:120]!r}): on stdio that is the protocol stream"
        )
        lines = seen["stderr"].splitlines()
        for name, record_level, message in records:
            shown = [line for line in lines if message in line]
            if LEVELS.index(record_level) < LEVELS.index(level):
                assert not shown, (
                    f"after configure_logging({level!r}), a {record_level} record still reached "
                    f"stderr: {shown[0][:160]!r}"
                )
                continue
            assert shown, (
                f"after configure_logging({level!r}), a {record_level} record from logger {name!r} never "
                f"reached stderr: records at or above the level must be shown (set the root's level)"
            )
            assert len(shown) == 1, (
                f"after configure_logging was called twice, one {record_level} record appeared {len(shown)} times: "
                f"each call added a handler instead of replacing them (the root logger has {seen['handlers']} "
                f"handlers)"
            )
            assert record_level in shown[0] and name in shown[0], (
                f"a log line should show the level and the logger's name; got {shown[0][:160]!r}"
            )
        assert not seen["stale"], (
            "a handler that was on the root logger before configure_logging still received records: replace the "
            "root logger's handlers, do not add one beside them"
        )


@check(
    "on stdio, stdout carries only protocol messages and logs go to stderr",
    points=3,
    hint="stdout is the JSON-RPC stream: one print() (at import, or before serving) is a line the client cannot "
    "parse, and hosts may drop the connection. Log with the logging module to stderr instead.",
)
async def test_stdout_is_protocol_only(target: Target, workspace: tuple[Path, list[str]], tmp_path: Path) -> None:
    root, names = workspace
    rng = random.Random()
    args = ["--root", str(root)]  # a flag ...
    env = target.env({"RESEARCH_DESK_LOG_LEVEL": "info"})  # ... and a variable, as a host config sets both
    requests: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": f"probe-{word(rng)}", "version": "1.0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "list_documents", "arguments": {}}},
    ]
    stdout, stderr, returncode = await exchange_over_stdio(target, args, env, tmp_path, requests)
    lines = [line for line in stdout.splitlines() if line.strip()]
    junk = []
    for line in lines:
        try:
            ok = json.loads(line).get("jsonrpc") == "2.0"
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            junk.append(line)
    assert not junk, (
        f"the server wrote {junk[0][:80]!r} to stdout. On stdio, stdout carries JSON-RPC messages only: the client "
        f"tries to parse that line as a message and fails (many hosts then drop the server). Use logging, which "
        f"writes to stderr, and never print()."
    )
    replies = {m.get("id"): m for m in map(json.loads, lines)}
    assert 1 in replies, (
        f"the server never answered initialize over stdio (exit code {returncode}){stderr_tail(stderr)}"
    )
    assert 2 in replies and "result" in replies[2], f"tools/call list_documents got no result{stderr_tail(stderr)}"
    result = replies[2]["result"]
    assert (result.get("structuredContent") or {}).get("result") == names, (
        f"list_documents over stdio returned {result.get('structuredContent')}, expected {names}"
    )
    assert str(root) in stderr or "research-desk" in stderr.lower() or "INFO" in stderr, (
        "at log level INFO the server logged nothing to stderr: log one line saying what it serves (with the logging "
        "module, configured to write to stderr)"
    )


@check(
    "--transport http serves Streamable HTTP on the configured host and port",
    points=2,
    hint="For http, run the server with transport='streamable-http' and pass host and port from the settings; "
    "the endpoint is /mcp. The same settings may come from RESEARCH_DESK_* variables.",
)
async def test_http_transport(target: Target, workspace: tuple[Path, list[str]], tmp_path: Path) -> None:
    from mcp import Client

    root, names = workspace
    port, elsewhere = free_ports(2)
    # Settings from both places a host passes them: the transport and the roots in variables, the address in
    # flags, and a variable naming another port, which the flag overrides.
    args = ["--port", str(port), "--host", "127.0.0.1"]
    extra = {"RESEARCH_DESK_TRANSPORT": "http", "RESEARCH_DESK_ROOTS": str(root), "RESEARCH_DESK_PORT": str(elsewhere)}
    errlog = log_file(tmp_path)
    command = target.command([sys.executable, "-m", target.package, *args])
    process = subprocess.Popen(
        command, cwd=tmp_path, env=target.env(extra), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog
    )
    try:
        if not await wait_for_port(port, process, timeout=12):
            if process.poll() is not None:
                pytest.fail(
                    f"the server exited (code {process.returncode}) instead of serving HTTP on port {port} "
                    f"(--port {port}, RESEARCH_DESK_TRANSPORT=http){log_tail(errlog)}"
                )
            pytest.fail(
                f"nothing listened on 127.0.0.1:{port} after 12 s, although `--port {port}` was given "
                f"(and RESEARCH_DESK_PORT={elsewhere}, which the flag overrides; "
                f"RESEARCH_DESK_TRANSPORT=http){log_tail(errlog)}"
            )
        for mode, protocol in MODES.items():
            with anyio.fail_after(10):
                async with Client(f"http://127.0.0.1:{port}/mcp", mode=mode) as client:
                    listed = await client.call_tool("list_documents", {})
                    era = client.protocol_version
            assert era == protocol, f"[{mode}] expected protocol {protocol} over HTTP, got {era}"
            assert (listed.structured_content or {}).get("result") == names, (
                f"[{mode}] list_documents over HTTP returned {listed.structured_content}, expected {names}"
            )
    finally:
        process.kill()  # nothing is asked of it once the clients are done: no graceful drain to wait out
        process.wait()
        errlog.close()


@check(
    "a bad setting stops the command with exit code 2 and one clear line on stderr",
    points=2,
    hint="Validate every setting before serving; report a problem the argparse way (parser.error: usage plus "
    "one line on stderr, exit code 2) and name the flag or variable to fix. Nothing on stdout.",
)
async def test_bad_settings_exit_2(target: Target, tmp_path: Path) -> None:
    rng = random.Random()
    missing = tmp_path / f"no-such-folder-{rng.randint(1000, 9999)}"
    bad_port = word(rng)
    cases = [
        (["--root", str(missing)], {}, str(missing)),
        ([], {"RESEARCH_DESK_ROOTS": str(missing)}, str(missing)),
        (["--root", str(tmp_path)], {"RESEARCH_DESK_PORT": bad_port}, "RESEARCH_DESK_PORT"),
        (["--root", str(tmp_path), "--transport", "carrier-pigeon"], {}, "--transport"),
    ]
    runs = run_modules(target, [args for args, _, _ in cases], envs=[env for _, env, _ in cases], cwd=tmp_path)
    for (args, env, named), done in zip(cases, runs, strict=True):
        shown = " ".join(args + [f"{k}={v}" for k, v in env.items()])
        assert done.returncode == 2, (
            f"`research-desk {shown}` should stop with exit code 2 (a usage error), it exited with {done.returncode}"
            f"{': ' + last_line(done.stderr) if done.stderr.strip() else ''}"
        )
        assert not done.stdout.strip(), f"`research-desk {shown}` wrote to stdout: {done.stdout.strip()[:80]!r}"
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        assert named in last, (
            f"`research-desk {shown}`: the last line on stderr should name {named!r} so the user knows what to fix; "
            f"got {last[:200]!r}"
        )
        assert "Traceback" not in done.stderr, (
            f"`research-desk {shown}` crashed with a traceback instead of a clear line"
        )
