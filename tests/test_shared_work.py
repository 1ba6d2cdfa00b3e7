"""What the runner shares to be fast must not change what a check sees.

- one default TLS context per warm process (`checker.host.warmup`): every HTTP client gets the
  same verifying context, and a CA store chosen through SSL_CERT_FILE is still read as asked;
- a uvicorn served by `serve_asgi` stops gracefully (its lifespan's shutdown runs, a response
  under way completes) when asked;
- checks that mostly waited last time run beside each other, within a cap, and the timings that
  say so are read from old and new records alike;
- the import probe runs beside the first checks, and stops them once it finds a broken module.

Timing is the business of `bench/`, never of a test: these pin behaviour only.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_http_clients_share_one_verifying_tls_context() -> None:
    out = _python("""
        import ssl, httpx2
        from checker.host.warmup import warm_up
        warm_up()
        a, b = httpx2.AsyncClient(), httpx2.AsyncClient()
        ctx = [c._transport._pool._ssl_context for c in (a, b)]
        print(ctx[0] is ctx[1], ctx[0].verify_mode == ssl.CERT_REQUIRED, ctx[0].check_hostname,
              len(ctx[0].get_ca_certs()) > 0 or ctx[0].cert_store_stats()["x509_ca"] > 0)
        unverified = httpx2.AsyncClient(verify=False)._transport._pool._ssl_context
        print(unverified is not ctx[0], unverified.verify_mode == ssl.CERT_NONE)
    """)
    assert out.split() == ["True"] * 6


def test_a_ca_store_named_by_the_environment_is_still_read(tmp_path: Path) -> None:
    """A client made after SSL_CERT_FILE names another bundle trusts that bundle, not the first one."""
    bundle = os.environ.get("SSL_CERT_FILE") or ssl.get_default_verify_paths().openssl_cafile
    if not bundle or not os.path.isfile(bundle):
        pytest.skip("this machine has no CA bundle file to name")
    text = Path(bundle).read_text(encoding="ascii", errors="replace")
    end = "-----END CERTIFICATE-----"
    if end not in text:
        pytest.skip(f"{bundle} holds no PEM certificate")
    one = tmp_path / "one.pem"
    one.write_text(text[text.index("-----BEGIN CERTIFICATE-----"):text.index(end) + len(end)] + "\n")
    out = _python(f"""
        import os, httpx2
        from checker.host.warmup import warm_up
        warm_up()
        first = httpx2.AsyncClient()._transport._pool._ssl_context
        os.environ["SSL_CERT_FILE"] = {str(one)!r}
        second = httpx2.AsyncClient()._transport._pool._ssl_context
        third = httpx2.AsyncClient()._transport._pool._ssl_context
        print(first is not second, second is third, second.cert_store_stats()["x509_ca"],
              first.cert_store_stats()["x509_ca"] > 1)
    """, env={"SSL_CERT_FILE": bundle})
    assert out.split() == ["True", "True", "1", "True"], out


def test_a_served_app_still_shuts_down_gracefully() -> None:
    out = _python("""
        import anyio
        from contextlib import asynccontextmanager
        from starlette.applications import Starlette
        from checker.host.serving import serve_asgi
        events = []

        @asynccontextmanager
        async def lifespan(app):
            events.append("up")
            yield
            await anyio.sleep(0.05)
            events.append("down")

        async def main():
            async with serve_asgi(Starlette(lifespan=lifespan)):
                events.append("served")
            print(" ".join(events))

        anyio.run(main)
    """)
    assert out.split() == ["up", "served", "down"]


def test_a_response_under_way_at_shutdown_still_completes() -> None:
    """The served block ends while a slow response is being made: the client still gets all of it,
    and the lifespan shuts down after it (uvicorn's graceful order, without its fixed waits)."""
    out = _python("""
        import anyio, httpx2
        from contextlib import asynccontextmanager
        from starlette.applications import Starlette
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from checker.host.serving import serve_asgi
        events = []

        async def slow(request):
            await anyio.sleep(0.3)
            events.append("answered")
            return PlainTextResponse("all of it")

        @asynccontextmanager
        async def lifespan(app):
            yield
            events.append("down")

        async def main():
            got = []
            async with anyio.create_task_group() as tg:
                async with serve_asgi(Starlette(routes=[Route("/slow", slow)], lifespan=lifespan), path="/slow") as url:
                    async def ask():
                        async with httpx2.AsyncClient() as http:
                            got.append((await http.get(url)).text)
                    tg.start_soon(ask)
                    await anyio.sleep(0.1)  # the request is under way
            print(" ".join(events), "|", got)

        anyio.run(main)
    """)
    assert out.strip() == "answered down | ['all of it']"


def _overlaps(tmp_path: Path, jobs: int, busy: dict[int, float] | None, tasks: int = 4) -> int:
    """The most tasks of `run_forked` that ran at once; each sleeps 0.3 s and logs its start and end."""
    from checker.sandbox.forking import run_forked
    from checker.sandbox.limits import Limits

    log = tmp_path / "log"

    def task(index: int) -> dict[str, str]:
        with log.open("a") as handle:
            handle.write(f"{time.monotonic()} +1\n")
        time.sleep(0.3)
        with log.open("a") as handle:
            handle.write(f"{time.monotonic()} -1\n")
        return {"outcome": "passed"}

    outcomes = run_forked([(i, (lambda i=i: task(i))) for i in range(tasks)], Limits(30, 512, 16), jobs=jobs, busy=busy)
    assert all(o.payload == {"outcome": "passed"} for o in outcomes.values())
    at_once = most = 0
    for _, change in sorted(line.split() for line in log.read_text().splitlines()):
        at_once += int(change)
        most = max(most, at_once)
    log.unlink()
    return most


@pytest.mark.skipif(sys.platform == "win32", reason="checks fork")
def test_checks_that_mostly_wait_run_beside_each_other(tmp_path: Path) -> None:
    """`busy`, each check's CPU over wall time last run, lets idle ones share a job's place, within
    a cap; without it, or for busy ones, `jobs` still means processes."""
    from checker.sandbox.forking import MAX_WAITING

    assert _overlaps(tmp_path, jobs=1, busy=None) == 1
    assert _overlaps(tmp_path, jobs=1, busy=dict.fromkeys(range(4), 1.0)) == 1
    assert _overlaps(tmp_path, jobs=1, busy=dict.fromkeys(range(4), 0.1)) == MAX_WAITING
    assert _overlaps(tmp_path, jobs=2, busy={0: 0.1, 1: 0.1, 2: 1.0, 3: 1.0}) >= 3


@pytest.mark.skipif(sys.platform == "win32", reason="checks fork")
def test_a_task_that_finds_the_rest_pointless_stops_the_batch(tmp_path: Path) -> None:
    """The import probe runs beside the first checks; once it finds a broken module, the checks
    still running are killed (with what they started) and the queued ones never start."""
    from checker.sandbox.forking import run_forked
    from checker.sandbox.limits import Limits
    from tests.conftest import process_alive

    def probe() -> dict[str, str]:
        time.sleep(0.3)
        return {"broken": "yes"}

    def check(index: int) -> dict[str, str]:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        (tmp_path / f"started-{index}").write_text(str(child.pid))
        time.sleep(30)
        (tmp_path / f"finished-{index}").touch()
        return {"outcome": "passed"}

    tasks = [("probe", probe), *((i, (lambda i=i: check(i))) for i in range(5))]
    started = time.monotonic()
    outcomes = run_forked(tasks, Limits(60, 512, 16), jobs=3,
                          stop_when=lambda key, outcome: key == "probe" and outcome.payload == {"broken": "yes"})
    assert time.monotonic() - started < 20
    assert list(outcomes) == ["probe"]
    pids = [int(p.read_text()) for p in tmp_path.glob("started-*")]
    assert len(pids) == 2, "two checks ran beside the probe; the other three never started"
    assert not list(tmp_path.glob("finished-*"))
    assert not any(process_alive(pid) for pid in pids), "what a stopped check started is gone too"
    quiet = run_forked([("probe", lambda: {"broken": ""}), ("a", lambda: {"outcome": "passed"})], Limits(30, 512, 16),
                       stop_when=lambda key, outcome: outcome.payload == {"broken": "yes"})
    assert set(quiet) == {"probe", "a"}, "a probe that finds nothing stops nothing"


def test_ports_chosen_together_are_different_and_free() -> None:
    """Servers a check starts side by side get ports of their own (one answering for two hid a
    replica that never started), and a server binding as uvicorn does can listen on each."""
    import socket

    from checker.target import free_ports

    ports = free_ports(32)
    assert len(set(ports)) == 32
    for port in ports:
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", port))
            server.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                pass


def test_a_chosen_port_goes_to_no_one_else_before_its_server_binds() -> None:
    """Between the choice and the server's bind, a sibling fork choosing ports, or any outgoing
    connection, must not get the port (a race that let another server answer for a replica)."""
    import socket

    from checker.target import free_ports

    held = set(free_ports(16))
    script = (
        "import socket, sys\n"
        "seen = set()\n"
        "listener = socket.create_server(('127.0.0.1', 0))\n"
        "for _ in range(3000):\n"
        "    with socket.socket() as s:\n"
        "        s.bind(('127.0.0.1', 0)); seen.add(s.getsockname()[1])\n"
        "    with socket.create_connection(listener.getsockname()) as c:\n"
        "        seen.add(c.getsockname()[1]); listener.accept()[0].close()\n"
        "print(' '.join(map(str, seen)))\n"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert held.isdisjoint(int(port) for port in other.stdout.split())
    with socket.socket() as plain, pytest.raises(OSError):  # refused while the port is held
        plain.bind(("127.0.0.1", next(iter(held))))


def test_past_timings_read_old_and_new_records(tmp_path: Path) -> None:
    """Timings from before CPU was recorded count as busy; nonsense is dropped, not fatal."""
    from checker.runner.lesson import TIMINGS, past_timings, save_timings
    from checker.runner.results import CheckResult

    (tmp_path / TIMINGS).write_text(json.dumps({"lesson-1": {"old": 0.5, "new": [2.0, 0.5], "odd": "x",
                                                             "zero": [0, 0], "short": [1.0]}}))
    assert past_timings(tmp_path, "lesson-1") == ({"old": 0.5, "new": 2.0}, {"old": 1.0, "new": 0.25})
    assert past_timings(tmp_path, "lesson-2") == ({}, {})
    save_timings(tmp_path, "lesson-2", [CheckResult("a", "A", 1, "passed", duration=0.4, cpu=0.1)])
    assert past_timings(tmp_path, "lesson-2") == ({"a": 0.4}, {"a": 0.25})
    (tmp_path / TIMINGS).write_text("{not json")
    assert past_timings(tmp_path, "lesson-1") == ({}, {})


def test_a_checks_reported_cpu_time_is_a_finite_number_or_nothing() -> None:
    """The ledger's sum crosses from a process that ran student code: nonsense counts as 0."""
    from checker.runner.worker import _seconds

    assert _seconds({"commands_cpu": "0.25"}, "commands_cpu") == 0.25
    for hostile in ("inf", "-inf", "nan", "-3", "1e999", "twelve", ""):
        assert _seconds({"commands_cpu": hostile}, "commands_cpu") == 0.0, hostile
    assert _seconds(None, "commands_cpu") == 0.0


def test_student_code_runs_with_the_garbage_collector_on(tmp_path: Path) -> None:
    """The worker starts with the collector off (its imports only make objects that live on); every
    check's fork, where student code runs, must have it on again."""
    from checker.runner.lesson import run_lesson
    from tests.conftest import COURSE, solutions_with_spy

    marks = tmp_path / "marks"
    marks.mkdir()
    spy = f"import gc as _gc, os as _os\nopen({str(marks)!r} + f'/{{_os.getpid()}}-{{_gc.isenabled()}}', 'w').close()\n"
    edition = solutions_with_spy(tmp_path, spy)
    result = run_lesson(COURSE, COURSE.lesson("1"), str(edition))
    assert result.ok, result.error or [c.message for c in result.checks if c.message]
    seen = {name.split("-")[1] for name in os.listdir(marks)}
    assert seen == {"True"}, f"student code ran with the collector off in {sorted(os.listdir(marks))}"
