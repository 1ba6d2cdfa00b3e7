"""The protocol revisions a check's client speaks.

Every client-facing requirement holds for a 2026-07-28 client (the SDK's `auto` mode negotiates
it) and for a 2025-11-25 one (`legacy`): checks loop over `MODES` or take `mode` from
`each_mode`, so an answer that only works in one era fails. A check whose eras spend most of
their time waiting (a window to pass, a timeout to fire) runs them `side_by_side`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODES = {"auto": MODERN, "legacy": LEGACY}  # the client's mode -> the revision it ends up speaking

each_mode = pytest.mark.parametrize("mode", list(MODES))


async def side_by_side(era_check: Callable[[str, str], Awaitable[None]]) -> None:
    """Run `era_check(mode, era)` for every era at once, and fail as the sequential loop would.

    Both eras wait in the same stretch of time, so the check takes as long as its slower era
    instead of both together. Each era must use its own server and state, and draw its random
    inputs before its first await, so a seed replays it exactly. If any era fails, the failure of
    the first one in `MODES` order is raised as it is (not in an exception group), so the student
    reads the same message a loop over `MODES` would give.
    """
    failures: dict[str, BaseException] = {}

    async def run(mode: str, era: str) -> None:
        try:
            await era_check(mode, era)
        except anyio.get_cancelled_exc_class():
            raise
        except BaseException as exc:  # noqa: BLE001 - pytest.fail is a BaseException; raised below, in era order
            failures[mode] = exc

    async with anyio.create_task_group() as group:
        for mode, era in MODES.items():
            group.start_soon(run, mode, era)
    for mode in MODES:
        if mode in failures:
            raise failures[mode]
