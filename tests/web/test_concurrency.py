"""BoundedHttp: at most N HTTP requests of a worker at once, the rest in arrival order (issue 14, item 10)."""

from __future__ import annotations

import asyncio

import pytest

from mistersmith.web.concurrency import BoundedHttp


class SlowApp:
    """An ASGI app whose requests end when the test says so; it records who ran when."""

    def __init__(self) -> None:
        self.running: list[str] = []
        self.started: list[str] = []
        self.finish: dict[str, asyncio.Event] = {}
        self.most_at_once = 0

    async def __call__(self, scope, receive, send) -> None:
        name = scope["path"]
        self.started.append(name)
        self.running.append(name)
        self.most_at_once = max(self.most_at_once, len(self.running))
        self.finish.setdefault(name, asyncio.Event())
        await self.finish[name].wait()
        self.running.remove(name)
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            if name.startswith("/stream"):  # still streaming after the start: holds no place
                await self.finish.setdefault(f"{name}-body", asyncio.Event()).wait()
            await send({"type": "http.response.body", "body": b"ok"})


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def noop_send(message) -> None:
    return None


async def noop_receive() -> dict:
    return {"type": "http.request"}


def request(bounded: BoundedHttp, path: str, kind: str = "http", method: str = "GET") -> asyncio.Task:
    return asyncio.ensure_future(bounded({"type": kind, "path": path, "method": method}, noop_receive, noop_send))


def test_requests_beyond_the_bound_wait_and_start_in_arrival_order():
    async def scenario():
        app = SlowApp()
        bounded = BoundedHttp(app, 2)
        tasks = [request(bounded, f"/page/{i}") for i in range(5)]
        await settle()
        assert app.started == ["/page/0", "/page/1"] and bounded.waiting == 3
        app.finish.setdefault("/page/1", asyncio.Event()).set()
        await settle()
        assert app.started == ["/page/0", "/page/1", "/page/2"]
        for i in (0, 2, 3, 4):
            app.finish.setdefault(f"/page/{i}", asyncio.Event()).set()
            await settle()
        await asyncio.gather(*tasks)
        assert app.started == [f"/page/{i}" for i in range(5)] and app.most_at_once == 2
        assert bounded.waiting == 0

    asyncio.run(scenario())


def test_health_checks_websockets_and_streaming_bodies_hold_no_place():
    async def scenario():
        app = SlowApp()
        bounded = BoundedHttp(app, 1)
        stream = request(bounded, "/stream/snapshot.tar")
        await settle()
        app.finish["/stream/snapshot.tar"].set()  # the response starts; its body is still to come
        await settle()
        page = request(bounded, "/admin/")
        health = request(bounded, "/healthz")
        socket = request(bounded, "/ws/live/", kind="websocket")
        await settle()
        assert {"/admin/", "/healthz", "/ws/live/"} <= set(app.running)
        for name in ("/admin/", "/healthz", "/ws/live/", "/stream/snapshot.tar-body"):
            app.finish.setdefault(name, asyncio.Event()).set()
        await asyncio.gather(stream, page, health, socket)

    asyncio.run(scenario())


def test_actions_never_wait_and_a_read_waits_max_wait_at_most():
    """A POST (a command may wait minutes on the runtime) takes no place; a GET past max_wait is served anyway."""

    async def scenario():
        app = SlowApp()
        bounded = BoundedHttp(app, 1, max_wait=0.2)
        stop = request(bounded, "/agents/stop", method="POST")
        first = request(bounded, "/admin/a/")
        await settle()
        late = request(bounded, "/admin/b/")
        await settle()
        assert set(app.running) == {"/agents/stop", "/admin/a/"} and bounded.waiting == 1
        started = asyncio.get_running_loop().time()
        while "/admin/b/" not in app.running:  # served once max_wait passed; a bound kept forever fails here
            assert asyncio.get_running_loop().time() - started < 2, "the waiting read was never served"
            await asyncio.sleep(0.01)
        assert bounded.waiting == 0
        for name in ("/agents/stop", "/admin/a/", "/admin/b/"):
            app.finish[name].set()
        await asyncio.gather(stop, first, late)
        assert not bounded.semaphore().locked()  # the late one held no place, gave none back

    asyncio.run(scenario())


def test_a_request_that_fails_gives_its_place_back():
    async def failing(scope, receive, send) -> None:
        raise RuntimeError("view crashed")

    async def scenario():
        bounded = BoundedHttp(failing, 1)
        for _ in range(3):
            with pytest.raises(RuntimeError):
                await bounded({"type": "http", "path": "/admin/", "method": "GET"}, noop_receive, noop_send)
        assert not bounded.semaphore().locked()

    asyncio.run(scenario())


def test_the_console_application_is_bounded():
    from django.conf import settings

    from mistersmith import asgi

    http = asgi.router.application_mapping["http"]
    assert isinstance(http, BoundedHttp) and http.limit == settings.HTTP_CONCURRENCY >= 1
    assert http.max_wait == settings.HTTP_QUEUE_SECONDS > 0
