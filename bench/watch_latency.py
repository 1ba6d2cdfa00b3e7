"""How long after a save `course watch` shows the result, next to a cold `course check`, in one run.

    uv run python bench/watch_latency.py [--runs 9] [--lesson lesson-1]

Works on a throwaway copy of the course whose student module is the reference solution with
one classic mistake (lesson 1: the index is never closed), so every run executes every check,
including the slowest, and the lesson never passes (the watcher stays on it). Each sample:
save the module (write a temporary file, rename it over the original, as editors do), then
wait for the watcher's rendered result in a pseudo-terminal. The cold figure is
`course check LESSON --against <the copy>`, a new process each time, as a student runs it.
Prints medians, their ratio, and the load average (the figures are wall-clock times).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from checker.registry import load_course  # noqa: E402
from tests.coursecopy import COURSE_SCRIPT, copy_course, course_env  # noqa: E402

MISTAKES = {  # lesson -> (module, text, replacement): a plausible bug that fails some checks, not all
    "lesson-1": ("context", "    finally:\n        index.close()\n", "    finally:\n        pass\n"),
}


def save(path: Path, text: str) -> float:
    """Save like an editor; return the moment the new file is in place."""
    tmp = path.with_name(f".{path.name}.bench")
    tmp.write_text(text)
    os.replace(tmp, path)
    return time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--lesson", default="lesson-1", choices=sorted(MISTAKES))
    args = parser.parse_args()
    course = load_course(ROOT)
    lesson = course.lesson(args.lesson)
    module, wrong, mistake = MISTAKES[lesson.id]
    with tempfile.TemporaryDirectory(prefix="watch-bench-") as tmp:
        root = copy_course(Path(tmp) / "course")
        student = root / "capstone" / "src" / course.package / f"{module}.py"
        source = (course.solutions / course.package / f"{module}.py").read_text()
        assert source.count(wrong) == 1, f"the mistake for {lesson.id} no longer applies to {module}.py"
        source = source.replace(wrong, mistake)
        save(student, source)
        child = pexpect.spawn(COURSE_SCRIPT, ["watch", lesson.id], env=course_env(root), cwd=str(root),
                              encoding="utf-8", timeout=300, dimensions=(60, 250))
        watch: list[float] = []
        cold: list[float] = []
        reported: list[float] = []
        try:
            child.expect(rf"first run  {lesson.id}[^\n]*\n")
            for n in range(args.runs):  # interleaved, so background load affects both alike
                saved = save(student, f"{source}\n# edit {n}\n")
                # A run's lines are written in one go, headline first: its arrival is the result's.
                child.expect(rf"{module}\.py saved  {lesson.id}[^\n]*\((\d+\.\d+) s\)")
                watch.append(time.perf_counter() - saved)
                reported.append(float(child.match.group(1)))
                started = time.perf_counter()
                proc = subprocess.run([COURSE_SCRIPT, "check", lesson.id, "--against", str(root / "capstone" / "src")],
                                      cwd=root, env=course_env(root), capture_output=True)
                cold.append(time.perf_counter() - started)
                assert proc.returncode == 1, proc.stdout[-500:]
        finally:
            child.send("q")
            child.expect(pexpect.EOF, timeout=60)
            child.close()
    w, c = statistics.median(watch), statistics.median(cold)
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, {args.runs} saves of {module}.py, medians:")
    print(f"  save -> result shown by course watch     {w:6.2f} s   (min {min(watch):.2f}, max {max(watch):.2f}; "
          f"the run itself {statistics.median(reported):.2f} s)")
    print(f"  course check {lesson.id} (cold process)   {c:6.2f} s   (min {min(cold):.2f}, max {max(cold):.2f})")
    print(f"  watch is {c / w:.1f}x faster than a cold check")


if __name__ == "__main__":
    main()
