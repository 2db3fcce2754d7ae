"""Checks of what moves events: JetStream (the four streams with the configured settings, the
bridge's durable consumers and their lag) and the browser side (the live pages' WebSocket).

Asynchronous, run on an event loop of their own beside the database checks. NATS is reached on a
connection of the check's own with short timeouts and no reconnects, never the process's shared
one: that one waits longer and creates missing streams on connect, which would hide the fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import urllib.parse
import uuid
from functools import partial
from typing import Any

from channels.routing import get_default_application
from django.conf import settings

from mistersmith.operations.verify.matrix import DEGRADED, OK, PROBE_TIMEOUT, Row, error_text, judged, safe_url

logger = logging.getLogger(__name__)

CONSUMER_LAG_LIMIT = 1000  # the bridge consumers' max ack pending: a backlog beyond it is reported
jetstream_row = partial(judged, "jetstream")
browser_row = partial(judged, "browser")


def console_nats_url() -> str:
    """NATS_URL, or where the embedded server listens: joined if it runs, never started by a check."""
    if settings.NATS_URL:
        return settings.NATS_URL
    from mistersmith.embedded import DEFAULT_NATS_PORT

    return f"nats://127.0.0.1:{int(os.environ.get('MISTERSMITH_NATS_PORT', DEFAULT_NATS_PORT))}"


async def _quiet(error: Exception) -> None:
    logger.debug("verify_state NATS: %s", error)


async def connect_nats(url: str, timeout: float = PROBE_TIMEOUT) -> Any:
    """A connection of the check's own: one try and one quick retry, no reconnects."""
    import nats

    from mistersmith.jetstream.client import servers as nats_servers

    return await asyncio.wait_for(
        nats.connect(
            nats_servers(url),
            name="mistersmith-verify",
            connect_timeout=timeout,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py: 0 would retry forever
            reconnect_time_wait=0.05,
            error_cb=_quiet,
        ),
        timeout + 0.5,
    )


async def close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), PROBE_TIMEOUT)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


async def jetstream_rows(url: str, streams: dict[str, Any], prefix: str) -> list[Row]:
    """The server, each stream of ``streams`` and each bridge consumer named ``<prefix>-<feed>``."""
    from mistersmith.jetstream.streams import info_or_none
    from mistersmith.live.bridge import FEEDS

    where = safe_url(url)
    try:
        client = await connect_nats(url)
    except Exception as error:
        hint = (
            f"NATS_URL points at {where}: is the server up and reachable?"
            if settings.NATS_URL
            else "The embedded NATS server is not running: manage.py run starts it (or set NATS_URL)."
        )
        return [jetstream_row("server", f"NATS answers at {where}", error_text(error), bad=True, hint=hint)]
    try:
        js = client.jetstream(timeout=PROBE_TIMEOUT)
        try:
            await js.account_info()
        except Exception as error:
            hint = "Run nats-server with JetStream enabled (-js)."
            return [jetstream_row("server", f"JetStream at {where}", error_text(error), bad=True, hint=hint)]
        server = client.connected_server_version
        version = f"nats-server {server.major}.{server.minor}.{server.patch}"
        rows = [jetstream_row("server", f"JetStream at {where}", version, bad=False)]

        consumers = [(feed.stream, feed.consumer_name(prefix)) for feed in FEEDS]
        answers = await asyncio.gather(
            *(info_or_none(js.stream_info, name) for name in streams),
            *(info_or_none(js.consumer_info, stream, name) for stream, name in consumers),
            return_exceptions=True,
        )
        for (name, wanted), answer in zip(streams.items(), answers[: len(streams)], strict=True):
            rows.append(stream_row(name, wanted, answer))
        for (stream, name), answer in zip(consumers, answers[len(streams) :], strict=True):
            rows.append(consumer_row(stream, name, answer, prefix))
        rows += await freshness_rows(js, prefix)
        return rows
    finally:
        await close_quietly(client)


