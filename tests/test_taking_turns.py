"""The capstone's requests take turns under load (`research_desk.server.TakeTurns`, issue 15's p99).

At most `places` calls run at once, the others start in the order they came; a call gives its
place up after `turn` seconds however long it runs (a stream, an export), and a caller that gives
up while waiting leaves no place taken. The reference solutions' class is driven directly, with
an ASGI app whose calls end only when the test says so (no clock decides any outcome).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from checker import verify
from tests.conftest import COURSE

SCENARIOS = textwrap.dedent('''
    import asyncio, json
    from research_desk.server import TakeTurns

    class Calls:
        """An ASGI app: each call notes that it started, then waits until the test lets it end."""
        def __init__(self):
            self.started, self.running, self.most = [], 0, 0
            self.release = {}
        async def __call__(self, scope, receive, send):
            name = scope["path"]
            await receive()  # the whole body: only then does a call wait for its turn
            self.started.append(name)
            self.running += 1
            self.most = max(self.most, self.running)
            self.release[name] = asyncio.Event()
            try:
                await self.release[name].wait()
            finally:
                self.running -= 1

    async def settle():
        for _ in range(20):
            await asyncio.sleep(0)

    async def whole_body():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    def call(app, name, receive=whole_body):
        return asyncio.ensure_future(app({"type": "http", "path": name}, receive, None))

    async def in_order():
        calls = Calls(); app = TakeTurns(calls); app.turn = 60
        tasks = [call(app, f"/{i}") for i in range(6)]
        await settle()
        first = list(calls.started)
        for i in range(6):
            await settle()
            calls.release[f"/{i}"].set()
        await asyncio.gather(*tasks)
        return {"first": first, "order": calls.started, "most": calls.most, "left": len(app.holding)}

    async def long_calls_step_aside():
        calls = Calls(); app = TakeTurns(calls); app.turn = 0.05
        long = [call(app, "/stream-1"), call(app, "/stream-2")]
        await settle()
        third = call(app, "/third")
        for _ in range(200):  # the sweeper ends the long calls' turns; the third then starts
            await asyncio.sleep(0.01)
            if "/third" in calls.started:
                break
        started = list(calls.started)
        for name in ("/stream-1", "/stream-2"):
            calls.release[name].set()
        await asyncio.gather(*long)
        await settle()  # (without turns, the third starts only now)
        calls.release["/third"].set()
        await third
        return {"started": started, "left": len(app.holding)}

    async def a_waiter_that_gives_up():
        calls = Calls(); app = TakeTurns(calls); app.turn = 60
        busy = [call(app, "/a"), call(app, "/b")]
        await settle()
        quitter, patient = call(app, "/quitter"), call(app, "/patient")
        await settle()
        quitter.cancel()
        await settle()
        calls.release["/a"].set()
        await settle()
        calls.release["/b"].set()
        await settle()
        calls.release["/patient"].set()
        await asyncio.gather(*busy, patient)
        late = call(app, "/late")
        await settle()
        ran_at_once = "/late" in calls.started
        calls.release["/late"].set()
        await late
        return {"order": calls.started, "late_ran_at_once": ran_at_once, "left": len(app.holding),
                "quitter_cancelled": quitter.cancelled()}

    async def slow_senders_hold_no_place():
        calls = Calls(); app = TakeTurns(calls); app.turn = 60
        never = asyncio.Event()
        async def body_still_coming():
            await never.wait()
        slow = [call(app, f"/slow-{i}", body_still_coming) for i in range(3)]
        quick = call(app, "/quick")
        await settle()
        started = list(calls.started)
        calls.release["/quick"].set()
        await quick
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return {"started": started, "left": len(app.holding)}

    async def lifespan_passes():
        seen = []
        async def inner(scope, receive, send):
            seen.append(scope["type"])
        await TakeTurns(inner)({"type": "lifespan"}, None, None)
        return seen

    print(json.dumps({name: asyncio.run(scenario()) for name, scenario in [
        ("in_order", in_order), ("long", long_calls_step_aside), ("quitter", a_waiter_that_gives_up),
        ("slow", slow_senders_hold_no_place), ("lifespan", lifespan_passes)]}))
''')


def _scenarios() -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", SCENARIOS], env=verify.python_env(COURSE.solutions, {}),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_requests_take_turns_in_the_order_they_came() -> None:
    results = _scenarios()
    in_order = results["in_order"]
    assert in_order["first"] == ["/0", "/1"], "two places: the first two start, the others wait"
    assert in_order["order"] == [f"/{i}" for i in range(6)], "the waiting start in arrival order"
    assert in_order["most"] == 2 and in_order["left"] == 0
    long = results["long"]
    assert long["started"] == ["/stream-1", "/stream-2", "/third"], "a long call gives up its place after its turn"
    assert long["left"] == 0
    quitter = results["quitter"]
    assert quitter["quitter_cancelled"] and "/quitter" not in quitter["order"], "a caller that gave up never runs"
    assert quitter["order"][:3] == ["/a", "/b", "/patient"]
    assert quitter["late_ran_at_once"] and quitter["left"] == 0, "and it keeps no place taken"
    slow = results["slow"]
    assert slow["started"] == ["/quick"] and slow["left"] == 0, "a body still arriving holds no place"
    assert results["lifespan"] == ["lifespan"]
