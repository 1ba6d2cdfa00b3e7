"""The check worker: a child process that grades one lesson and writes a JSON result.

    python -m checker.runner.start --request REQUEST.json

(`checker.runner.start` is the process's entry: it imports this module.) pytest collects the
lesson's checks here; this plugin replaces pytest's run loop so each check runs in its own fork
(see `sandbox`). Student code is imported only inside those forks: this process, which
assembles the score, never runs a line of it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import math
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import cast

import pytest
from _pytest.runner import runtestprotocol

from checker.runner.catalog import check_id
from checker.runner.failures import describe_failure
from checker.runner.imports import diagnose, ended
from checker.runner.request import Request
from checker.runner.results import BrokenModule, CheckResult, LessonResult, Outcome
from checker.sandbox.cgroups import Group
from checker.sandbox.forking import ChildOutcome, Slot, run_forked
from checker.sandbox.limits import Limits, drop_privileges
from checker.target import CPU_LEDGER, Target

SEED_VARIABLE = "COURSE_CHECK_SEED"  # set it to repeat a run's random inputs exactly
PROBE = "import probe"  # the task that imports the lesson's modules (a check's node id has "::")
PROCESSES_PER_CHECK = 128  # tasks (threads too) of the student's in one check's group: stops a fork bomb
PROCESSES_PER_USER = 512   # without groups: all of one submission's user's tasks at once


class ForkPerCheck:
    """pytest plugin: run every collected check in its own sandboxed fork."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.collect_errors: list[str] = []
        self.results: list[CheckResult] = []
        self.broken: list[BrokenModule] = []
        self.basetemp = Path(tempfile.gettempdir())  # pytest's, once the run loop starts
        self.started = time.monotonic()

    def pytest_configure(self, config: pytest.Config) -> None:
        # A student reads describe_failure()'s message, never pytest's long report, which renders
        # source around every frame of the SDK's exception groups: ~50 ms per failing check.
        config.option.tbstyle = "native"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            item.stash.setdefault(_FAILURES, []).append(call.excinfo.value)
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(str(report.longrepr)[-2000:])

    def _run_one(self, item: pytest.Item) -> dict[str, str]:
        seed = seed_randomness(check_id(item.name))
        with cpu_of_commands(self.basetemp) as commands_cpu:
            reports = runtestprotocol(item, log=False, nextitem=None)
        return self._verdict(item, reports, seed) | {"commands_cpu": str(sum(commands_cpu))}

    def _verdict(self, item: pytest.Item, reports: list[pytest.TestReport], seed: str) -> dict[str, str]:
        failures = item.stash.get(_FAILURES, [])
        for rep in reports:
            if rep.failed:
                exc = failures[0] if failures else None
                message = describe_failure(exc, self.request.edition) if exc else str(rep.longrepr)[-500:]
                if seed:
                    message += f"\n(random inputs from {SEED_VARIABLE}={seed}: set it again to repeat them)"
                return {"outcome": "failed", "message": message}
        for rep in reports:
            if rep.skipped:
                reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
                return {"outcome": "skipped", "message": reason.removeprefix("Skipped: ")}
        return {"outcome": "passed", "message": ""}

    def _import_probe(self) -> Callable[[], dict[str, str]] | None:
        """A task that imports the lesson's modules once, in a fork, beside the first checks.

        A module that does not import would fail every check alike; it is reported once instead,
        with its file, line and fix (`checker.runner.imports`), and the checks started beside the
        probe are stopped and not reported. When grading, the host process in the submission's
        sandbox does the importing and sends back its report as plain data. None: no modules.
        """
        request = self.request
        modules = list(dict.fromkeys(request.modules))
        if not modules:
            return None
        timeout = max(1.0, request.check_timeout - 2)  # the fork's own limit is check_timeout

        def probe() -> dict[str, str]:
            reports: list[dict[str, object]] = []
            target = Target.from_environment() if request.sandbox else None
            for module in modules:
                if target is not None:
                    report = target._host().request("diagnose_import", module, timeout, request.owners)  # noqa: SLF001
                else:
                    found = diagnose(request.package, module, request.edition, timeout, request.owners)
                    report = found.to_json() if found else None
                if isinstance(report, dict):
                    reports.append(report)
            if target is not None:
                target.close()
            # Flat string fields, not JSON: student code shares this fork and could patch a serializer.
            fields = {f"{i}.{key}": str(value) for i, report in enumerate(reports) for key, value in report.items()}
            return {"reports": str(len(reports)), **fields}  # never empty: an empty reply reads as a crash

        return probe

    def _broken(self, outcome: ChildOutcome) -> list[BrokenModule]:
        """The broken modules the import probe found (a probe that ended without a report: the first)."""
        if outcome.payload is None:
            return [ended(self.request.package, self.request.modules[0], outcome.problem)]
        return _unique(_reports(outcome.payload))

    def _busy(self, items: list[pytest.Item]) -> dict[str, float] | None:
        """How busy each check kept a core last time, so checks that mostly wait run beside the others.

        Only a self-check uses it: grading keeps each submission to its fixed share of the machine.
        """
        if self.request.sandbox is not None or not self.request.busy:
            return None
        return {item.nodeid: self.request.busy.get(check_id(item.name), 1.0) for item in items}

    def _limits(self) -> Limits:
        return Limits(self.request.check_timeout, self.request.memory_mb, self.request.output_mb)

    def _enter_sandbox(self, slot: Slot) -> None:
        """In a check's fork, before it runs: its resource group, its user, and the sandbox's address.

        The group (memory and process count for everything of the student's this check starts)
        is made here, while still privileged, and given to the check's user, who moves each host
        and command into it. The check itself stays outside the group and outside the sandbox.
        """
        sandbox = self.request.sandbox
        if sandbox is None:
            return
        os.environ.update(COURSE_HOST_ZYGOTE=sandbox["socket"], COURSE_SCRATCH=sandbox["scratch"])
        uid = sandbox["uid"]
        if sandbox["groups"]:
            group = Group([Path(d) for d in sandbox["groups"]], sandbox["groups_v2"]).child(f"c{os.getpid()}")
            group.limit(self.request.memory_mb, PROCESSES_PER_CHECK)
            if uid is not None:
                group.give_to(uid)
            os.environ["COURSE_CHECK_CGROUP"] = os.pathsep.join(group.procs_files)
        if uid is not None:
            drop_privileges(uid, None if sandbox["groups"] else Limits(0, 0, 0, max_processes=PROCESSES_PER_USER))
        os.chdir(sandbox["scratch"])
        os.environ["HOME"] = sandbox["scratch"]  # caches (uv's, say) go where this user may write
        _undumpable()

    def _clean_up(self, pid: int) -> None:
        """After a check's fork has ended: everything of the student's it started goes too."""
        sandbox = self.request.sandbox
        if sandbox and sandbox["groups"]:
            Group([Path(d) / f"c{pid}" for d in sandbox["groups"]], sandbox["groups_v2"]).remove()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        # Create the base temp folder once, here, so forks only add sub-folders to it. Private (0700,
        # from mkdtemp): when grading it belongs to the submission's user, who runs the checks.
        basetemp = self.basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]  # noqa: SLF001 - no public hook
        if self.request.sandbox and self.request.sandbox["uid"] is not None:
            os.chown(basetemp, self.request.sandbox["uid"], self.request.sandbox["uid"])
        items = list(session.items)
        if self.request.select:
            items = [i for i in items if check_id(i.name) in self.request.select]
        # Longest first, so a slow check overlaps the quick ones instead of trailing after them.
        queue = sorted(items, key=lambda i: -self.request.expected.get(check_id(i.name), 1.0))
        if items and self.request.sandbox is None and _serves_http(self.request):
            from checker.runner.warm import warm_http

            warm_http()  # once here rather than in every check's fork (~0.07 s of CPU each)
        deadline = self.started + self.request.lesson_timeout
        tasks: list[tuple[str, Callable[[], dict[str, str]]]] = [
            (item.nodeid, functools.partial(self._run_one, item)) for item in queue]
        probe = self._import_probe() if items else None
        if probe is not None:
            tasks.insert(0, (PROBE, probe))  # first, beside the checks rather than before them

        def broken_found(key: str, outcome: ChildOutcome) -> bool:
            if key == PROBE:
                self.broken = self._broken(outcome)
            return bool(self.broken)

        # The collector was off while this process started (`checker.runner.start`): what it made
        # then is frozen, never to be walked here or in any fork, and the collector is on again,
        # as student code in every fork expects.
        gc.freeze()
        gc.enable()
        with command_zygote(self.request, self._limits()):
            outcomes = run_forked(tasks, self._limits(), jobs=self.request.jobs, deadline=deadline,
                                  prepare=self._enter_sandbox, cleanup=self._clean_up, busy=self._busy(items),
                                  stop_when=broken_found)
        for item in items:
            marker = item.get_closest_marker("check")
            meta = marker.kwargs if marker else {}
            result = CheckResult(id=check_id(item.name), title=str(meta.get("title", item.name)),
                                 points=int(meta.get("points", 1)), outcome="failed",
                                 hint=str(meta.get("hint", "")))
            if self.broken:  # said once, above the checks: no per-check message or hint repeats it
                result.message = not_run_message(self.broken)
                result.hint = ""
            else:
                got = outcomes[item.nodeid]
                result.duration = round(got.duration, 3)
                result.cpu = round(got.cpu + _seconds(got.payload, "commands_cpu"), 3)
                if got.payload is not None:
                    result.outcome = cast(Outcome, got.payload["outcome"])  # what _run_one reported
                    result.message = got.payload["message"]
                else:
                    result.message = got.problem
                    if got.output.strip():
                        result.message += "\nLast output:\n" + got.output.strip()
            self.results.append(result)
        return True


