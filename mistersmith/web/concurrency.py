"""At most ``HTTP_CONCURRENCY`` HTTP requests of one worker at a time; the others wait their turn.

Django runs each request's view in a thread of its own, so a worker under more load than its core
can serve started every request at once: 100 threads shared one core (Python runs one at a time),
each page took as long as all of them, every request held a pooled database connection
meanwhile, and 200 logins at once (a password hash each) all finished late together, past the
client's timeout. With a bound, the requests beyond it wait on the event loop (no thread, no
connection) in arrival order, and those admitted finish at their own pace: under the same
overload the first answers come early and the tail is shorter (docs/deploy.md, "Pages under load").

Only page reads (GET, HEAD) take a place: an action (a POST) may wait on the runtime for minutes
(a graceful Stop waits up to 125 s for its reply), and eight of them must not stop a worker's
pages. A request waits ``max_wait`` seconds at most for a place, then is served without one: the
bound evens out load, it never turns a slow page into a refused one. The bound ends when the
response starts: a long download (a snapshot file) does not hold a place while it streams.
Health and metrics endpoints (``UNBOUNDED_PATHS``) never wait: a proxy's health check must not
queue behind pages. WebSockets and the lifespan are not HTTP requests.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

UNBOUNDED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
BOUNDED_METHODS = frozenset({"GET", "HEAD"})

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class BoundedHttp:
    """ASGI middleware: ``limit`` HTTP requests at a time in this process, the rest queued (FIFO)."""

    def __init__(
        self, app: Callable[[Scope, Receive, Send], Awaitable[None]], limit: int, max_wait: float = 10.0
    ) -> None:
        self.app = app
        self.limit = limit
        self.max_wait = max_wait
        # one per event loop: a semaphore belongs to the loop it first waited on (a worker has one
        # loop; tests and management commands may run the application on several in turn)
        self.semaphores: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.waiting = 0  # requests queued for a place now (for tests and a look in a debugger)

    def semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self.semaphores:
            self.semaphores[loop] = asyncio.Semaphore(self.limit)
        return self.semaphores[loop]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") not in BOUNDED_METHODS
            or scope.get("path") in UNBOUNDED_PATHS
        ):
            await self.app(scope, receive, send)
            return
        semaphore = self.semaphore()
        self.waiting += 1
        try:
            async with asyncio.timeout(self.max_wait):
                await semaphore.acquire()  # a cancelled acquire gives back a place it was handed
            held = True
        except TimeoutError:
            held = False  # waited long enough: served without a place
        finally:
            self.waiting -= 1

        def release() -> None:
            nonlocal held
            if held:
                held = False
                semaphore.release()

        async def send_then_release(message: dict) -> None:
            if message["type"] == "http.response.start":
                release()  # the page is made; sending it (or streaming a file) holds no place
            await send(message)

        try:
            await self.app(scope, receive, send_then_release)
        finally:
            release()
