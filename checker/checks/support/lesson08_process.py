"""Lesson 8's plumbing for the desk's command (the checks in lesson08_command.py): run as a process,
spoken to over stdio, and its settings and logging probed where student code runs.

The command-line checks run `python -m research_desk` from the graded edition as a real
subprocess (`target.command`), and stop every process they start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import anyio
import pytest

from checker.checks.kit.processes import log_text
from checker.checks.support.lesson08 import SCRIPT
from checker.target import Target

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def stderr_tail(stderr: str, lines: int = 6) -> str:
    """The last lines the server wrote to stderr (where a traceback ends with the error itself)."""
    kept = [line for line in stderr.strip().splitlines() if line.strip()][-lines:]
    return ("\nThe server's stderr ends with:\n" + "\n".join(line[:200] for line in kept)) if kept else ""


def log_tail(log: IO[str]) -> str:
    """`stderr_tail` of what a process wrote to its log file (`kit.processes.log_file`)."""
    return stderr_tail(log_text(log))


def run_module(
    target: Target, *args: str, env: dict[str, str] | None = None, cwd: Path, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    """`python -m research_desk ARGS` from the graded edition, with a clean environment."""
    try:
        return subprocess.run(
            target.command([sys.executable, "-m", target.package, *args]),
            cwd=cwd,
            env=target.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"`python -m {target.package} {' '.join(args)}` did not exit within {timeout:g} s: it should "
            f"answer and exit without starting a server"
        )


def run_modules(
    target: Target, argvs: list[list[str]], *, envs: list[dict[str, str]] | None = None, cwd: Path
) -> list[subprocess.CompletedProcess[str]]:
    """`run_module` for each of `argvs` (with the matching `envs`), all at once: each is a process of
    its own that answers and exits, so none waits for another. Results in the order given."""
    with ThreadPoolExecutor(max_workers=len(argvs)) as pool:
        runs = [pool.submit(run_module, target, *argv, env=env, cwd=cwd)
                for argv, env in zip(argvs, envs or [{}] * len(argvs), strict=True)]
        return [run.result() for run in runs]


def first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "")


def command_line(argv: list[str], env: dict[str, str]) -> str:
    """How a user would type the command: the variables, the command, the flags."""
    return " ".join([*(f"{k}={v}" for k, v in env.items()), SCRIPT, *argv])


def settings_outcome(
    main: Any, argv: list[str], env: dict[str, str], advice: str = " (a bad setting is parser.error, exit code 2)"
) -> tuple[Any, int | str | None]:
    """(settings, None) when load_settings accepts, (None, exit code) when it exits; other errors fail
    (with `advice` after what was raised)."""
    try:
        return main.load_settings(argv, env), None
    except SystemExit as exc:
        return None, exc.code
    except Exception as exc:  # noqa: BLE001 - the student's crash, reported as a failure
        pytest.fail(f"`{command_line(argv, env)}`: load_settings raised {type(exc).__name__}: {str(exc)[:200]}{advice}")


def logging_probe(target: Target, main: Any, level: str, records: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Call configure_logging twice over a stale root handler, log `records`; report what went where.

    Everything is done where student code runs, with objects of the standard library made
    there (three StringIO streams, a StreamHandler); what they caught is read back here.
    """
    io, logs, sys_ = target.library("io"), target.library("logging"), target.library("sys")
    root = logs.getLogger()
    saved = (root.handlers, root.level, sys_.stdout, sys_.stderr, sys_.__stdout__, sys_.__stderr__)
    out, err, stale = io.StringIO(), io.StringIO(), io.StringIO()
    try:
        sys_.stdout = out
        sys_.__stdout__ = out
        sys_.stderr = err
        sys_.__stderr__ = err
        root.handlers = [logs.StreamHandler(stale)]  # left by a library or an earlier basicConfig
        try:
            main.configure_logging(level)
            main.configure_logging(level)
        except Exception as exc:  # noqa: BLE001 - reported as an observation
            return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        for name, record_level, message in records:
            logs.getLogger(name).log(getattr(logs, record_level), "%s", message)
        handlers = root.handlers
        for handler in handlers:
            handler.flush()
        return {
            "error": "",
            "stdout": out.getvalue(),
            "stderr": err.getvalue(),
            "stale": stale.getvalue(),
            "handlers": len(handlers),
        }
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
        sys_.stdout, sys_.stderr, sys_.__stdout__, sys_.__stderr__ = saved[2:]


async def exchange_over_stdio(
    target: Target, args: list[str], env: dict[str, str], cwd: Path, requests: list[dict[str, Any]]
) -> tuple[str, str, int | None]:
    """Run `python -m research_desk ARGS` and speak to it over stdio by hand: the first request, then
    (once it is answered, or after 12 s) the others; then close its stdin, which ends a stdio server.
    Returns what it wrote to stdout and to stderr, and its exit code (None if it had to be killed)."""
    out, err = bytearray(), bytearray()
    process = await anyio.open_process(
        target.command([sys.executable, "-m", target.package, *args]), env=env, cwd=str(cwd)
    )
    try:

        async def drain(stream: Any, into: bytearray) -> None:
            async for chunk in stream:
                into.extend(chunk)

        async def send(message: dict[str, Any]) -> None:
            assert process.stdin is not None
            with contextlib.suppress(
                anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError
            ):  # the server already exited: the caller reports it with its stderr
                await process.stdin.send(json.dumps(message).encode() + b"\n")

        async def until(marker: bytes, seconds: float) -> None:
            with anyio.move_on_after(seconds):
                while marker not in out.replace(b" ", b"") and process.returncode is None:
                    await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(drain, process.stdout, out)
            tg.start_soon(drain, process.stderr, err)
            await send(requests[0])
            await until(f'"id":{requests[0]["id"]}'.encode(), 12)
            for message in requests[1:]:
                await send(message)
            await until(f'"id":{requests[-1]["id"]}'.encode(), 5)
            assert process.stdin is not None
            await process.stdin.aclose()  # end of input: a stdio server shuts down
            with anyio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()
    return out.decode(errors="replace"), err.decode(errors="replace"), process.returncode
