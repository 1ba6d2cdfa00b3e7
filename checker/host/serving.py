"""Serve an ASGI app with a real uvicorn on a free loopback port, for as long as a block runs."""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio


class ServerDidNotStart(Exception):
    """uvicorn stopped before it was listening: the app's startup (its lifespan) failed."""


_HOLD_AT_MOST = 64
_held: collections.deque[socket.socket] = collections.deque()


def free_ports(count: int) -> list[int]:
    """`count` different loopback TCP ports, each kept from everyone but the server it is for.

    A port that was merely free a moment ago can be taken before the server binds it: by a sibling
    check's choice in another fork, or as the ephemeral port of any outgoing connection. The server
    then cannot bind, and whatever took the port may answer in its place (a replica that never
    started, unnoticed, because another one answered its health check). So each port stays bound
    here, with SO_REUSEADDR and never listening, until this process ends or 64 newer ones are held:
    the kernel gives it to no other bind or connection, while a server that binds with
    SO_REUSEADDR, as uvicorn, nginx, Redis and Node all do, still takes it and listens.
    """
    ports = []
    for _ in range(count):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        _held.append(sock)
        ports.append(int(sock.getsockname()[1]))
    while len(_held) > max(_HOLD_AT_MOST, count):
        _held.popleft().close()
    return ports


def free_port() -> int:
    """One loopback TCP port, kept for the server it is for (see `free_ports`)."""
    return free_ports(1)[0]


def _prompt_server(config: Any) -> Any:
    """A uvicorn Server that stops as soon as it is asked to and has nothing left to finish.

    uvicorn looks at `should_exit` once per 0.1 s tick, and its shutdown then sleeps a fixed
    0.1 s after asking open connections to close, and polls what is left every 0.1 s: every
    served block ended 0.1-0.3 s later than needed, and checks serve dozens of apps per lesson.
    Here the waits end when their condition does; what is waited for is uvicorn's graceful
    shutdown, unchanged: open connections finish their responses, running tasks complete (up
    to `timeout_graceful_shutdown`), then the app's lifespan shuts down.
    """
    import asyncio

    import uvicorn

    async def until(done: Any, seconds: float | None = None) -> None:
        deadline = None if seconds is None else time.monotonic() + seconds
        while not done() and (deadline is None or time.monotonic() < deadline):
            await asyncio.sleep(0.005)

    class PromptServer(uvicorn.Server):
        async def main_loop(self) -> None:
            counter = 0
            should_exit = await self.on_tick(counter)
            while not should_exit:
                counter = (counter + 1) % 864000
                await until(lambda: self.should_exit, 0.1)
                should_exit = await self.on_tick(counter)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for sock in sockets or []:
                sock.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()
            await until(lambda: not self.server_state.connections, 0.1)  # uvicorn: a fixed 0.1 s
            try:
                await asyncio.wait_for(self._wait_tasks_to_complete(), timeout=self.config.timeout_graceful_shutdown)
            except TimeoutError:
                for task in self.server_state.tasks:
                    task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
            if not self.force_exit:
                await self.lifespan.shutdown()

        async def _wait_tasks_to_complete(self) -> None:
            await until(lambda: self.force_exit or not self.server_state.connections)
            await until(lambda: self.force_exit or not self.server_state.tasks)
            for server in self.servers:
                await server.wait_closed()

    return PromptServer(config)


@asynccontextmanager
async def serve_asgi(app: Any, *, path: str = "/mcp", graceful: bool = True) -> AsyncIterator[str]:
    """Yield the endpoint URL while uvicorn serves `app`.

    On exit uvicorn shuts down gracefully (connections drained, the app's lifespan exited).
    With `graceful=False` the server just stops, as if its
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
