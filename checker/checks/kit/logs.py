"""Logging where student code runs, as the checks that read it need it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from checker.target import Target

__all__ = ["plain_tracebacks"]


@asynccontextmanager
async def plain_tracebacks(target: Target) -> AsyncIterator[None]:
    """While the block runs, the SDK's root handler prints logged tracebacks plainly.

    MCPServer sets up rich's handler on the root logger where student code runs, and it draws every
    logged traceback with syntax highlighting: ~0.15 s of CPU each. A check that provokes logged
    errors and reads them through a handler of its own gains nothing from that drawing; the records
    and their handlers are otherwise untouched.
    """
    root = target.library("logging").getLogger()
    drawing: list[Any] = [h for h in root.handlers if getattr(h, "rich_tracebacks", None) is True]
    for handler in drawing:
        handler.rich_tracebacks = False
    try:
        yield
    finally:
        for handler in drawing:
            handler.rich_tracebacks = True
