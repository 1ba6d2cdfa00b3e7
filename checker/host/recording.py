"""Watch what a student's lifespan-style factory yields, without changing what it does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType
from typing import Any


@contextmanager
def recording_yields(module: ModuleType, name: str) -> Iterator[list[Any]]:
    """While the block runs, `module.<name>(...)` still works, and each value it yields is appended
    to the list this yields. Code that looks the factory up at call time (as a server's lifespan
    does) goes through the recorder; the original is put back afterwards."""
    original = getattr(module, name)
    seen: list[Any] = []

    @asynccontextmanager
    async def recorder(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with original(*args, **kwargs) as value:
            seen.append(value)
            yield value

    setattr(module, name, recorder)
    try:
        yield seen
    finally:
        setattr(module, name, original)
