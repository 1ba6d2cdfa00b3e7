"""How long a student waits for `course check lesson-1`, next to the floor measured in the same run.

    uv run python bench/check_latency.py [--runs 7] [--lesson lesson-1]

Every run is a cold process, exactly as a student starts it. The floor is `python -c "import mcp"`:
no checker can start faster than the SDK it tests imports. Prints medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], expect: int) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, env=dict(os.environ, COURSE_ROOT=str(ROOT)))
    elapsed = time.perf_counter() - started
    if proc.returncode != expect:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}, expected {expect}:\n{proc.stdout.decode()[-800:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--lesson", default="lesson-1")
    args = parser.parse_args()
    course = str(Path(sys.executable).with_name("course"))
    commands = {
        "floor: python -c 'import mcp'": ([sys.executable, "-c", "import mcp"], 0),
        f"course check {args.lesson} --against solutions": ([course, "check", args.lesson, "--against", "solutions"], 0),
        f"course check {args.lesson} (starter, all failing)": ([course, "check", args.lesson], 1),
    }
    timed(*commands[f"course check {args.lesson} --against solutions"])  # warm the OS cache and bytecode once
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleave, so background load affects every command alike
        for name, (cmd, expect) in commands.items():
            samples[name].append(timed(cmd, expect))
    floor = statistics.median(samples["floor: python -c 'import mcp'"])
    print(f"{os.cpu_count()} cores, {args.runs} cold runs each, medians:")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<48} {median:6.2f} s   {median / floor:4.2f}x floor   (min {min(values):.2f}, max {max(values):.2f})")


if __name__ == "__main__":
    main()