_FAILURES = pytest.StashKey[list]()


def seed_randomness(check: str) -> str:
    """In a check's fork: with `COURSE_CHECK_SEED` set, make the check's random draws repeatable.

    Both the module-level functions (`random.randint`) and every `random.Random()` made without
    a seed draw from one generator seeded by the seed and the check's id, so a run that let a
    mistake through, or failed correct code, can be repeated exactly; the id keeps checks from
    sharing draws, and adding a check changes no other check's inputs. Unset, nothing changes:
    the operating system's randomness, different on every run. Returns the seed ("" if none).
    """
    seed = os.environ.get(SEED_VARIABLE, "").strip()
    if not seed:
        return ""
    draws = random.Random(f"{seed}:{check}")
    random.seed(draws.getrandbits(128))
    given_seed = random.Random.seed

    def seed_from_run(self: random.Random, a: int | float | str | bytes | bytearray | None = None,
                      version: int = 2) -> None:
        given_seed(self, draws.getrandbits(128) if a is None else a, version)

    random.Random.seed = seed_from_run  # type: ignore[method-assign]
    return seed


@contextlib.contextmanager
def cpu_of_commands(folder: Path) -> Iterator[list[float]]:
    """In a check's fork: a ledger where each command it runs through the relay adds its CPU seconds.

    Commands start in another process tree (a spawner of the zygote's), so the fork's own usage,
    which the runner reads when it reaps it, does not include theirs. The yielded list holds the
    ledger's sum once the block has ended. The ledger lies in the run's `folder`, which the worker
    removes at the end: a fork killed before it removed its own leaves nothing behind.
    """
    handle, path = tempfile.mkstemp(prefix="course-cpu-", dir=folder)
    os.close(handle)
    os.environ[CPU_LEDGER] = path
    total: list[float] = []
    try:
        yield total
    finally:
        os.environ.pop(CPU_LEDGER, None)
        with contextlib.suppress(OSError):
            total.append(sum(_float(line) for line in Path(path).read_text().splitlines()))
            os.unlink(path)


