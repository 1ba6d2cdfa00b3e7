"""Resource groups (cgroups): memory and process limits that hold for a whole check.

An rlimit counts one process: four forked children may each use the whole memory limit. A group
counts them all together, and everything they start joins it, so a check is bounded as one.

Layout, under the grader's own group (one tree per batch, removed at the end):

    course-grade-<pid>/            the batch
        s<N>/                      one submission, owned by its sandbox user
            zygote/                the submission's zygote and the hosts it forks, until moved
            c<pid>/                one check: its hosts and spawned commands, with the limits

Both hierarchies are handled: cgroup v1 (a `memory` and a `pids` mount, as on many container
hosts) and v2 (one unified tree with the memory and pids controllers). Creating groups needs
root, or a delegated subtree; where neither is there, `BatchGroups.create` says why and grading
falls back to per-process limits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids")
ROOT = Path("/sys/fs/cgroup")


class GroupsUnavailable(Exception):
    """This machine will not give the grader resource groups; the text says why."""


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's group path, from /proc/self/cgroup."""
    paths: dict[str, str] = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


@dataclass
class Group:
    """One group, as a folder per hierarchy (two on v1, one on v2)."""

    dirs: list[Path]
    v2: bool

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def child(self, name: str) -> Group:
        dirs = [d / name for d in self.dirs]
        for folder in dirs:
            folder.mkdir(exist_ok=True)
        return Group(dirs, self.v2)

    def limit(self, memory_mb: int, processes: int) -> None:
        memory = str(memory_mb * 1024 * 1024)
        for folder in self.dirs:
            if self.v2:
                _write(folder / "memory.max", memory)
                _write(folder / "memory.swap.max", "0", optional=True)
                _write(folder / "pids.max", str(processes))
            elif (folder / "memory.limit_in_bytes").exists():
                _write(folder / "memory.limit_in_bytes", memory)
                _write(folder / "memory.memsw.limit_in_bytes", memory, optional=True)  # no escape into swap
            elif (folder / "pids.max").exists():
                _write(folder / "pids.max", str(processes))

    def enable_controllers(self) -> None:
        """v2 only: let this group's children have their own memory and pids limits."""
        if self.v2:
            for folder in self.dirs:
                _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))

    def give_to(self, uid: int) -> None:
        """Let `uid` move its own processes into this group (and, on v2, between its children)."""
        for folder in self.dirs:
            os.chown(folder, uid, uid)
            for name in ("cgroup.procs", "tasks", "cgroup.threads"):
                if (folder / name).exists():
                    os.chown(folder / name, uid, uid)

    def add(self, pid: int) -> None:
        for path in self.procs_files:
            _write(Path(path), str(pid))

    def members(self) -> set[int]:
        found: set[int] = set()
        for folder in self.dirs:
            for sub in [folder, *[p for p in folder.iterdir() if p.is_dir()]] if folder.is_dir() else []:
                try:
                    found.update(int(pid) for pid in (sub / "cgroup.procs").read_text().split())
                except OSError:
                    continue
        return found

    def kill(self) -> None:
        """Kill every process in the group and its children, until none is left (fork bombs too)."""
        if self.v2:
            for folder in self.dirs:
                _write(folder / "cgroup.kill", "1", optional=True)
        for _ in range(200):
            members = self.members()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        """Kill what is left and delete the group's folders (children first)."""
        self.kill()
        for folder in self.dirs:
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir(sub)
            _rmdir(folder)


def _write(path: Path, value: str, optional: bool = False) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError:
        if not optional:
            raise


def _rmdir(folder: Path) -> None:
    for _ in range(50):  # a killed process leaves its group a moment after it is reaped
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.01)


def batch_groups(name: str) -> Group:
    """A new group for one batch under the grader's own, or GroupsUnavailable with the reason."""
    own = _own_paths()
    if all(c in own for c in CONTROLLERS) and all((ROOT / c).is_dir() for c in CONTROLLERS):
        dirs = [ROOT / c / own[c].lstrip("/") / name for c in CONTROLLERS]
        v2 = False
    elif "" in own and (ROOT / "cgroup.controllers").is_file():
        available = (ROOT / "cgroup.controllers").read_text().split()
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            raise GroupsUnavailable(f"the cgroup v2 tree has no {' or '.join(missing)} controller")
        dirs = [ROOT / own[""].lstrip("/") / name]
        v2 = True
    else:
        raise GroupsUnavailable("no cgroup memory and pids controllers are mounted under /sys/fs/cgroup")
    made: list[Path] = []
    try:
        for folder in dirs:
            folder.mkdir()
            made.append(folder)
        group = Group(dirs, v2)
        group.enable_controllers()
    except OSError as exc:
        for folder in made:
            _rmdir(folder)
        raise GroupsUnavailable(f"cannot create a cgroup under {dirs[0].parent} ({exc.strerror or exc})") from None
    return group
