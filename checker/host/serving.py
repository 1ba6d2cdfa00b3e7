"""Serve an ASGI app with a real uvicorn on a free loopback port, for as long as a block runs."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio


class ServerDidNotStart(Exception):
    """uvicorn stopped before it was listening: the app's startup (its lifespan) failed."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve_asgi(app: Any, *, path: str = "/mcp", graceful: bool = True) -> AsyncIterator[str]:
    """Yield the endpoint URL while uvicorn serves `app`.

    On exit uvicorn shuts down gracefully (connections drained, the app's lifespan exited),
    which takes uvicorn at least 0.1 s. With `graceful=False` the server just stops, as if its
    process had been killed, for callers that do not test shutdown.
    """
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    stopped: list[bool] = []

    async def serve() -> None:
        try:
            await server.serve()
        except SystemExit:  # uvicorn's answer to a failed startup: here it must not end the process
            stopped.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        with anyio.fail_after(10):
            while not server.started:
                if server.should_exit or stopped:
                    raise ServerDidNotStart("the HTTP server did not start: its startup (lifespan) failed")
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}{path}"
        finally:
            server.should_exit = True
            if not graceful:
                for listener in server.servers:
                    listener.close()
                tg.cancel_scope.cancel()