def _float(text: str) -> float:
    """A count of seconds a check's process reported: 0 for anything but a finite number (the
    process ran student code, and an Infinity would end up in the results' JSON)."""
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) and value > 0 else 0.0


def _seconds(payload: dict[str, str] | None, key: str) -> float:
    return _float((payload or {}).get(key, "0"))


def _serves_http(request: Request) -> bool:
    """Whether the lesson's checks serve anything over HTTP (they, or their support module, call `target.http`)."""
    return any(".http(" in text for text in _check_sources(request))


def _check_sources(request: Request) -> Iterator[str]:
    """The source of the lesson's checks modules and of their support modules."""
    main = Path(request.checks_file)
    support = sorted((main.parent / "support").glob(f"{main.stem}*.py"))
    for path in (main, *map(Path, request.extra_checks), *support):
        if path.is_file():
            yield path.read_text(encoding="utf-8")


def _reports(payload: dict[str, str]) -> list[BrokenModule]:
    """The probe's flat fields (`0.file`, `0.line`, ...) back into reports."""
    grouped: dict[int, dict[str, str]] = {}
    for key, value in payload.items():
        index, _, name = key.partition(".")
        if index.isdigit() and name:
            grouped.setdefault(int(index), {})[name] = value
    reports = []
    for _, data in sorted(grouped.items()):
        report = BrokenModule.from_json(data)
        report.line, report.column = _int(data.get("line")), _int(data.get("column"))
        reports.append(report)
    return reports


