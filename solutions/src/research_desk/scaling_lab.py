"""Lesson 6's lab bench: a fleet of real replicas, nginx and Redis on one machine, and load to
drive through them.

None of this is the lesson (that is `scaling.py`): it is the given tooling the notebook and
`bench/scaling_load.py` use to start `uvicorn --factory research_desk.scaling:build_app`
processes on loopback ports, put nginx (rendered from `deploy/nginx-sticky.conf`) or Redis in
front of or behind them, and count which replica answered each call. Every process it starts is
stopped when its `async with` block ends.
"""

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from research_desk.scaling import REPLICA_ENV, render_nginx_config


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 6) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


async def _wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, what: str,
                         timeout: float = 20) -> None:
    with anyio.fail_after(timeout):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited with code {process.returncode}:\n{_tail(log)}")
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
                continue
            await stream.aclose()
            return


async def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 5
    for process in processes:
        while process.poll() is None and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            process.wait()


@dataclass
class LocalReplica:
    """One replica: a real `uvicorn` process on a loopback port."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


def _package_root() -> str:
    import research_desk

    return str(Path(research_desk.__file__).resolve().parent.parent)


async def _wait_for_health(replica: LocalReplica, timeout: float = 30) -> None:
    """Until GET /health answers 200 (the port alone opens before the app has loaded)."""
    import httpx2

    async with httpx2.AsyncClient(timeout=2) as http:
        with anyio.fail_after(timeout):
            while True:
                if replica.process.poll() is not None:
                    raise RuntimeError(f"replica {replica.name} exited with code {replica.process.returncode}:\n"
                                       f"{_tail(replica.log)}")
                try:
                    if (await http.get(f"http://127.0.0.1:{replica.port}/health")).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.05)


@asynccontextmanager
async def run_replicas(names: Sequence[str], env: Mapping[str, str] | None = None, *,
                       per_replica: Mapping[str, Mapping[str, str]] | None = None,
                       uvicorn_args: Sequence[str] = (),
                       workdir: Path | None = None) -> AsyncIterator[list[LocalReplica]]:
    """Start one `python -m uvicorn --factory research_desk.scaling:build_app` process per name (in
    parallel), wait until each answers GET /health, and stop them all when the block ends.

    Every replica gets `env` plus RESEARCH_DESK_REPLICA=<name> plus `per_replica[name]`, imports
    the same research_desk as this process, and writes its output to <workdir>/replica-<name>.log.
    """
    folder = Path(workdir or tempfile.mkdtemp(prefix="desk-replicas-"))
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "SSL_CERT_FILE")}
    base["PYTHONPATH"] = _package_root()
    started: list[LocalReplica] = []
    try:
        for name in names:
            port = free_port()
            log = folder / f"replica-{name}.log"
            child_env = {**base, **(env or {}), REPLICA_ENV: name, **((per_replica or {}).get(name, {}))}
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "--factory", "research_desk.scaling:build_app",
                     "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log",
                     *uvicorn_args],
                    env=child_env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            started.append(LocalReplica(name, port, process, log))
        async with anyio.create_task_group() as tg:
            for replica in started:
                tg.start_soon(_wait_for_health, replica)
        yield started
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([r.process for r in started])


@asynccontextmanager
async def run_nginx(replicas: Mapping[str, int], *, template: Path | None = None,
                    workdir: Path | None = None) -> AsyncIterator[str]:
    """nginx on a free loopback port in front of `replicas` (default template: deploy/nginx-sticky.conf).

    Yields the public MCP URL; the working folder holds nginx.conf, access.log and error.log.
    """
    binary = shutil.which("nginx")
    if binary is None:
        raise RuntimeError("nginx is not installed: sudo apt-get install nginx (or brew install nginx)")
    prefix = Path(workdir or tempfile.mkdtemp(prefix="desk-nginx-"))
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(render_nginx_config(replicas, port=port, prefix=prefix, template=template))
    log = prefix / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_for_port(port, process, prefix / "error.log", "nginx", timeout=10)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([process])


@asynccontextmanager
async def run_redis(workdir: Path | None = None) -> AsyncIterator[str]:
    """A throwaway redis-server on a free loopback port (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: sudo apt-get install redis-server (or brew install redis)")
    folder = Path(workdir or tempfile.mkdtemp(prefix="desk-redis-"))
    port = free_port()
    log = folder / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_for_port(port, process, log, "redis-server", timeout=10)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with anyio.CancelScope(shield=True):
            await _stop([process])


@dataclass
class LoadReport:
    """What one load run measured."""

    label: str
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    replicas: Counter[str] = field(default_factory=Counter)
    first_error: str = ""

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")

    def __str__(self) -> str:
        spread = " ".join(f"{name}={count}" for name, count in sorted(self.replicas.items()))
        text = (f"{self.label:<34} {self.throughput:7.1f} calls/s  median {self.median_ms:6.1f} ms  "
                f"ok {self.calls:5d}  errors {self.errors:4d}  [{spread}]")
        return text + (f"\n{'':34} first error: {self.first_error}" if self.first_error else "")


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def legacy_session_outcomes(url: str, sessions: int = 10, calls: int = 3) -> dict[str, int]:
    """Open `sessions` legacy sessions one after another, each making `calls` replica_info calls.

    Returns a count per outcome: "ok on a" (served by replica a only), "ok on a+b" (a session
    that moved, which only stateless serving allows), or "failed: <error>". Each session is
    bounded in time: against the wrong replica a legacy client can hang rather than fail.
    """
    from mcp import Client

    outcome: Counter[str] = Counter()
    for _ in range(sessions):
        try:
            with anyio.fail_after(5):
                async with Client(url, mode="legacy") as client:
                    served: set[str] = set()
                    for _ in range(calls):
                        result = await client.call_tool("replica_info", {})
                        if result.structured_content is None:
                            raise RuntimeError("replica_info answered without structured content")
                        served.add(str(result.structured_content["replica"]))
            outcome["ok on " + "+".join(sorted(served))] += 1
        except Exception as exc:  # noqa: BLE001 - the failure is the result
            outcome[f"failed: {_leaf(exc)}"] += 1
    return dict(outcome)


async def measure_load(urls: Sequence[str], *, label: str = "", mode: str = "auto", clients: int = 8,
                       seconds: float = 3.0, max_calls: int = 5000, calls_per_session: int = 20) -> LoadReport:
    """Drive `clients` concurrent MCP clients calling replica_info for `seconds` (or `max_calls` in all).

    Client i connects to urls[i % len(urls)] and opens a new connection (a new legacy session)
    every `calls_per_session` calls or after an error. Loopback only; bounded in time and count.
    """
    from mcp import Client

    report = LoadReport(label or f"{mode} x{clients} over {len(urls)} url(s)")
    deadline = time.monotonic() + seconds
    started = time.monotonic()

    async def one_client(index: int) -> None:
        url = urls[index % len(urls)]
        while time.monotonic() < deadline and report.calls + report.errors < max_calls:
            try:
                with anyio.fail_after(max(1.0, deadline - time.monotonic() + 5)):
                    async with Client(url, mode=mode) as client:
                        for _ in range(calls_per_session):
                            if time.monotonic() >= deadline or report.calls + report.errors >= max_calls:
                                break
                            t0 = time.perf_counter()
                            result = await client.call_tool("replica_info", {})
                            report.latencies_ms.append((time.perf_counter() - t0) * 1000)
                            report.calls += 1
                            report.replicas[(result.structured_content or {}).get("replica", "?")] += 1
            except Exception as exc:  # noqa: BLE001 - counted, shown once, and the client reconnects
                leaf = _leaf(exc)
                report.errors += 1
                report.first_error = report.first_error or f"{type(leaf).__name__}: {leaf}"
                await anyio.sleep(0.01)

    async with anyio.create_task_group() as tg:
        for index in range(clients):
            tg.start_soon(one_client, index)
    report.seconds = time.monotonic() - started
    return report
