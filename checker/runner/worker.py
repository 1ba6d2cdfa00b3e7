"""The check worker: a child process that grades one lesson and writes a JSON result.

    python -m checker.runner.worker --request REQUEST.json

pytest collects the lesson's checks here; this plugin replaces pytest's run loop so each
check runs in its own fork (see `sandbox`). Student code is imported only inside those forks:
this process, which assembles the score, never runs a line of it.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest
from _pytest.runner import runtestprotocol

from checker.runner.catalog import check_id
from checker.runner.failures import describe_failure
from checker.runner.request import Request
from checker.runner.results import CheckResult, LessonResult
from checker.sandbox.cgroups import Group
from checker.sandbox.forking import ChildOutcome, Slot, run_forked
from checker.sandbox.limits import Limits, drop_privileges
from checker.target import Target


SEED_VARIABLE = "COURSE_CHECK_SEED"  # set it to repeat a run's random inputs exactly
PROCESSES_PER_CHECK = 128  # tasks (threads too) of the student's in one check's group: stops a fork bomb
PROCESSES_PER_USER = 512   # without groups: all of one submission's user's tasks at once


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
        seed = seed_randomness(check_id(item.name))
        reports = runtestprotocol(item, log=False, nextitem=None)
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

    def _probe_imports(self) -> str:
        """Import the lesson's modules once, in a fork: a crash here explains every check."""
        names = [f"{self.request.package}.{m}" for m in self.request.modules]
        if not names:
            return ""

        def probe() -> dict[str, str]:
            target = Target.from_environment() if self.request.sandbox else None
            for name in names:
                try:
                    if target is not None:
                        target._host().request("import", name.removeprefix(f"{self.request.package}."))
                    else:
                        importlib.import_module(name)
                except BaseException as exc:  # noqa: BLE001 - anything at import time is the student's to see
                    return {"error": f"importing {name} failed: {describe_failure(exc, self.request.edition)}"}
            if target is not None:
                target.close()
            return {"error": ""}

        outcome = run_forked([("probe", probe)], self._limits(), prepare=self._enter_sandbox,
                             cleanup=self._clean_up)["probe"]
        if outcome.payload is not None:
            return str(outcome.payload["error"])
        return f"importing {', '.join(names)} failed: {outcome.problem}"

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
        basetemp = session.config._tmp_path_factory.getbasetemp()  # noqa: SLF001 - no public hook
        if self.request.sandbox and self.request.sandbox["uid"] is not None:
            os.chown(basetemp, self.request.sandbox["uid"], self.request.sandbox["uid"])
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
                                  self._limits(), jobs=self.request.jobs, deadline=deadline,
                                  prepare=self._enter_sandbox, cleanup=self._clean_up)
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

    def seed_from_run(self: random.Random, a: object = None, version: int = 2) -> None:
        given_seed(self, draws.getrandbits(128) if a is None else a, version)

    random.Random.seed = seed_from_run  # type: ignore[method-assign]
    return seed


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
    scratch = request.sandbox["scratch"] if request.sandbox else None  # checks' files: where student code sees them
    basetemp = Path(tempfile.mkdtemp(prefix="course-checks-", dir=scratch))
    try:
        return _grade(request, basetemp, started)
    finally:
        shutil.rmtree(basetemp, ignore_errors=True)


def _grade(request: Request, basetemp: Path, started: float) -> LessonResult:
    os.environ["COURSE_EDITION"] = request.edition
    os.environ["COURSE_PACKAGE"] = request.package
    if request.sandbox is None:  # a self-check: student code runs in each check's own fork
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [request.edition, os.environ.get("PYTHONPATH")]))
        sys.path.insert(0, request.edition)
    return _run_checks(request, basetemp, started)


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
    parser.add_argument("--request", required=True, help="the request file ('-': read its path from stdin)")
    args = parser.parse_args()
    path = args.request
    if path == "-":  # pre-started: warm up now (importing this did), then wait for the request's path
        path = sys.stdin.readline().strip()
        if not path:
            return
    grade_and_write(Request(**json.loads(Path(path).read_text())))


if __name__ == "__main__":
    main()
