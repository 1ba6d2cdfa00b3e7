"""One submission's world while it is graded: its sandbox, its zygote, its private network, its groups.

Started in the process that grades the submission (a fork of the batch worker), before any of
its lessons run, and stopped after the last one. Everything student code can run in is inside;
the checks, which judge, stay outside and reach it only through the zygote's socket and loopback.

The three ways to run, chosen by the preflight (`checker.sandbox.preflight`):

- bubblewrap: a mount, PID, IPC and UTS namespace of its own (`checker.sandbox.bwrap`), inside a
  private network namespace shared with this submission's checks; as root, student code runs as
  the submission's own unprivileged user too.
- users: no namespaces (bubblewrap cannot make them here: an unprivileged container, say), so
  student code runs as a dedicated unprivileged user, in a folder only it and the checks can
  read, with per-process limits. Needs root.
- none: the grader's own user (`course grade --no-sandbox`, for trusted code only).
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO

from checker.sandbox import bwrap
from checker.sandbox.cgroups import Group
from checker.sandbox.limits import Limits, kill_uid
from checker.sandbox.netns import enter_private_network

START_SECONDS = 60  # a zygote imports the SDK once; on a loaded machine that can take a while


class Mode(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    USERS = "users"
    NONE = "none"


@dataclass
class SandboxPlan:
    """What the preflight decided for the whole batch; plain data, so it crosses into the worker."""

    mode: Mode
    uid: int | None = None               # root: this submission's unprivileged user
    groups: list[str] = field(default_factory=list)  # its resource group's folders (empty: none)
    groups_v2: bool = False
    runtime: list[str] = field(default_factory=list)  # read-only inside: interpreter, venv, uv
    checker: str = ""
    hidden: str = ""
    path_dirs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["mode"] = self.mode.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SandboxPlan:
        values = dict(data)
        values["mode"] = Mode(str(values["mode"]))
        return cls(**values)  # type: ignore[arg-type]


@dataclass
class Running:
    """What a check needs to reach the submission's sandbox (passed to it as plain data)."""

    socket: str
    scratch: str
    uid: int | None
    groups: list[str]
    groups_v2: bool


class SubmissionSandbox:
    """Start with `start()`, which returns what checks need; always `stop()` afterwards."""

    def __init__(self, plan: SandboxPlan, edition: Path, workdir: Path, limits: Limits) -> None:
        self.plan, self.edition, self.workdir, self.limits = plan, edition, workdir, limits
        self.process: subprocess.Popen[bytes] | None = None
        self.group: Group | None = None
        self.log: IO[bytes] | None = None  # what the zygote says on stderr (why it did not start, say)

    def start(self) -> Running:
        plan, uid = self.plan, self.plan.uid
        if plan.mode is Mode.BUBBLEWRAP:
            enter_private_network()  # this process and all it starts: checks, sandbox, servers
        scratch = self._private_folder("scratch")
        run = self._private_folder("run")
        if plan.groups:
            self.group = Group([Path(d) for d in plan.groups], plan.groups_v2)
            if uid is not None:
                self.group.give_to(uid)
            self.group.enable_controllers()
            zygote_group = self.group.child("zygote")
            if uid is not None:
                zygote_group.give_to(uid)
        path = run / "zygote.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        if uid is not None:
            os.chown(path, uid, uid)
        listener.listen(64)
        argv = [sys.executable, "-m", "checker.host.zygote", str(listener.fileno()),
                str(self.limits.wall_seconds), str(self.limits.memory_mb), str(self.limits.output_mb)]
        argv = self._wrap(argv, scratch)
        join = zygote_group.procs_files if plan.groups else []
        self.log = open(run / "zygote.log", "w+b")  # noqa: SIM115 - kept open while the zygote writes to it
        self.process = subprocess.Popen(argv, pass_fds=[listener.fileno()], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self.log, env=_zygote_env(),
                                        cwd="/", preexec_fn=lambda: _join(join))
        listener.close()
        self._wait_ready()
        return Running(str(path), str(scratch), uid, [str(d) for d in self.group.dirs] if self.group else [],
                       plan.groups_v2)

    def _private_folder(self, name: str) -> Path:
        """A folder of this submission's that only its user (and root) may enter."""
        folder = self.workdir / name
        folder.mkdir(mode=0o700, exist_ok=True)
        if self.plan.uid is not None:
            os.chown(folder, self.plan.uid, self.plan.uid)
        return folder

    def _wrap(self, argv: list[str], scratch: Path) -> list[str]:
        plan = self.plan
        if plan.mode is Mode.BUBBLEWRAP:
            view = bwrap.View(runtime=[Path(p) for p in plan.runtime], checker=Path(plan.checker),
                              hidden=Path(plan.hidden) if plan.hidden else None, edition=self.edition,
                              scratch=scratch, path_dirs=[Path(p) for p in plan.path_dirs])
            return bwrap.command(view, argv, uid=plan.uid)
        if plan.uid is not None:
            return ["setpriv", f"--reuid={plan.uid}", f"--regid={plan.uid}", "--clear-groups", "--inh-caps=-all",
                    "--bounding-set=-all", "--no-new-privs", "--", *argv]
        return argv

    def _wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None and self.log is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_SECONDS)
        line = self.process.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.process.kill()
            self.process.wait()
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError("the sandbox for this submission did not start: " + (" | ".join(tail) or "no output"))

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # bwrap's death takes the sandbox's whole PID namespace with it
            self.process.wait()
        if self.group is not None:
            self.group.remove()
        if self.plan.mode is Mode.USERS and self.plan.uid is not None:
            kill_uid(self.plan.uid)  # no namespace to end with the sandbox: find what it left running
            _sweep(self.plan.uid)
        if self.log is not None:
            self.log.close()
        shutil.rmtree(self.workdir / "scratch", ignore_errors=True)
        shutil.rmtree(self.workdir / "run", ignore_errors=True)


SHARED_TEMP = ("/tmp", "/var/tmp", "/dev/shm")


def _sweep(uid: int) -> None:
    """Without a private /tmp, remove what the submission's user left in the shared temp folders."""
    for folder in SHARED_TEMP:
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                continue


def _join(procs_files: list[str]) -> None:
    """In the new process, before it runs anything: into the submission's resource group."""
    for path in procs_files:
        with open(path, "w") as handle:
            handle.write(str(os.getpid()))


def _zygote_env() -> dict[str, str]:
    """The zygote's environment (bubblewrap replaces it with its own short list inside)."""
    keep = ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["HOME"] = "/tmp"
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])  # the `checker` package itself
    return env

