"""How long a student waits for `course check`, next to the floor measured in the same run.

    uv run python bench/check_latency.py [--runs 7] [--lesson lesson-1]
    uv run python bench/check_latency.py --all [--runs 5]

Every run is a cold process, exactly as a student starts it. The floor is `python -c "import mcp"`:
no checker can start faster than the SDK it tests imports. Runs are interleaved (floor, then each
command, round after round), so background load falls on every command alike; the load average
is printed with the figures, since they are wall-clock times on a machine that may be shared.

`--all` checks every available lesson against the reference solutions, side by side, each with
its ratio to the floor and the target (2.5x the floor; 5x for lessons 6 and 9, which start
replicas, nginx and Redis).

Beside each wall time is the CPU time the run used (user + system, with every process it
started, orphans included): on a shared machine it moves far less than the wall time does, so
it shows whether a change made the checks do less work even when the clock is too noisy to say.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker.registry import load_course  # noqa: E402

FLOOR = "floor: python -c 'import mcp'"
TARGET = 2.5
SLOW_TARGETS = {"lesson-6": 5.0, "lesson-9": 5.0}  # real replicas, nginx and Redis to start


UNEXPECTED: dict[str, list[str]] = {}  # command -> what it printed when its exit code was not the expected one
CPU: dict[str, list[float]] = {}  # command -> CPU seconds of each measured run
# A student's Python keeps the bytecode it compiles; an environment that forbids it (some CI and
# container images set PYTHONDONTWRITEBYTECODE) would recompile the course's own modules on every
# timed run, which no student waits for. Student code is never cached by the runner either way.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"COURSE_ROOT": str(ROOT)}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants' orphans (Linux), so their CPU time counts.

    A process whose parent ended before it (a server killed along with the process group that
    started it) is otherwise reaped by init, and its CPU time is added to nobody's: a run that
    kills what it started would look cheaper than one that waits for it.
    """
    if sys.platform == "linux":
        import ctypes

        pr_set_child_subreaper = 36
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_child_subreaper, 1, 0, 0, 0)


def reap_orphans(seconds: float = 2.0) -> None:
    """Wait for the orphans a run left to this process (see adopt_orphans), for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.01)


def timed(cmd: list[str], expect: int) -> float:
    """Wall time of one cold run (its CPU time is noted in CPU, its orphans' included). A run that
    exits otherwise than expected still counts (its time is real) but is reported below the figures:
    on a loaded machine a timing-sensitive check may fail."""
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, env=ENV)
    elapsed = time.perf_counter() - started
    reap_orphans()
    CPU.setdefault(" ".join(cmd), []).append(_children_cpu() - cpu)
    if proc.returncode != expect:
        failed = [line.strip() for line in proc.stdout.decode().splitlines() if line.lstrip().startswith("✗")]
        UNEXPECTED.setdefault(" ".join(cmd[1:]), []).append(f"exit {proc.returncode}: {'; '.join(failed)[:300]}")
    return elapsed


def report_unexpected() -> None:
    for command, problems in UNEXPECTED.items():
        print(f"  note: `course {command}` exited unexpectedly in {len(problems)} run(s): {problems[0]}")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def measure(commands: dict[str, tuple[list[str], int]], runs: int) -> dict[str, list[float]]:
    for cmd, expect in commands.values():  # warm the OS cache and the bytecode once
        timed(cmd, expect)
    CPU.clear()
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (cmd, expect) in commands.items():
            samples[name].append(timed(cmd, expect))
    return samples


def cpu_median(cmd: list[str]) -> float:
    return statistics.median(CPU.get(" ".join(cmd), [0.0]))


def one_lesson(course_script: str, lesson: str, runs: int) -> None:
    commands = {
        FLOOR: ([sys.executable, "-c", "import mcp"], 0),
        f"course check {lesson} --against solutions": ([course_script, "check", lesson, "--against", "solutions"], 0),
        f"course check {lesson} (starter, all failing)": ([course_script, "check", lesson], 1),
    }
    before = load()
    samples = measure(commands, runs)
    floor = statistics.median(samples[FLOOR])
    print(f"{os.cpu_count()} cores, {runs} cold runs each, medians ({before}; after: {load()}):")
    floor_cpu = cpu_median(commands[FLOOR][0])
    for name, values in samples.items():
        median = statistics.median(values)
        cpu = cpu_median(commands[name][0])
        print(f"  {name:<48} {median:6.2f} s   {median / floor:4.2f}x floor   (min {min(values):.2f}, max {max(values):.2f});"
              f"  CPU {cpu:.2f} s, {cpu / floor_cpu:.2f}x the floor's")
    report_unexpected()


def every_lesson(course_script: str, runs: int) -> None:
    course = load_course(ROOT)
    lessons = [lesson for lesson in course.lessons if lesson.available]
    commands = {FLOOR: ([sys.executable, "-c", "import mcp"], 0)}
    for lesson in lessons:
        commands[lesson.id] = ([course_script, "check", lesson.id, "--against", "solutions"], 0)
    before = load()
    started = time.monotonic()
    samples = measure(commands, runs)
    floor = statistics.median(samples[FLOOR])
    print(f"`course check LESSON --against solutions`, cold: {os.cpu_count()} cores, {runs} runs each, interleaved, "
          f"medians; {time.monotonic() - started:.0f} s in all")
    print(f"  before: {before}; after: {load()}")
    floor_cpu = cpu_median(commands[FLOOR][0])
    print(f"  {'':<12} {'median':>8} {'min':>7} {'max':>7} {'x floor':>8} {'target':>7}        {'CPU':>7} {'x floor':>8}")
    print(f"  {'floor':<12} {floor:7.2f}s {min(samples[FLOOR]):6.2f}s {max(samples[FLOOR]):6.2f}s {1:8.2f}"
          f"                {floor_cpu:6.2f}s {1:8.2f}")
    met = 0
    for lesson in lessons:
        values = samples[lesson.id]
        median = statistics.median(values)
        target = SLOW_TARGETS.get(lesson.id, TARGET) if lesson.kind == "code" else TARGET
        ok = median / floor <= target
        met += ok
        cpu = cpu_median(commands[lesson.id][0])
        print(f"  {lesson.id:<12} {median:7.2f}s {min(values):6.2f}s {max(values):6.2f}s {median / floor:8.2f} "
              f"{target:6.1f}x  {'met' if ok else 'NOT met':<7} {cpu:6.2f}s {cpu / floor_cpu:8.2f}")
    print(f"  {met} of {len(lessons)} lessons within their target")
    report_unexpected()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lesson", default="lesson-1")
    parser.add_argument("--all", action="store_true", help="every available lesson, side by side with the floor")
    args = parser.parse_args()
    adopt_orphans()
    course_script = str(Path(sys.executable).with_name("course"))
    if args.all:
        every_lesson(course_script, args.runs)
    else:
        one_lesson(course_script, args.lesson, args.runs)


if __name__ == "__main__":
    main()
