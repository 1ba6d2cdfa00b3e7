"""Real services a check starts around the student's servers: Redis, nginx, and a server's /health.

The check finds the program itself (`installed_or_skip("redis-server")`, so a missing service is a
skip with install advice and tests/test_registry.py sees which programs a lesson needs) and hands
its path here. Every service runs on a free loopback port, in a folder of the check's, and is
stopped when the check's `async with` ends, passed or failed.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
import pytest

from checker.checks.kit.processes import free_port, stop_all, wait_for_port
from checker.target import Target

__all__ = ["nginx_server", "redis_server", "wait_for_health"]


@asynccontextmanager
async def redis_server(binary: str, folder: Path) -> AsyncIterator[str]:
    """redis-server (`binary`) on a free loopback port, working in `folder`; yields its redis:// URL.

    It runs outside the sandbox, yet student code reaches it over loopback: only pub/sub and data
    commands are left, none that loads code or moves its files (Redis 6 still allows MODULE LOAD
    by default). Nothing is saved to disk.
    """
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    locked = [arg for command in ("MODULE", "CONFIG", "DEBUG") for arg in ("--rename-command", command, "")]
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder), *locked],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not await wait_for_port(port, process, timeout=10):
            pytest.fail("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with anyio.CancelScope(shield=True):
            await stop_all([process])


@asynccontextmanager
async def nginx_server(target: Target, binary: str, conf: Path, port: int, what: str) -> AsyncIterator[None]:
    """nginx (`binary`) with the configuration `conf`, whose folder is its prefix and which listens on
    `port`; the check fails with the last line of its error.log (naming `what`) when nginx refuses it.

    A student's configuration may load modules, so nginx runs where student code runs
    (`target.command`). No `-e` (nginx >= 1.19.5 only): until it reads the configuration's own
    error_log, an nginx that cannot open its built-in log path says so on stderr and carries on.
    """
    prefix = conf.parent
    process = subprocess.Popen(target.command([binary, "-p", str(prefix), "-c", str(conf)]), env=target.env(),
                               cwd=prefix, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        if not await wait_for_port(port, process, timeout=10):
            if process.poll() is None:
                raise TimeoutError(f"nginx did not listen on port {port} within 10 s")
            try:
                log = target.read_text(prefix / "error.log").strip().splitlines()
            except OSError:
                log = []
            pytest.fail(f"nginx refused {what}: {log[-1] if log else 'no error log'}")
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await stop_all([process])


async def wait_for_health(port: int, ended: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Wait until GET http://127.0.0.1:`port`/health answers 200: True then, False as soon as
    `ended()` says the server's process is gone; TimeoutError after `timeout` seconds."""
    async with httpx2.AsyncClient(timeout=2) as http:
        with anyio.fail_after(timeout):
            while True:
                if ended():
                    return False
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        return True
                except httpx2.HTTPError:
                    pass
                await anyio.sleep(0.02)
