"""The result model every consumer shares: terminal, notebook, JSON, progress file, grader.

Results cross a process boundary (the check runs in a child), so they are plain data that
round-trips through JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Outcome = Literal["passed", "failed", "skipped"]


@dataclass
class CheckResult:
    id: str
    title: str
    points: int
    outcome: Outcome
    message: str = ""
    hint: str = ""
    duration: float = 0.0
    fraction: float | None = None  # partial credit in [0, 1] (e.g. a multiple-select question)
    cpu: float = 0.0  # CPU seconds the check's process used: how busy it keeps a core (see run_forked)

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def earned(self) -> float:
        if self.fraction is not None:
            return round(self.points * max(0.0, min(1.0, self.fraction)), 2)
        return self.points if self.passed else 0


@dataclass
class BrokenModule:
    """Why one module of the student's package does not import, and what to do about it."""

    module: str       # the module the lesson imports: "context"
    file: str         # where the problem is, relative to the edition: "research_desk/context.py"
    line: int = 0     # 0 when no line is to blame (a deleted file, a process that ended)
    code: str = ""    # the text of that line
    column: int = 0   # 1-based, for a syntax error
    error: str = ""   # "SyntaxError: expected ':'"
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BrokenModule:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def headline(self) -> str:
        return f"{self.file} does not import" + (f" (line {self.line})" if self.line else "")

    def details(self) -> list[str]:
        """The offending line with a caret under a syntax error's column, the error, and the fix."""
        lines = []
        if self.line and self.code:
            gutter = f"{self.line} | "
            lines.append(gutter + self.code)
            if self.column:
                lines.append(" " * (len(gutter) - 2) + "| " + " " * (self.column - 1) + "^")
        lines.append(self.error)
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return lines


@dataclass
class LessonResult:
    lesson: str
    title: str
    edition: str
    checks: list[CheckResult] = field(default_factory=list)
    error: str = ""  # the lesson could not be checked at all (the runner's fault, not a check's)
    duration: float = 0.0
    broken: list[BrokenModule] = field(default_factory=list)  # modules that do not import: no check ran

    @property
    def passed(self) -> int:
        return sum(c.outcome == "passed" for c in self.checks)

    @property
    def failed(self) -> int:
        return sum(c.outcome == "failed" for c in self.checks)

    @property
    def skipped(self) -> int:
        return sum(c.outcome == "skipped" for c in self.checks)

    @property
    def earned(self) -> float:
        return sum(c.earned for c in self.checks)

    @property
    def available(self) -> int:
        """Points that could be earned: a skipped check (a program this machine lacks) is not graded."""
        return sum(c.points for c in self.checks if c.outcome != "skipped")

    @property
    def ok(self) -> bool:
        """All graded checks passed (skipped ones do not count against the student)."""
        return not self.error and self.failed == 0 and bool(self.checks)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data.update(passed=self.passed, failed=self.failed, skipped=self.skipped,
                    earned=self.earned, available=self.available, ok=self.ok)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LessonResult:  # parsed JSON
        checks = [CheckResult(**c) for c in data.get("checks", [])]
        broken = [BrokenModule.from_json(b) for b in data.get("broken", [])]
        return cls(lesson=str(data["lesson"]), title=str(data["title"]), edition=str(data["edition"]),
                   checks=checks, error=str(data.get("error", "")), duration=float(data.get("duration", 0.0)),
                   broken=broken)