def stream_row(name: str, wanted: Any, info: Any) -> Row:
    """A stream exists with the settings of mistersmith/jetstream/streams.py (missing: failed; other
    settings: degraded)."""
    from mistersmith.jetstream.streams import differences

    row = partial(jetstream_row, f"stream {name}", "exists with the settings of mistersmith/jetstream/streams.py")
    if isinstance(info, BaseException):
        return row(error_text(info), bad=True, hint="NATS did not answer in time.")
    if info is None:
        return row("missing", bad=True, hint="Run manage.py ensure_streams (it creates the missing streams).")
    state = f"{info.state.messages} messages, {_size(info.state.bytes)}"
    diffs = differences(wanted, info.config)
    if diffs:
        found = "; ".join(f"{setting} {want!r} wanted, {have!r} found" for setting, (want, have) in diffs.items())
        hint = "Run manage.py ensure_streams --update to apply the contract's settings."
        return row(f"{found} ({state})", bad=True, status=DEGRADED, hint=hint)
    return row(f"as configured; {state}", bad=False)


def consumer_row(stream: str, name: str, info: Any, prefix: str) -> Row:
    """A bridge consumer exists (missing: failed, events reach no page) and keeps up (lag: degraded)."""
    row = partial(jetstream_row, f"consumer {name}", f"the bridge's consumer on {stream}, lag < {CONSUMER_LAG_LIMIT}")
    if isinstance(info, BaseException):
        return row(error_text(info), bad=True, hint="NATS did not answer in time.")
    if info is None:
        hint = (
            f"The bridge has not run with prefix {prefix!r} (MISTERSMITH_BRIDGE_PREFIX): start manage.py run "
            "(bridge in process) or manage.py bridge; until then no event reaches the console."
        )
        return row("missing", bad=True, hint=hint)
    pending, unacked = info.num_pending or 0, info.num_ack_pending or 0
    return row(
        f"lag {pending + unacked} ({pending} pending, {unacked} unacked)",
        bad=pending + unacked >= CONSUMER_LAG_LIMIT,
        status=DEGRADED,
        hint="The bridge is behind or stopped: is manage.py bridge (or run) running? See its log.",
    )


async def freshness_rows(js: Any, prefix: str) -> list[Row]:
    """Per bridge feed, how far the live pages are behind the stream head: degraded when stale
    (the oldest message not applied is older than MISTERSMITH_STALE_SECONDS)."""
    from mistersmith.console.dashboard.freshness import bridge_feeds
    from mistersmith.jetstream.freshness import feeds_lag, stale_seconds

    threshold = stale_seconds()
    rows = []
    for lag in await feeds_lag(js, bridge_feeds(prefix), stale_after=threshold):
        rows.append(
            jetstream_row(
                f"freshness {lag.feed}",
                f"the {lag.feed} feed's pages at most {threshold:g} s behind {lag.stream}",
                lag.text,
                bad=lag.stale,
                status=DEGRADED,
                hint="The bridge is stopped or slow: is manage.py bridge (or run) running? See its log.",
            )
        )
    return rows


def catch_up_rows(prefix: str) -> list[Row]:
    """A degraded row per feed whose first-start catch-up has not finished (mistersmith/
    bridge_catchup.py): its pages show the streams' history only partly until it has."""
    from mistersmith.live import catchup as bridge_catchup

    return [
        jetstream_row(
            f"catch-up {feed}",
            f"the {feed} feed has projected what {row.stream} retained",
            bridge_catchup.progress_text(row),
            bad=True,
            status=DEGRADED,
            hint="The bridge is reading the stream's history; it resumes where it stood if it was stopped.",
        )
        for feed, row in sorted(bridge_catchup.unfinished(prefix).items())
    ]


# --- The runtime's answers (read from PostgreSQL) ---------------------------------------------

# An answer older than this many request intervals means the requests stopped (no bridge leads).
STALE_INTERVALS = 3