def _int(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _unique(reports: list[BrokenModule]) -> list[BrokenModule]:
    """One report per broken file: a module imported by several of the lesson's modules breaks them all."""
    seen: set[tuple[str, int, str]] = set()
    kept = []
    for report in reports:
        key = (report.file, report.line, report.error)
        if key not in seen:
            seen.add(key)
            kept.append(report)
    return kept


def not_run_message(broken: list[BrokenModule]) -> str:
    """What each check says when none could run: short, and complete on its own (a JUnit line)."""
    return "not run: " + "; ".join(f"{b.headline()}: {b.error}" for b in broken)


# pytest's own plugins that checks never use (a debugger, doctests, unittest classes, reports to
# files, run-step controls): loading them cost every run ~40 ms before its first check.
UNUSED_PLUGINS = ("cacheprovider", "terminal", "warnings", "debugging", "doctest", "unittest", "junitxml",
                  "pastebin", "legacypath", "setuponly", "setupplan", "stepwise", "faulthandler", "subtests")


def _pytest_args(request: Request) -> list[str]:
    checks = Path(request.checks_file)
    return [
        str(checks), *request.extra_checks, "-c", os.devnull, "--rootdir", str(checks.parent),
        "-s", "--assert=plain", *(arg for name in UNUSED_PLUGINS for arg in ("-p", f"no:{name}")),
        "-p", "anyio", "-p", "checker.target",
        "-o", "python_files=lesson*.py",
    ]


def grade(request: Request) -> LessonResult:
    """Run one lesson's checks, each in its own fork, under one shared temporary folder.

    pytest would otherwise make (and try to prune) a numbered temp folder in every fork; forks
    end with os._exit, so nothing was ever pruned. One base folder per lesson, made here and
    removed here, keeps /tmp clean and each fork's start-up cheap.
    """
    started = time.monotonic()
    scratch = request.sandbox["scratch"] if request.sandbox else None  # checks' files: where student code sees them
    basetemp = Path(tempfile.mkdtemp(prefix="course-checks-", dir=scratch))
    try:
        return _grade(request, basetemp, started)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


def _grade(request: Request, basetemp: Path, started: float) -> LessonResult:
    os.environ["COURSE_EDITION"] = request.edition
    os.environ["COURSE_PACKAGE"] = request.package
    if request.sandbox is not None:
        return _run_checks(request, basetemp, started)
    # A self-check: student code runs in each check's own fork.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [request.edition, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, request.edition)
    return _run_checks(request, basetemp, started)


@contextlib.contextmanager
def command_zygote(request: Request, limits: Limits) -> Iterator[None]:
    """For a self-check whose checks run `python -m` commands of student code: a fork of this warm
    process serves as the zygote that starts each of them (`checker.host.warmstart`), instead of
    a new interpreter importing the SDK again for each (most of a CPU-second every time).

    Grading needs none of this: the submission's own zygote, in its sandbox, starts its commands.
    """
    if request.sandbox is not None or sys.platform != "linux" or not _runs_python_modules(request):
        yield  # (the zygote and relay are Linux's: elsewhere, commands start cold, as they always did)
        return
    folder = Path(tempfile.mkdtemp(prefix="course-commands-"))  # not under pytest's basetemp, which it empties
    path = folder / "zygote.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    pid = os.fork()
    if pid == 0:  # the zygote: it ends when this process kills it, or dies
        try:
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)  # not the runner's result pipe; errors still go to stderr
            from checker.host import zygote

            zygote.serve(listener, limits)
        finally:
            os._exit(70)
    listener.close()
    os.environ["COURSE_COMMAND_ZYGOTE"] = str(path)
    try:
        yield
    finally:
        del os.environ["COURSE_COMMAND_ZYGOTE"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        shutil.rmtree(folder, ignore_errors=True)


def _runs_python_modules(request: Request) -> bool:
    """Whether the lesson's checks start `python -m ...` commands (they, or their support modules)."""
    return any('"-m"' in text for text in _check_sources(request))


def _run_checks(request: Request, basetemp: Path, started: float) -> LessonResult:
    plugin = ForkPerCheck(request)
    result = LessonResult(lesson=request.lesson, title=request.title, edition=request.edition_name)
    code = pytest.main([*_pytest_args(request), f"--basetemp={basetemp}"], plugins=[plugin])
    result.checks = plugin.results
    result.broken = plugin.broken
    if plugin.collect_errors:
        result.error = (
            "the checks could not be loaded (a bug in the course, not your code):\n" + plugin.collect_errors[0]
        )
    elif not plugin.results and code not in (0, 5):
        result.error = f"the checks did not run (pytest exit code {int(code)})"
    result.duration = round(time.monotonic() - started, 3)
    return result


def grade_and_write(request: Request) -> None:
    """Grade one request and write its result file atomically (whatever happens)."""
    try:
        result = grade(request)
    except Exception:  # noqa: BLE001 - the engine shows this as a runner error, not a failed check
        result = LessonResult(lesson=request.lesson, title=request.title, edition=request.edition_name,
                              error="the check runner crashed:\n" + traceback.format_exc(limit=5))
    out = Path(request.out)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_json()))
    os.replace(tmp, out)


def _undumpable() -> None:
    """No other process of this uid may ptrace this one or read its memory through /proc.

    Isolated checks run as the same sandbox user as the host process that runs student code;
    this keeps that code from reaching into the check and rewriting its verdict.
    """
    import ctypes

    pr_set_dumpable = 4
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)
