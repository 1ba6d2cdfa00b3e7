"""Reading the files a student controls: their answers file and the exam file they hand in.

Everything here treats its input as hostile. A file is read only if it is a regular file (not a
link, a FIFO or a device) no larger than its cap, and parsing turns every failure the standard
library can raise on bad TOML (a 5,000-digit integer is a ValueError, deep nesting a
RecursionError) into one QuizError line. Grading a class must never stop on one student's file.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path

from checker.quiz.bank import QuizError

MAX_ANSWERS_BYTES = 64 * 1024       # 56 answers take about 3 KB
MAX_EXAM_BYTES = 1024 * 1024        # an exam file with every question's code takes about 80 KB


def read_capped(path: Path, limit: int, what: str) -> str | None:
    """The text of `path`, or None when it does not exist. Anything odd is a one-line QuizError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a symlink (ELOOP), a folder, no permission
        raise QuizError(f"cannot read {what} {path.name}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise QuizError(f"{what} {path.name} is not a regular file")
        if info.st_size > limit:
            raise QuizError(f"{what} {path.name} is {info.st_size:,} bytes; the limit is {limit:,}")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:  # grew while we looked
        raise QuizError(f"{what} {path.name} is larger than the limit of {limit:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise QuizError(f"{what} {path.name} is not UTF-8 text") from None


def parse_toml(text: str, what: str, hint: str = "") -> dict[str, object]:
    """Parse TOML a student wrote; every failure becomes a QuizError naming the file."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
    except ValueError as exc:          # e.g. an integer longer than Python converts (4,300 digits)
        reason = str(exc).split(";")[0]
    except RecursionError:
        reason = "arrays or tables nested too deeply"
    raise QuizError(f"{what} is not valid TOML ({reason}){hint}")


def shown(value: object, width: int = 60) -> str:
    """A student's value, safe to echo into feedback: one line, printable, at most `width` characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        text = "a very long number"      # (repr of a 5,000-digit int raises ValueError)
    elif isinstance(value, (list, dict)):
        text = f"a {'list' if isinstance(value, list) else 'table'}"
    else:
        text = repr(value)
    text = "".join(ch if ch.isprintable() else " " for ch in text[: width * 4]).strip()
    return text if len(text) <= width else text[: width - 1] + "…"