def runtime_rows() -> list[Row]:
    """One row per request kind: ok when answered within a few intervals; degraded when the runtime
    is silent, answered an error, was never asked or was last answered long ago. Never failed: the
    runtime's router may not read its subscriptions (CONTRACTS §3), and that is a state to show."""
    from mistersmith.live.models import RuntimeProbe
    from mistersmith.live.runtime_probe import probe_interval

    interval = probe_interval()
    rows = []
    for kind, probe in RuntimeProbe.describe_all().items():
        found = probe["text"]
        data = probe["data"] if isinstance(probe["data"], dict) else {}
        if kind == "SystemHealth" and probe["state"] == "answered" and data:
            found += ", " + ", ".join(f"{key} {data.get(key)}" for key in sorted(data))
        age = probe["answer_age_seconds"]
        fresh = probe["state"] == "answered" and age is not None and age <= STALE_INTERVALS * interval
        hints = {
            "never_asked": "No bridge has asked yet: the leading bridge (manage.py run or bridge) asks every "
            f"{interval:g} s (MISTERSMITH_RUNTIME_PROBE_SECONDS).",
            "no_answer": "The runtime does not answer on system.control: is it running and connected to this NATS?",
            "error": "The runtime answered with an error: see its log.",
            "waiting": "The request is on its way; check again in a few seconds.",
            "answered": "The last answer is old: is the bridge running? It asks every "
            f"{interval:g} s (MISTERSMITH_RUNTIME_PROBE_SECONDS).",
        }
        rows.append(
            Row(
                "jetstream",
                f"runtime {kind}",
                f"answered within the last {STALE_INTERVALS * interval:g} s",
                found,
                OK if fresh else DEGRADED,
                "" if fresh else hints[probe["state"]],
            )
        )
    return rows


# --- The browser side --------------------------------------------------------------------------


class AsgiSocket:
    """An ASGI WebSocket application driven in process, the way a server would drive it."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.outbox: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.ensure_future(app(scope, self.inbox.get, self.outbox.put))

    async def send(self, message: dict[str, Any]) -> None:
        await self.inbox.put(message)

    async def receive(self, timeout: float = PROBE_TIMEOUT) -> dict[str, Any]:
        getter = asyncio.ensure_future(self.outbox.get())
        done, _ = await asyncio.wait({getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task in done:
            self.task.result()  # raises the application's own error
            return {"type": "websocket.close", "code": None}
        raise TimeoutError(f"no answer within {timeout:g} s")

    async def close(self) -> None:
        if not self.task.done():
            await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.task), PROBE_TIMEOUT)
        if not self.task.done():
            self.task.cancel()


def socket_scope(path: str, headers: list[tuple[bytes, bytes]], **extra: Any) -> dict[str, Any]:
    return {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
        **extra,
    }


async def socket_route_row() -> Row:
    """The full ASGI stack (origin check, session auth, routing, consumer) refuses an anonymous
    socket: the route resolves and the live socket is guarded. The application is the
    one settings.ASGI_APPLICATION names, found as channels' own servers find it: the configuration
    imports the floors, never the other way round."""
    application = get_default_application()

    host = next((name for name in settings.ALLOWED_HOSTS if name != "*"), "localhost").lstrip(".")
    headers = [(b"origin", f"http://{host}".encode()), (b"host", host.encode())]
    socket = AsgiSocket(application, socket_scope("/ws/live/", headers))
    try:
        await socket.send({"type": "websocket.connect"})
        answer = await socket.receive()
    finally:
        await socket.close()
    refused = answer["type"] == "websocket.close"
    return browser_row(
        "socket route",
        "/ws/live/ resolves and refuses an anonymous socket",
        f"refused anonymous (close {answer.get('code')})" if refused else f"answered {answer['type']}",
        bad=not refused,
        hint="The live socket accepted an anonymous user: check mistersmith/live/consumer.py.",
    )


async def round_trip_row() -> Row:
    """A staff socket subscribes to a topic nobody else watches, and a frame handed to the channel
    layer the bridge's way reaches it: routing, consumer and channel layer in one pass."""
    from channels.layers import get_channel_layer
    from channels.routing import URLRouter
    from django.contrib.auth import get_user_model

    from mistersmith.live.frames import send_frames
    from mistersmith.live.routing import websocket_urlpatterns
    from mistersmith.live.socket_session import IN_PROCESS_PROBE

    layer = get_channel_layer()
    backend = type(layer).__name__ if layer is not None else "no channel layer"
    row = partial(
        browser_row, "channel layer round trip", f"a frame reaches a subscribed socket within {PROBE_TIMEOUT:g} s"
    )
    hint = "Check CHANNEL_LAYERS (with REDIS_URL: is Redis up?) and mistersmith/live/routing.py."
    if layer is None:
        return row(backend, bad=True, hint=hint)
    # An unsaved superuser passes the consumer's checks without a database row or a session.
    user = get_user_model()(username="verify_state", is_staff=True, is_active=True, is_superuser=True)
    topic, token = f"agent.{uuid.uuid4()}", uuid.uuid4().hex
    started = time.perf_counter()
    probe_scope = socket_scope("/ws/live/", [], user=user, **{IN_PROCESS_PROBE: True})
    socket = AsgiSocket(URLRouter(websocket_urlpatterns), probe_scope)
    try:
        await socket.send({"type": "websocket.connect"})
        accepted = await socket.receive()
        if accepted["type"] != "websocket.accept":
            return row(f"a staff socket got {accepted['type']}", bad=True, hint=hint)
        await socket.send({"type": "websocket.receive", "text": json.dumps({"subscribe": [topic]})})
        while True:  # skip anything sent before the subscription's answer (a bridge status)
            answer = json.loads((await socket.receive()).get("text") or "{}")
            if "subscribed" in answer:
                break
        if answer["subscribed"] != [topic]:
            return row(f"the subscription answered {answer}", bad=True, hint=hint)
        await send_frames([{"topic": topic, "sequence": None, "events": [{"kind": "verify", "token": token}]}])
        while token not in ((received := await socket.receive()).get("text") or ""):
            if received["type"] != "websocket.send":
                return row(f"got {received['type']} instead of the frame", bad=True, hint=hint)
    finally:
        await socket.close()
    return row(f"{backend}, {(time.perf_counter() - started) * 1000:.0f} ms", bad=False)


