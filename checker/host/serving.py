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


def _prompt_server(config: Any) -> Any:
    """A uvicorn Server that starts shutting down as soon as it is asked to.

    uvicorn looks at `should_exit` once per 0.1 s tick, so every served block ended up to 0.1 s
    later than needed; checks serve dozens of apps per lesson. Here the wait between ticks is
    cut short when a stop is asked for; ticks, and the graceful shutdown itself, are uvicorn's.
    """
    import uvicorn

    class PromptServer(uvicorn.Server):
        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                for _ in range(10):
                    await anyio.sleep(0.01)
                    if self.should_exit:
                        break
                should_exit = await self.on_tick(counter)

    return PromptServer(config)


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
    server = _prompt_server(config)
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
