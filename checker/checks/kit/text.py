"""Random words for fixtures, and the text a tool result carries.

Fixtures are random so that no answer can be memorised; they come from the check's own seeded
`random.Random` (or the fork's seeded module-level generator), so a failure replays with the
same `COURSE_CHECK_SEED`."""

from __future__ import annotations

import random
import string
from typing import Any


def word(rng: random.Random | None = None, low: int = 4, high: int = 9) -> str:
    """A lower-case word of `low` to `high` letters (from `rng`, else the fork's seeded generator)."""
    source: Any = rng if rng is not None else random
    return "".join(source.choices(string.ascii_lowercase, k=source.randint(low, high)))


def text_of(result: Any) -> str:
    """Every text block of a tool result (or any result with `content`), one per line."""
    return "\n".join(getattr(block, "text", "") for block in (getattr(result, "content", None) or []))