async def live_socket_row(base_url: str) -> Row:
    """A real WebSocket to a running console: the handshake is answered, and refused to an
    anonymous client (the one answer a check without a login can expect)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    parts = urllib.parse.urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    ws_url = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/live/", "", ""))
    row = partial(
        browser_row, f"live socket at {safe_url(base_url)}", "the handshake is answered; anonymous refused (403)"
    )
    started = time.perf_counter()
    try:
        async with connect(ws_url, origin=f"{parts.scheme}://{parts.netloc}", open_timeout=PROBE_TIMEOUT):
            return row(
                "accepted an anonymous socket", bad=True, hint="Check mistersmith/live/consumer.py: it must refuse."
            )
    except InvalidStatus as error:
        status = error.response.status_code
        return row(
            f"HTTP {status} in {(time.perf_counter() - started) * 1000:.0f} ms",
            bad=status != 403,
            hint="Is this the console served by its ASGI server (manage.py run), behind a proxy passing WebSockets?",
        )
    except Exception as error:
        hint = "Is the console running at that URL, and does the proxy pass WebSocket upgrades?"
        return row(error_text(error), bad=True, hint=hint)


async def browser_rows(base_url: str | None) -> list[Row]:
    rows = []
    for check, name in ((socket_route_row, "socket route"), (round_trip_row, "channel layer round trip")):
        try:
            rows.append(await check())
        except Exception as error:
            hint = "Check mistersmith/asgi.py, mistersmith/live/routing.py and CHANNEL_LAYERS."
            rows.append(browser_row(name, "an answer", error_text(error), bad=True, hint=hint))
    if base_url:
        rows.append(await live_socket_row(base_url))
    return rows


# --- For readiness -----------------------------------------------------------------------------


async def nats_ready(url: str) -> None:
    """Raises unless NATS answers with JetStream enabled."""
    client = await connect_nats(url)
    try:
        await client.jetstream(timeout=PROBE_TIMEOUT).account_info()
    finally:
        await close_quietly(client)


async def channel_layer_ready() -> None:
    """Raises unless the channel layer carries a message to a channel and back."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer")
    channel, token = await layer.new_channel("verify."), uuid.uuid4().hex
    await layer.send(channel, {"type": "verify", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), PROBE_TIMEOUT)
    if message.get("token") != token:
        raise RuntimeError("the channel layer returned another message")
