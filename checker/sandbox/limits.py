"""Per-process limits and unprivileged users: what every process running a check or student code gets.

These hold for one process each. What must hold for a whole check (all its processes together)
is a resource group, when the machine allows one (`checker.sandbox.cgroups`).
"""

from __future__ import annotations

import os
import resource
import signal
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    wall_seconds: float
    memory_mb: int
    output_mb: int
    max_processes: int = 64  # a fork bomb stops here (per user without a group, per check with one)


def apply_limits(limits: Limits) -> None:
    """Address space, written file size and CPU time for this process and what it starts."""
    mem = limits.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    size = limits.output_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-long write fails with EFBIG instead of killing
    cpu = int(limits.wall_seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))


def drop_privileges(uid: int, limits: Limits | None = None) -> None:
    """Become `uid` (and its own group), with no supplementary groups, for good.

    With `limits` and no resource group to count processes, a per-user process limit too.
    """
    if limits is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    os.environ.update(USER=f"sandbox{uid}", LOGNAME=f"sandbox{uid}")


def kill_uid(uid: int) -> None:
    """Kill every process left running as `uid`: those that escaped a process group too.

    A fork bomb makes new processes while we sweep, so sweep again until one pass finds none.
    """
    for _ in range(200):
        found = False
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid and not is_zombie(entry):
                        os.kill(int(entry.name), signal.SIGKILL)
                        found = True
                except (OSError, ProcessLookupError):
                    pass
        if not found:
            return


def is_zombie(proc: Path) -> bool:
    """Whether /proc/<pid> is a process that has ended and only waits for its parent to reap it."""
    try:
        stat = (proc / "stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2:].startswith(("Z", "X"))
