"""Generate the student's starter package from the reference solutions.

`solutions/` is the single source. In it, each exercise is a marked region:

    # BEGIN SOLUTION lesson-1: what the student must do (not how),
    #   continued on comment lines indented like this one when it is long
    ...the reference code...
    # STUB                      (optional: starter code to use instead of `raise`,
    # ...                        written as comments so the reference never runs it)
    # END SOLUTION

In the starter the region becomes a `# TODO(lesson-1): ...` comment followed by the stub, or
by `raise NotImplementedError("TODO(lesson-1): write <function>")`. Everything outside the
regions is copied unchanged, so the starter never drifts from the reference.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION (?P<lesson>lesson-\d+):\s*(?P<todo>.*)$")
CONTINUED = re.compile(r"^(?P<indent>\s*)#   (?P<more>\S.*)$")  # a BEGIN line's wrapped description
STUB = re.compile(r"^\s*# STUB\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)")
IGNORED_PARTS = {"__pycache__", ".pytest_cache", "build", "dist", ".venv"}
TEXT_SUFFIXES = {".py", ".toml", ".md", ".txt", ".cfg", ".ini", ".conf", ".yaml", ".yml", ".json", ".env", ""}


class MarkerError(ValueError):
    """A solution file's markers do not pair up."""


def _todo_comment(indent: str, lesson: str, todo: str) -> list[str]:
    lines = textwrap.wrap(todo, width=max(40, 100 - len(indent) - len(f"# TODO({lesson}): "))) or ["finish this"]
    out = [f"{indent}# TODO({lesson}): {lines[0]}"]
    out += [f"{indent}#   {line}" for line in lines[1:]]
    return out


def _uncomment(line: str, where: str, index: int) -> str:
    """A stub line is stored as a comment in the solutions; the starter gets it live."""
    body = line.lstrip()
    if not body:
        return line
    if not body.startswith("#"):
        raise MarkerError(f"{where}:{index + 1}: a STUB line must be a comment (it would run in the solutions)")
    indent = line[: len(line) - len(body)]
    return indent + body[2:] if body.startswith("# ") else indent + body[1:]


def _description(lines: list[str], i: int, indent: str, first: str) -> tuple[str, int]:
    """The whole description of the BEGIN line at `i` (its wrapped lines joined), and the index of
    the first line after it."""
    parts = [first.strip()]
    j = i + 1
    while j < len(lines) and (more := CONTINUED.match(lines[j])) and more["indent"] == indent:
        parts.append(more["more"].strip())
        j += 1
    return " ".join(parts), j


def strip_solutions(text: str, where: str = "<text>") -> str:
    """The starter version of one solution file's text."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        begin = BEGIN.match(lines[i])
        if not begin:
            if STUB.match(lines[i]) or END.match(lines[i]):
                raise MarkerError(f"{where}:{i + 1}: marker without a BEGIN SOLUTION")
            out.append(lines[i])
            i += 1
            continue
        indent, lesson = begin["indent"], begin["lesson"]
        todo, j = _description(lines, i, indent, begin["todo"])
        function = next((m.group(1) for line in reversed(lines[:i]) if (m := DEF.match(line))), None)
        stub: list[str] | None = None
        while j < len(lines) and not END.match(lines[j]):
            if BEGIN.match(lines[j]):
                raise MarkerError(f"{where}:{j + 1}: BEGIN SOLUTION inside another region")
            if STUB.match(lines[j]):
                stub = []
            elif stub is not None:
                stub.append(_uncomment(lines[j], where, j))
            j += 1
        if j == len(lines):
            raise MarkerError(f"{where}:{i + 1}: BEGIN SOLUTION without END SOLUTION")
        out += _todo_comment(indent, lesson, todo)
        if stub is not None:
            out += stub
        else:
            what = f"write {function}" if function else "finish this"
            out.append(f'{indent}raise NotImplementedError("TODO({lesson}): {what}")')
        i = j + 1
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def reference_text(text: str) -> str:
    """A solution file as a student reads it after passing: the code, without the markers (and
    without the commented starter stubs) that only the generator needs."""
    out: list[str] = []
    in_stub = False
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if begin := BEGIN.match(line):
            _, i = _description(lines, i - 1, begin["indent"], begin["todo"])
            continue
        if STUB.match(line):
            in_stub = True
            continue
        if END.match(line):
            in_stub = False
            continue
        if not in_stub:
            out.append(line)
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def _source_files(solutions_root: Path) -> list[Path]:
    return sorted(p for p in solutions_root.rglob("*")
                  if p.is_file() and not IGNORED_PARTS.intersection(p.relative_to(solutions_root).parts)
                  and not p.name.endswith((".pyc", ".egg-info")))


def expected_starter(solutions_root: Path, exclude: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every starter file, keyed by its path relative to the package project root.

    `exclude`: paths (relative to `solutions_root`) that belong to the solutions alone.
    """
    files: dict[str, bytes] = {}
    for path in _source_files(solutions_root):
        rel = path.relative_to(solutions_root).as_posix()
        if rel in exclude:
            continue
        if path.suffix in TEXT_SUFFIXES:
            files[rel] = strip_solutions(path.read_text(encoding="utf-8"), rel).encode("utf-8")
        else:
            files[rel] = path.read_bytes()
    return files


def drift(solutions_root: Path, starter_root: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    """Starter files that differ from (or are missing compared with) what the generator makes."""
    return [rel for rel, data in expected_starter(solutions_root, exclude).items()
            if not (starter_root / rel).is_file() or (starter_root / rel).read_bytes() != data]


def write_starter(solutions_root: Path, starter_root: Path, state_dir: Path,
                  only: set[str] | None = None, exclude: tuple[str, ...] = ()) -> tuple[list[str], Path | None]:
    """Write the generated starter files that differ (or just those in `only`), backing up first."""
    from checker.student.backup import backup_files

    files = expected_starter(solutions_root, exclude)
    changed = [rel for rel in drift(solutions_root, starter_root, exclude) if only is None or rel in only]
    backup = backup_files([starter_root / rel for rel in changed], starter_root, state_dir, "starter")
    for rel in changed:
        dest = starter_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(files[rel])
    return changed, backup
