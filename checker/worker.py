"""The check worker: a child process that grades one lesson and writes a JSON result.

    python -m checker.worker --request REQUEST.json

pytest collects the lesson's checks here; this plugin replaces pytest's run loop so each
check runs in its own fork (see `sandbox`). Student code is imported only inside those forks:
this process, which assembles the score, never runs a line of it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import pytest
from _pytest.runner import runtestprotocol

from checker.catalog import check_id
from checker.remote import RemoteSession, Zygote
from checker.request import Request
from checker.results import CheckResult, LessonResult
from checker.sandbox import UID_ROTATION, UIDS_PER_SLOT, ChildOutcome, Limits, run_forked


def leaf_exception(exc: BaseException) -> BaseException:
    """The exception that explains `exc`, looking inside (nested) exception groups.

    anyio wraps errors from task groups (every MCP client) in groups. A check's own failure
    (an assertion, pytest.fail or pytest.skip) wins over whatever else broke alongside it;
    otherwise the first error found.
    """
    leaves: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop(0)
        if isinstance(current, BaseExceptionGroup):
            stack[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    own = [e for e in leaves if isinstance(e, (AssertionError, pytest.fail.Exception, pytest.skip.Exception))]
    return (own or leaves or [exc])[0]


def _student_location(exc: BaseException, edition: str) -> str:
    """`research_desk/context.py:42` for the deepest frame in the graded package, if any."""
    where = ""
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(edition):
            where = f"{os.path.relpath(filename, edition)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def describe_failure(exc: BaseException, edition: str) -> str:
    """One or two plain lines a student can act on."""
    exc = leaf_exception(exc)
    remote = getattr(exc, "remote_described", None)
    if isinstance(remote, str) and remote:
        return remote  # raised in the process hosting student code, and described there
    if isinstance(exc, AssertionError):
        text = str(exc).strip()
        return text or "an assertion failed without a message (a bug in the check: please report it)"
    if isinstance(exc, pytest.fail.Exception):
        return str(exc.msg)
    name = type(exc).__name__
    where = _student_location(exc, edition)
    text = f"{name}: {exc}" if str(exc) else name
    if isinstance(exc, NotImplementedError):
        text = f"not written yet ({text})"
    return f"{text}  [{where}]" if where else text


class ForkPerCheck:
    """pytest plugin: run every collected check in its own sandboxed fork."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.collect_errors: list[str] = []
        self.results: list[CheckResult] = []
        self.started = time.monotonic()

    def pytest_configure(self, config: pytest.Config) -> None:
        # A student reads describe_failure()'s message, never pytest's long report, which renders
        # source around every frame of the SDK's exception groups: ~50 ms per failing check.
        config.option.tbstyle = "native"

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
        report = yield
        if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
            item.stash.setdefault(_FAILURES, []).append(call.excinfo.value)
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(str(report.longrepr)[-2000:])

    def _run_one(self, item: pytest.Item) -> dict[str, str]:
        if self.request.isolate:
            _undumpable()
        reports = runtestprotocol(item, log=False, nextitem=None)
        failures = item.stash.get(_FAILURES, [])
        for rep in reports:
            if rep.failed:
                exc = failures[0] if failures else None
                message = describe_failure(exc, self.request.edition) if exc else str(rep.longrepr)[-500:]
                return {"outcome": "failed", "message": message}
        for rep in reports:
            if rep.skipped:
                reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
                return {"outcome": "skipped", "message": reason.removeprefix("Skipped: ")}
        return {"outcome": "passed", "message": ""}

    def _probe_imports(self) -> str:
        """Import the lesson's modules once, in a fork: a crash here explains every check."""
        names = [f"{self.request.package}.{m}" for m in self.request.modules]
        if not names:
            return ""

        def probe() -> dict[str, str]:
            host = None
            for name in names:
                try:
                    if self.request.isolate:
                        host = host or RemoteSession.spawn(os.environ["COURSE_HOST_ZYGOTE"], self.request.edition,
                                                           self.request.package)
                        host.request("import", name.removeprefix(f"{self.request.package}."))
                    else:
                        importlib.import_module(name)
                except BaseException as exc:  # noqa: BLE001 - anything at import time is the student's to see
                    return {"error": f"importing {name} failed: {describe_failure(exc, self.request.edition)}"}
            return {"error": ""}

        outcome = run_forked([("probe", probe)], self._limits())["probe"]
        if outcome.payload is not None:
            return str(outcome.payload["error"])
        return f"importing {', '.join(names)} failed: {outcome.problem}"

    def _limits(self) -> Limits:
        return Limits(self.request.check_timeout, self.request.memory_mb, self.request.output_mb,
                      sandbox_uid=self.request.sandbox_uid)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool:
        # Create the base temp folder once, here, so forks only add sub-folders to it; world-
        # writable and sticky (like /tmp) so checks running as a sandbox user can use it too.
        basetemp = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - no public hook
        basetemp.chmod(0o1777)
        items = list(session.items)
        if self.request.select:
            items = [i for i in items if check_id(i.name) in self.request.select]
        # Longest first, so a slow check overlaps the quick ones instead of trailing after them.
        queue = sorted(items, key=lambda i: -self.request.expected.get(check_id(i.name), 1.0))
        import_error = self._probe_imports() if items else ""
        deadline = self.started + self.request.lesson_timeout
        outcomes: dict[str, ChildOutcome] = {}
        if not import_error:
            outcomes = run_forked(((item.nodeid, (lambda item=item: self._run_one(item))) for item in queue),
                                  self._limits(), jobs=self.request.jobs, deadline=deadline)
        for item in items:
            marker = item.get_closest_marker("check")
            meta = marker.kwargs if marker else {}
            result = CheckResult(id=check_id(item.name), title=str(meta.get("title", item.name)),
                                 points=int(meta.get("points", 1)), outcome="failed",
                                 hint=str(meta.get("hint", "")))
            if import_error:
                result.message = import_error
            else:
                got = outcomes[item.nodeid]
                result.duration = round(got.duration, 3)
                if got.payload is not None:
                    result.outcome = got.payload["outcome"]
                    result.message = got.payload["message"]
                else:
                    result.message = got.problem
                    if got.output.strip():
                        result.message += "\nLast output:\n" + got.output.strip()
            self.results.append(result)
        return True


