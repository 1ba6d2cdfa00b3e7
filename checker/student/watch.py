"""`course watch`: re-check the lesson on every save and show only what changed.

The student keeps one terminal open beside the editor. Each save of a file in their package
(or of the lesson's notebook) re-runs the lesson's checks in a fork of a warm worker
(`checker.runner.warm`), so feedback arrives in about the time the checks themselves take. A syntax
error or crashing code costs that run's checks, never the watcher. When the lesson passes,
the watcher moves on to the next one.

File events are unreliable on network drives and WSL2's Windows drives, so there the watcher
polls instead (`--poll` forces it), and it falls back to polling by itself when the operating
system refuses to watch (for example when the inotify watch limit is reached).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.text import Text

from checker.cli.render import broken_lines, hanging, indented
from checker.registry import RUN, Course, Lesson
from checker.runner.results import CheckResult, LessonResult

# Filesystems where inotify/FSEvents miss changes made by another machine (or by Windows).
REMOTE_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "drvfs", "fuse.sshfs", "vboxsf",
                      "fuse.vmhgfs-fuse", "prl_fs", "davfs", "afs"}
QUIET_MS = 30  # a save is often several events (write, rename): wait this long for the rest
POLL_MS = 150  # how often to look at the files when polling
KEYS_HELP = "h hints · r re-run · q quit"

WatchFn = Callable[..., Iterator[set[tuple[Any, str]]]]


def polling_reason(paths: list[Path], mounts: str | None = None) -> str:
    """Why file events cannot be trusted for `paths` (empty if they can).

    `mounts` is the text of /proc/mounts (read here when not given; absent on macOS).
    """
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    table = []
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            table.append((parts[1].replace("\\040", " "), parts[2]))
    for path in paths:
        resolved = str(path.resolve())
        best = max((m for m in table if resolved == m[0] or resolved.startswith(m[0].rstrip("/") + "/")),
                   key=lambda m: len(m[0]), default=None)
        if best and best[1] in REMOTE_FILESYSTEMS:
            return f"{path} is on a {best[1]} drive, where file events are unreliable"
    return ""


def _snapshot(paths: tuple[Path, ...], keep: Callable[[Any, str], bool]) -> dict[str, tuple[int, ...]]:
    """A signature of every file under `paths` that `keep` accepts."""
    seen: dict[str, tuple[int, ...]] = {}
    for root in paths:
        for folder, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", ".ipynb_checkpoints")]
            for name in files:
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if keep(None, path):
                    seen[path] = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
    return seen


def poll_files(*paths: Path, watch_filter: Callable[[Any, str], bool], poll_delay_ms: int = POLL_MS,
               rust_timeout: int = 200, **_: Any) -> Iterator[set[tuple[Any, str]]]:
    """Changes found by looking at the files every `poll_delay_ms`, in the shape watchfiles yields.

    Not watchfiles' own polling: it compares modification times to the whole second, so a
    second save within the same second (a quick fix after a typo) would go unnoticed. This
    compares nanosecond times, size and inode. Yields an empty set every `rust_timeout` ms.
    """
    from watchfiles import Change

    before = _snapshot(paths, watch_filter)
    quiet_since = time.monotonic()
    while True:
        time.sleep(poll_delay_ms / 1000)
        now = _snapshot(paths, watch_filter)
        changed = {(Change.modified, p) for p in now if before.get(p) != now[p]}
        changed |= {(Change.deleted, p) for p in before if p not in now}
        before = now
        if changed or time.monotonic() - quiet_since >= rust_timeout / 1000:
            quiet_since = time.monotonic()
            yield changed


@dataclass
class Change:
    """What one run changed compared with the run before it."""

    fixed: list[CheckResult] = field(default_factory=list)      # failing before, passing now
    broken: list[CheckResult] = field(default_factory=list)     # passing (or new) before, failing now
    different: list[CheckResult] = field(default_factory=list)  # still failing, for another reason
    still: list[CheckResult] = field(default_factory=list)      # still failing, same reason


def compare(before: LessonResult | None, now: LessonResult) -> Change:
    """Sort the checks of `now` by how they moved since `before`."""
    old = {c.id: c for c in before.checks} if before else {}
    change = Change()
    for check in now.checks:
        prev = old.get(check.id)
        if check.outcome == "failed":
            if prev is None or prev.outcome != "failed":
                change.broken.append(check)
            elif prev.message != check.message:
                change.different.append(check)
            else:
                change.still.append(check)
        elif prev is not None and prev.outcome == "failed" and check.outcome == "passed":
            change.fixed.append(check)
    return change


def _failures(label: str, checks: list[CheckResult], hints: bool) -> list[RenderableType]:
    """Failing checks grouped by message, so one syntax error is said once, not once per check."""
    groups: dict[str, list[CheckResult]] = {}
    for check in checks:
        groups.setdefault(check.message, []).append(check)
    lines: list[RenderableType] = []
    for message, group in groups.items():
        for check in group:
            lines.append(hanging(Text(" ✗ ", style="bold red"), Text.assemble((f"{label}: ", "red"), check.title)))
        lines.append(indented(Text(message, style="red")))
        if hints and len(group) == 1 and group[0].hint:
            lines.append(indented(Text.assemble(("hint: ", "bold cyan"), group[0].hint)))
    return lines


def headline(result: LessonResult, trigger: str) -> Text:
    """`12:03:04  context.py saved  lesson-1  6/8 checks  15/20 pt  (0.62 s)`."""
    colour = "green" if result.ok else ("red" if result.error or result.failed else "yellow")
    total = len(result.checks)
    return Text.assemble((time.strftime("%H:%M:%S"), "dim"), f"  {trigger}  ", (result.lesson, "bold"),
                         (f"  {result.passed}/{total} checks", f"bold {colour}"),
                         f"  {result.earned:g}/{result.available} pt", (f"  ({result.duration:.2f} s)", "dim"))


def render_run(before: LessonResult | None, now: LessonResult, trigger: str) -> RenderableType:
    """The lines one run adds to the screen: a headline, then only what changed."""
    parts: list[RenderableType] = [headline(now, trigger)]
    if now.error:
        parts.append(Text(f" could not check this lesson: {now.error}", style="bold red"))
        return Group(*parts)
    if now.broken:
        return Group(*parts, *broken_lines(now.broken))
    if before is None or before.error or before.lesson != now.lesson:
        for check in now.checks:
            if check.outcome == "passed":
                parts.append(hanging(Text(" ✓ ", style="bold green"), Text(check.title)))
            elif check.outcome == "skipped":
                parts.append(hanging(Text(" ○ ", style="bold yellow"),
                                     Text.assemble(check.title, (f"  ({check.message})", "yellow"))))
        parts += _failures("failing", [c for c in now.checks if c.outcome == "failed"], hints=False)
        return Group(*parts)
    change = compare(before, now)
    parts += [hanging(Text(" ✓ ", style="bold green"), Text.assemble(("fixed: ", "green"), c.title))
              for c in change.fixed]
    parts += _failures("now failing", change.broken, hints=True)
    parts += _failures("still failing, new reason", change.different, hints=True)
    if not (change.fixed or change.broken or change.different):
        parts.append(Text(" no change", style="dim"))
    if change.still:
        parts.append(hanging(Text(" "), Text(f"{len(change.still)} still failing as before: "
                                             + ", ".join(c.id for c in change.still), style="dim")))
    return Group(*parts)


def hints_for(result: LessonResult) -> RenderableType:
    failing = [c for c in result.checks if c.outcome == "failed"]
    if not failing:
        return Text(" nothing is failing: no hints needed", style="green")
    lines: list[RenderableType] = []
    for check in failing:
        lines.append(hanging(Text(" ✗ ", style="bold red"), Text.assemble(check.title, (f"  ({check.id})", "dim"))))
        lines.append(indented(Text(check.message, style="red")))
        if check.hint:
            lines.append(indented(Text.assemble(("hint: ", "bold cyan"), check.hint)))
    return Group(*lines)


def next_lesson(course: Course, after: Lesson, passed: set[str]) -> Lesson | None:
    """The next available code lesson not passed yet: later ones first, then any skipped earlier."""
    candidates = [lesson for lesson in course.lessons
                  if lesson.available and lesson.kind == "code" and lesson.id not in passed]
    later = [lesson for lesson in candidates if lesson.number > after.number]
    return (later or candidates)[0] if candidates else None


@contextmanager
def _keys(enabled: bool) -> Iterator[Callable[[], str]]:
    """Single key presses from a terminal (no Enter needed); a no-op reader elsewhere."""
    if not enabled:
        yield lambda: ""
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read() -> str:
        keys = ""
        while select.select([fd], [], [], 0)[0]:
            data = os.read(fd, 64)
            if not data:
                break
            keys += data.decode(errors="ignore")
        return keys

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class Watcher:
    """One watch session: a warm worker, the files to watch, and the last result shown."""

    def __init__(self, course: Course, lesson: Lesson, console: Console, *, poll: bool = False,
                 watch_fn: WatchFn | None = None, poll_fn: WatchFn = poll_files,
                 interactive: bool | None = None) -> None:
        from checker.runner.warm import WarmWorker

        self.course, self.lesson, self.console = course, lesson, console
        self.package_dir = course.starter / course.package
        self.poll = poll  # the student asked for polling
        self.worker = WarmWorker(course)
        self._watch_fn = watch_fn
        self._poll_fn = poll_fn
        self.interactive = sys.stdin.isatty() if interactive is None else interactive
        self.last: LessonResult | None = None
        self.force_polling = poll  # polling now (asked for, chosen for the drive, or fallen back to)
        self._events: Iterator[set[tuple[Any, str]]] = iter(())

    def relevant(self, change: Any, path: str) -> bool:
        """Whether a changed path is a save worth re-checking: a package file or the lesson's notebook."""
        p = Path(path)
        if "__pycache__" in p.parts or ".ipynb_checkpoints" in p.parts or p.name.startswith((".", "#")) \
                or p.name.endswith(("~", ".pyc", ".swp", ".swx", ".tmp")) or p.is_dir():
            return False  # editor scratch files, bytecode, and folders (polling reports them too)
        if p.is_relative_to(self.package_dir):
            return True
        return p == (self.course.root / self.lesson.notebook)

    def _watch(self, force_polling: bool) -> Iterator[set[tuple[Any, str]]]:
        import watchfiles

        paths = [p for p in (self.package_dir, self.course.root / Path(self.lesson.notebook).parent) if p.exists()]
        if force_polling:
            return self._poll_fn(*paths, watch_filter=self.relevant, poll_delay_ms=POLL_MS, rust_timeout=200)
        fn = self._watch_fn or watchfiles.watch
        return fn(*paths, watch_filter=self.relevant, force_polling=False, step=QUIET_MS, rust_timeout=200,
                  yield_on_timeout=True, raise_interrupt=False)

    def run_once(self, trigger: str) -> LessonResult:
        """Check the current lesson, show what changed, remember progress."""
        from checker.student.progress import record

        self.console.print(Text(f"… checking {self.lesson.id}", style="dim"), end="\r")
        result = self.worker.check(self.lesson)
        if not result.error:
            record(self.course.state_dir, result)
        self.console.print(render_run(self.last, result, trigger))
        self.last = result
        return result

    def _advance(self) -> bool:
        """After a pass: switch to the next lesson. False when every lesson passes."""
        from checker.student.progress import load_progress

        passed = {k for k, v in load_progress(self.course.state_dir).items() if v.get("passed_once")}
        following = next_lesson(self.course, self.lesson, passed)
        self.console.print()
        self.console.print(hanging(Text(" 🎉 "), Text.assemble((f"{self.lesson.id} passes", "bold green"),
                                                             f" — {self.lesson.title}.")))
        self.console.print(f"    the reference solution: {RUN} solution {self.lesson.number}", markup=False)
        if following is None:
            self.console.print(Text(" Every available lesson passes. Well done!", style="bold green"))
            return False
        self.lesson = following
        self.last = None
        self.console.print(hanging(Text(" Moving on to "), Text(f"{following.id}: {following.title}", style="bold")))
        self.console.print(f"    notebook: {following.notebook}   ({RUN} open {following.number})\n", markup=False)
        return True

    def _describe(self, changes: set[tuple[Any, str]]) -> str:
        names = sorted({Path(path).name for _, path in changes})
        return (", ".join(names[:3]) + (" …" if len(names) > 3 else "")) + " saved"

    def _changes(self) -> set[tuple[Any, str]] | None:
        """The next batch of saves (empty on a quiet tick), or None once watching has ended."""
        while True:
            try:
                return next(self._events)
            except StopIteration:
                return None
            except (OSError, RuntimeError) as exc:  # the OS refused to watch: poll instead
                if self.force_polling:
                    raise
                self.force_polling = True
                self.console.print(Text(f"File events are not available ({exc}); polling instead.", style="yellow"))
                self._events = self._watch(True)

    def run(self) -> int:
        """Watch until the student quits (q or Ctrl-C) or every lesson passes; the exit code."""
        reason = "" if self.poll else polling_reason([self.package_dir])
        self.force_polling = self.poll or bool(reason)
        mode = "polling" + (f" ({reason})" if reason else "") if self.force_polling else "file events"
        self.console.print(Text(f"Watching {self.package_dir.relative_to(self.course.root)}/ and the lesson "
                                f"notebook ({mode}).", style="dim"))
        self.console.print(Text("Starting the checker…", style="dim"))
        try:
            self._events = self._watch(self.force_polling)
            if self._changes() is None:  # watching starts before the first run, so no save is missed
                return 0
            self.worker.start()
            with _keys(self.interactive) as keys:
                if self.interactive:
                    self.console.print(Text(KEYS_HELP, style="dim"))
                trigger = "first run"
                while True:
                    if trigger:
                        result = self.run_once(trigger)
                        if result.ok and not self._advance():
                            return 0
                        trigger = "first run" if result.ok else ""
                        continue
                    changes = self._changes()
                    if changes is None:
                        return 0
                    pressed = keys()
                    if "q" in pressed:
                        return 0
                    if "h" in pressed and self.last is not None:
                        self.console.print(hints_for(self.last))
                    if changes:
                        trigger = self._describe(changes)
                    elif "r" in pressed:
                        trigger = "re-run"
        except KeyboardInterrupt:
            return 0
        finally:
            self.worker.close()
