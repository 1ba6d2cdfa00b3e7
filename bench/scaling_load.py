"""Lesson 6 load test: what replicas, proxies and sessions cost, measured on this machine.

    PYTHONPATH=$PWD/solutions/src uv run python bench/scaling_load.py [--clients 8] [--seconds 1.5] [--rounds 5]

Starts real replicas (separate uvicorn processes), nginx in front of them and drives N
concurrent MCP clients calling `replica_info` through each configuration:

* modern (2026-07-28) traffic: one replica direct, one replica behind nginx, two replicas behind nginx;
* legacy (2025) sessions through nginx: stateful with sticky routing, stateless, and stateful
  behind a plain round-robin proxy (the failure the lesson starts with).

Everything runs on 127.0.0.1 and is bounded: each configuration runs --seconds per round (and
at most --max-calls calls), --rounds rounds, configurations interleaved so that background
noise hits them alike. The table shows the median over the rounds; ratios come from the same
run. The load generator is a Python process too (--procs N splits the clients over N of them):
when it, rather than a replica, is the bottleneck, a second replica cannot help, so read
"1 vs 2 replicas" together with the CPU count printed at the top. Without nginx the proxied
rows are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import anyio

from research_desk import scaling, scaling_lab


def plain_round_robin_template(folder: Path) -> Path:
    """The sticky template without its owner routes: every request goes to the pool."""
    text = scaling.NGINX_TEMPLATE.read_text(encoding="utf-8")
    path = folder / "nginx-round-robin.conf"
    path.write_text(re.sub(r'^\s*"~\^\{\{replica\}\}.*\n', "", text, flags=re.MULTILINE), encoding="utf-8")
    return path


async def main(args: argparse.Namespace) -> None:
    print(f"# lesson 6 load test: {args.clients} clients in {args.procs} process(es), {args.seconds:g} s x "
          f"{args.rounds} rounds per row, {os.cpu_count()} CPUs, research_desk from {Path(scaling.__file__).parent}",
          flush=True)
    work = Path(tempfile.mkdtemp(prefix="desk-bench-"))
    key = secrets.token_hex(32)
    stateful = {"RESEARCH_DESK_STATE_KEYS": key, "RESEARCH_DESK_ROOT": str(work / "workspace")}
    stateless = {**stateful, "RESEARCH_DESK_STATELESS": "1"}
    have_nginx = shutil.which("nginx") is not None
    async with (scaling_lab.run_replicas(["a", "b"], stateful, workdir=work) as (a, b),
                scaling_lab.run_replicas(["c", "d"], stateless, workdir=work) as (c, d)):
        rows: dict[str, list[scaling_lab.LoadReport]] = {}
        runs: list[tuple[str, list[str], str]] = [("modern  1 replica  direct", [a.url], "auto")]
        if have_nginx:
            for name in ("n1", "n2", "n3", "n4"):
                (work / name).mkdir()
            naive_template = plain_round_robin_template(work)
            async with (scaling_lab.run_nginx({"a": a.port}, workdir=work / "n1") as one,
                        scaling_lab.run_nginx({"a": a.port, "b": b.port}, workdir=work / "n2") as two,
                        scaling_lab.run_nginx({"c": c.port, "d": d.port}, workdir=work / "n3") as two_stateless,
                        scaling_lab.run_nginx({"a": a.port, "b": b.port}, template=naive_template,
                                          workdir=work / "n4") as naive):
                runs += [("modern  1 replica  nginx", [one], "auto"),
                         ("modern  2 replicas nginx", [two], "auto"),
                         ("legacy  stateful   nginx sticky", [two], "legacy"),
                         ("legacy  stateless  nginx", [two_stateless], "legacy"),
                         ("legacy  stateful   round-robin", [naive], "legacy")]
                await run_rounds(runs, rows, args)
        else:
            print("# nginx not found: proxied rows skipped (sudo apt-get install nginx)")
            runs.append(("modern  2 replicas client-side", [a.url, b.url], "auto"))
            await run_rounds(runs, rows, args)
    report(rows)


def _measure_in_child(urls: list[str], label: str, mode: str, clients: int, seconds: float, max_calls: int,
                      calls_per_session: int) -> scaling_lab.LoadReport:
    return anyio.run(functools.partial(scaling_lab.measure_load, urls, label=label, mode=mode, clients=clients,
                                       seconds=seconds, max_calls=max_calls, calls_per_session=calls_per_session))


async def measure(pool: ProcessPoolExecutor | None, urls: list[str], label: str, mode: str,
                  args: argparse.Namespace) -> scaling_lab.LoadReport:
    """One row, one round: in this process, or split over --procs load-generator processes."""
    if pool is None:
        return await scaling_lab.measure_load(urls, label=label, mode=mode, clients=args.clients, seconds=args.seconds,
                                          max_calls=args.max_calls, calls_per_session=args.calls_per_session)
    loop = asyncio.get_running_loop()
    share = max(1, args.clients // args.procs)
    parts = await asyncio.gather(*(loop.run_in_executor(
        pool, _measure_in_child, urls, label, mode, share, args.seconds, args.max_calls // args.procs,
        args.calls_per_session) for _ in range(args.procs)))
    merged = scaling_lab.LoadReport(label, seconds=max(p.seconds for p in parts))
    for part in parts:
        merged.calls += part.calls
        merged.errors += part.errors
        merged.latencies_ms += part.latencies_ms
        merged.replicas.update(part.replicas)
        merged.first_error = merged.first_error or part.first_error
    return merged


async def run_rounds(runs: list[tuple[str, list[str], str]], rows: dict[str, list[scaling_lab.LoadReport]],
                     args: argparse.Namespace) -> None:
    for label, urls, mode in runs:  # warm-up, not counted: first-call imports and caches on both sides
        await scaling_lab.measure_load(urls, mode=mode, clients=2, seconds=0.3, calls_per_session=5)
    # Load generators forked after the warm-up inherit its imports (a forked child starts its own event loop).
    pool = ProcessPoolExecutor(args.procs, mp_context=multiprocessing.get_context("fork")) if args.procs > 1 else None
    try:
        await _rounds(runs, rows, args, pool)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


async def _rounds(runs: list[tuple[str, list[str], str]], rows: dict[str, list[scaling_lab.LoadReport]],
                  args: argparse.Namespace, pool: ProcessPoolExecutor | None) -> None:
    for round_no in range(args.rounds):
        for label, urls, mode in runs:
            result = await measure(pool, urls, label, mode, args)
            rows.setdefault(label, []).append(result)
            print(f"round {round_no + 1}: {result}", flush=True)
            await anyio.sleep(0.5)  # let the replicas finish closing the last row's sessions


def report(rows: dict[str, list[scaling_lab.LoadReport]]) -> None:
    print("\n# median over rounds")
    print(f"{'configuration':<34} {'calls/s':>8} {'median ms':>10} {'errors':>7}  replicas")
    medians: dict[str, float] = {}
    for label, results in rows.items():
        medians[label] = statistics.median(r.throughput for r in results)
        latency = statistics.median(r.median_ms for r in results)
        errors = sum(r.errors for r in results)
        spread: dict[str, int] = {}
        for r in results:
            for name, count in r.replicas.items():
                spread[name] = spread.get(name, 0) + count
        print(f"{label:<34} {medians[label]:8.1f} {latency:10.1f} {errors:7d}  "
              + " ".join(f"{n}={v}" for n, v in sorted(spread.items())))
        first = next((r.first_error for r in results if r.first_error), "")
        if first:
            print(f"{'':34} first error: {first}")

    def ratio(top: str, bottom: str) -> None:
        if medians.get(top) and medians.get(bottom):
            print(f"{top.strip()} / {bottom.strip()}: {medians[top] / medians[bottom]:.2f}x")

    print()
    ratio("modern  2 replicas nginx", "modern  1 replica  nginx")
    ratio("modern  2 replicas client-side", "modern  1 replica  direct")
    ratio("modern  1 replica  nginx", "modern  1 replica  direct")
    ratio("legacy  stateless  nginx", "legacy  stateful   nginx sticky")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent MCP clients (default 8)")
    parser.add_argument("--seconds", type=float, default=1.5, help="seconds per configuration per round (default 1.5)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the table shows medians (default 5)")
    parser.add_argument("--procs", type=int, default=1,
                        help="load-generator processes sharing the clients (default 1; use more on a big machine)")
    parser.add_argument("--max-calls", type=int, default=5000, help="cap on calls per configuration per round")
    parser.add_argument("--calls-per-session", type=int, default=20,
                        help="legacy: calls before a client opens a new session (default 20)")
    options = parser.parse_args()
    if options.seconds > 30 or options.rounds > 10 or options.clients > 64 or not 1 <= options.procs <= 16:
        sys.exit("keep it short: --seconds <= 30, --rounds <= 10, --clients <= 64, 1 <= --procs <= 16")
    anyio.run(main, options)