_FAILURES = pytest.StashKey[list]()


def _pytest_args(request: Request) -> list[str]:
    checks = Path(request.checks_file)
    return [
        str(checks), *request.extra_checks, "-c", os.devnull, "--rootdir", str(checks.parent),
        "-s", "--assert=plain", "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:warnings",
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
    basetemp = Path(tempfile.mkdtemp(prefix="course-checks-"))
    try:
        return _grade(request, basetemp, started)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


def _grade(request: Request, basetemp: Path, started: float) -> LessonResult:
    os.environ["COURSE_EDITION"] = request.edition
    os.environ["COURSE_PACKAGE"] = request.package
    zygote = None
    if request.isolate:
        if "COURSE_HOST_ZYGOTE" not in os.environ:  # grade_many starts one for all its requests
            zygote = Zygote(request.check_timeout, request.memory_mb, request.output_mb, _check_files([request]))
            os.environ["COURSE_HOST_ZYGOTE"] = zygote.path
    else:
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [request.edition, os.environ.get("PYTHONPATH")]))
        sys.path.insert(0, request.edition)
    try:
        return _run_checks(request, basetemp, started)
    finally:
        if zygote is not None:
            zygote.stop()
            del os.environ["COURSE_HOST_ZYGOTE"]


def _run_checks(request: Request, basetemp: Path, started: float) -> LessonResult:
    plugin = ForkPerCheck(request)
    result = LessonResult(lesson=request.lesson, title=request.title, edition=request.edition_name)
    code = pytest.main([*_pytest_args(request), f"--basetemp={basetemp}"], plugins=[plugin])
    result.checks = plugin.results
    if plugin.collect_errors:
        result.error = "the checks could not be loaded (a bug in the course, not your code):\n" + plugin.collect_errors[0]
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




def grade_many(requests: list[Request], parallel: int) -> None:
    """Grade many requests (lessons of many submissions) with one SDK import.

    Each request runs in its own fork of this warm process, `parallel` at a time, so nothing
    (pytest state, sys.path, a student's edition) is shared between them; a request that
    overruns its lesson limit is killed and simply leaves no result file.
    """
    import checker.target  # noqa: F401 - import and warm the SDK once, before the forks
    from checker import sandbox

    zygote = None
    if any(r.isolate for r in requests):
        first = requests[0]
        zygote = Zygote(first.check_timeout, first.memory_mb, first.output_mb, _check_files(requests))
        os.environ["COURSE_HOST_ZYGOTE"] = zygote.path

    def task(request: Request) -> dict[str, str]:
        if request.sandbox_uid is not None:
            # A fresh block of uids for each request a slot runs (cycling through a few): the
            # processes killed after a hostile submission can still count against their uid's
            # process limit for a moment, and must not use up the next submission's.
            block = sandbox.child_slot * UID_ROTATION + sandbox.child_serial % UID_ROTATION
            request.sandbox_uid += UIDS_PER_SLOT * block
        grade_and_write(request)
        return {}

    longest = max(r.lesson_timeout for r in requests)
    limits = Limits(wall_seconds=longest + 30, memory_mb=64 * 1024, output_mb=max(r.output_mb for r in requests))
    try:
        run_forked([(i, (lambda r=r: task(r))) for i, r in enumerate(requests)], limits, jobs=parallel)
    finally:
        if zygote is not None:
            zygote.stop()


def _check_files(requests: list[Request]) -> list[str]:
    """The isolated requests' check files, each once: the host zygote preloads them."""
    files = [path for r in requests if r.isolate for path in (r.checks_file, *r.extra_checks)]
    return list(dict.fromkeys(files))


def _undumpable() -> None:
    """No other process of this uid may ptrace this one or read its memory through /proc.

    Isolated checks run as the same sandbox user as the host process that runs student code;
    this keeps that code from reaching into the check and rewriting its verdict.
    """
    import ctypes

    pr_set_dumpable = 4
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_dumpable, 0, 0, 0, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--request", required=True, action="append",
                        help="a request file; repeat it to grade several lessons with one SDK import")
    parser.add_argument("--parallel", type=int, default=1, help="requests graded at once")
    args = parser.parse_args()
    if args.request == ["-"]:  # pre-started: warm up now, then wait for the request's path
        import checker.target  # noqa: F401

        line = sys.stdin.readline().strip()
        if not line:
            return
        args.request = [line]
    requests = [Request(**json.loads(Path(path).read_text())) for path in args.request]
    if len(requests) == 1:
        grade_and_write(requests[0])
    else:
        grade_many(requests, args.parallel)


if __name__ == "__main__":
    main()

