"""A clock the check holds: time moves only when the check moves it.

Student code that takes a `clock=` (TaskStore, RequestGuard, ErrorDesk's receipts) is handed one
of these, through `target.expose`, so a check tests what happens once a ttl or a window has
passed by moving the clock on, at once, instead of sleeping through it.
"""

from __future__ import annotations

import random


class CheckClock:
    """Monotonic seconds, from a random start, that advance only by `advance`."""

    def __init__(self) -> None:
        self.now = random.uniform(1_000.0, 100_000.0)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
