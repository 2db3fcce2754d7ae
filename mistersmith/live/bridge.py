"""The bridge: the console's one consumer of the runtime's streams.

It pulls from JetStream with durable consumers, validates each message and applies it to the
console's state, acking only after the change is committed; a redelivered message changes
nothing twice (answers are applied once, by id). A message that fails validation is acked and
counted by reason, never retried forever and never allowed to stop the bridge.

Feeds, one durable consumer per stream, each over the whole stream, registered by the apps that
apply them (supervision/feeds.py, agents/feeds.py: see mistersmith/live/registry.py):
- SYSTEM_EVENTS: the restart protocol on ``system.control`` (RestartNode requests and
  RestartCompleted answers; the sweeper times out restarts nobody answered), runtime health;
- AGENT_EVENTS: agent events (the agents projection: state, heartbeats, session output);
- DISCOVERIES: the discovery store;
- SUPERVISION_EVENTS: the runtime's supervision events and the console's own (policy saved).
Every message also goes to the event log's live topic ("events").

Frames across a leader change (at least once). A feed commits a batch, then sends its frames,
then acks it: a bridge killed between the commit and the send took those frames with it, and the
next leader, starting after the committed position, would never send them. So the agents feed
(the one that keeps a position) also keeps a *framed* position (BridgePosition.framed_sequence):
everything at or below it is known to have been sent. It costs no statement of its own on the live
path: the next batch's commit records how far the previous batch's frames went
(``FrameBuffer.sent_through``), and only a feed that goes idle writes it alone (once). A new leader
starts its consumer right after the framed position instead of the committed one: the messages in
between come again, are not applied again (they are at or below the committed position), and are
framed again from the messages themselves, re-read from the stream through the same consumer.

Why re-read the messages rather than build frames from the projections: the projections keep an
agent's latest state, not each event (a heartbeat, an output line, a state change already
overwritten by the next), so the frames cannot be made from them; the stream keeps every message,
and reading them through the feed's own consumer is the path they took the first time (same
order, same event log frames, no second reader). What the messages do not say is what applying a
state event did (state_changed, anomaly, ignored...), and pages read that: the batch's commit keeps
those results for the unframed range (BridgePosition.unframed_results, state events only, pruned
as the framed position moves). Frames may so repeat after a takeover (at most about two batches);
pages drop events whose (stream, sequence) they already applied (live.js ``SeenEvents``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DataError, IntegrityError, connection, transaction
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from mistersmith.jetstream.client import nats_url
from mistersmith.jetstream.client import servers as nats_servers
from mistersmith.jetstream.database_work import database_work
from mistersmith.jetstream.reader import log_event
from mistersmith.jetstream.streams import ensure_streams
from mistersmith.live import catchup as bridge_catchup
from mistersmith.live.frames import FrameBuffer, send_bridge_status, send_frames
from mistersmith.live.leader import Leadership, LeadershipLost
from mistersmith.live.models import BridgePosition, DeadLetter
from mistersmith.live.positions import bridge_consumer_prefix
from mistersmith.live.registry import FEEDS, SWEEPS, BridgeStats, Feed
from mistersmith.live.runtime_probe import probe_runtime

logger = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 1.0
# Each feed runs on its own task: a busy feed answers a fetch at once, an idle one is waited on
# this long (then the stop flag is checked). The events of one batch become one frame per topic.
FETCH_WAIT_SECONDS = 0.5
BATCH = 500

# The stats of the bridges running in this process, by consumer prefix (read by /metrics).
RUNNING: dict[str, BridgeStats] = {}


@dataclass(frozen=True)
class Advanced:
    """Where a feed's position row stood before a batch (``applied``) and after it (``framed``), and
    the results it keeps for the unframed range (``results``)."""

    applied: int
    framed: int
    results: dict[str, str]


def advance_position(consumer: str, first: int, last: int, sent_through: int | None, framing: bool) -> Advanced:
    """Lock the consumer's position, move it to ``last`` if that is further, and return where it was:
    one statement (the live path's per-batch cost), committed with the batch's changes.

    The same statement moves the framed position to ``sent_through`` (the frames the feed sent before
    this batch), or to ``last`` when nothing is framed (``framing`` false: a catch-up's history)."""
    framed_to = sent_through if framing else last
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH old AS (
                SELECT id, sequence, COALESCE(framed_sequence, sequence) AS framed, unframed_results
                  FROM mistersmith_bridgeposition WHERE consumer = %s FOR UPDATE
            )
            UPDATE mistersmith_bridgeposition p SET sequence = GREATEST(old.sequence, %s),
                   framed_sequence = GREATEST(old.framed, %s), updated_at = now()
              FROM old WHERE p.id = old.id
            RETURNING old.sequence, p.framed_sequence, old.unframed_results
            """,
            [consumer, last, framed_to],
        )
        row = cursor.fetchone()
    if row is not None:
        results = json.loads(row[2]) if isinstance(row[2], str) else row[2]  # Django reads jsonb as text
        return Advanced(applied=row[0], framed=row[1], results=results if isinstance(results, dict) else {})
    _, created = BridgePosition.objects.select_for_update().get_or_create(
        consumer=consumer,
        defaults={"stream": "AGENT_EVENTS", "sequence": last, "framed_sequence": first - 1 if framing else last},
    )
    if created:
        return Advanced(applied=0, framed=first - 1 if framing else last, results={})
    return advance_position(consumer, first, last, sent_through, framing)  # another bridge made the row meanwhile


def keep_results(consumer: str, advanced: Advanced, fresh: dict[str, str]) -> None:
    """Keep the state events' results of the range whose frames are not known to be sent (what a
    new leader needs to frame them again); a statement only when they change (state events are few)."""
    kept = {sequence: result for sequence, result in advanced.results.items() if int(sequence) > advanced.framed}
    kept.update(fresh)
    if kept != advanced.results:
        BridgePosition.objects.filter(consumer=consumer).update(unframed_results=kept)


@database_work
def _sweep() -> Counter:
    """Dead letters pruned, and each app's registered sweep (supervision: restarts nobody answered)."""
    DeadLetter.prune()
    return Counter({counter: sweep() for counter, sweep in SWEEPS})


@database_work
def _committed_position(feed: Feed, name: str, last_sequence: int) -> tuple[int | None, int | None]:
    """The feed's committed and framed positions, or (None, None) when it keeps none. A position
    beyond the stream's last sequence means the stream was deleted and made again: it starts over
    from 0."""
    stream = feed.stream
    position = BridgePosition.objects.filter(consumer=name).first()
    if position is None:
        return None, None
    if position.sequence > last_sequence:
        logger.warning("%s: %s restarted at #%s below our #%s; starting over", name, stream, last_sequence, position)
        with transaction.atomic():
            BridgePosition.objects.filter(pk=position.pk).update(sequence=0, framed_sequence=0, unframed_results={})
            if feed.stream_started_over is not None:
                feed.stream_started_over()
        return 0, 0
    framed = position.sequence if position.framed_sequence is None else position.framed_sequence
    return position.sequence, min(framed, position.sequence)


async def _subscribe(
    js: Any, feed: Feed, name: str, stats: BridgeStats, catch_up: bool, stop: asyncio.Event, servers: list[str]
) -> Any:
    """Create the feed's durable consumer, or bring an existing one to this configuration (a
    create-or-update on the server: an older consumer that filtered one subject now reads all).

    A feed that commits its position with its changes (agents) is restarted from that position:
    the batch a killed bridge held un-acked is delivered again at once and in order, instead of
    after the ack wait and behind newer messages (which would let the position skip it). It
    restarts from its framed position when that is behind: those messages are framed again, not
    applied again (see the module's docstring).

    With ``catch_up``, a feed on its first start (no consumer, no position) first projects what its
    stream retains (mistersmith.live.catchup), and its consumer starts right after that range.
    Without it such a feed starts with the messages published from now on (``DeliverPolicy.NEW``).
    """
    config = ConsumerConfig(
        durable_name=name,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=30,
        max_deliver=3,
        max_ack_pending=1000,
        deliver_policy=DeliverPolicy.NEW,
    )
    info = await js.stream_info(feed.stream)
    committed = sync_to_async(_committed_position, thread_sensitive=False)
    position, framed = await committed(feed, name, info.state.last_seq)
    if catch_up:
        caught_up = await bridge_catchup.catch_up(
            js, servers, feed.stream, name, feed.apply, stats, state=info.state, position=position, stop=stop
        )
        if caught_up is not None:
            position, framed = caught_up, caught_up  # history: nobody watched it, nothing to frame
    if position is not None:
        if framed is not None and framed < position:
            logger.info("%s: framing #%s to #%s again (their frames may not have gone out)", name, framed + 1, position)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_consumer(feed.stream, name)
        config.deliver_policy = DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = (position if framed is None else framed) + 1
    else:
        with contextlib.suppress(nats.js.errors.NotFoundError):  # where it started can't be updated: kept
            existing = (await js.consumer_info(feed.stream, name)).config
            config.deliver_policy, config.opt_start_seq = existing.deliver_policy, existing.opt_start_seq
    await js.add_consumer(feed.stream, config)
    return await js.pull_subscribe_bind(durable=name, stream=feed.stream)


class FeedLost(Exception):
    """A feed's durable consumer, or its whole stream, was deleted under the bridge."""


async def _check_feed(feed: Feed, name: str, subscription: Any) -> None:
    """Raise FeedLost when the feed's consumer is gone: a pull to a consumer that does not exist has
    no responder, which looks like a JetStream outage but never ends. Starting the bridge again
    makes the stream (if it went too) and the consumer anew."""
    try:
        await subscription.consumer_info()
    except nats.js.errors.NotFoundError as error:
        raise FeedLost(f"{name}: the consumer or its stream {feed.stream} was deleted; making them again") from error
    except (nats.errors.Error, TimeoutError):  # JetStream itself is away: keep waiting for it
        pass


@sync_to_async(thread_sensitive=False)
@database_work
def _record_framed(name: str, sequence: int) -> None:
    """A feed's framed position, written alone (an idle feed, a stop): on the busy path the next
    batch's commit carries it."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE mistersmith_bridgeposition SET framed_sequence = %s, unframed_results = COALESCE(
                (SELECT jsonb_object_agg(key, value) FROM jsonb_each(unframed_results) WHERE key::bigint > %s), '{}')
             WHERE consumer = %s AND (framed_sequence IS NULL OR framed_sequence < %s)
            """,
            [sequence, sequence, name, sequence],
        )


class _Framed:
    """How far a feed's frames went (``sent``) and whether its position row says so yet (a feed
    without a position row has nothing to record)."""

    def __init__(self, keeps_position: bool) -> None:
        self.sent: int | None = None
        self.recorded = True
        self.keeps_position = keeps_position

    def sent_through(self, messages: list[Any]) -> None:
        self.sent = max([self.sent or 0, *(m.metadata.sequence.stream for m in messages)])
        self.recorded = not self.keeps_position

    async def record(self, name: str) -> None:
        if not self.recorded and self.sent is not None:
            await _record_framed(name, self.sent)
            self.recorded = True


async def _consume(feed: Feed, name: str, subscription: Any, stats: BridgeStats, stop: asyncio.Event) -> None:
    """One feed: fetch a batch, apply and commit it, hand its frames on, then ack it."""
    apply = sync_to_async(feed.apply, thread_sensitive=False)
    framed = _Framed(feed.keeps_position)
    try:
        await _consume_batches(feed, name, subscription, stats, stop, apply, framed)
    finally:
        if stop.is_set():  # a clean stop: the next leader need not frame the last batch again
            with contextlib.suppress(Exception):
                await framed.record(name)


async def _consume_batches(
    feed: Feed, name: str, subscription: Any, stats: BridgeStats, stop: asyncio.Event, apply: Callable, framed: _Framed
) -> None:
    while not stop.is_set():
        try:
            messages = await subscription.fetch(BATCH, timeout=FETCH_WAIT_SECONDS)
        except (TimeoutError, nats.errors.TimeoutError):
            await framed.record(name)  # idle: one statement, so a takeover frames nothing again
            continue
        except nats.js.errors.ServiceUnavailableError:  # JetStream restarting, or our consumer gone
            await _check_feed(feed, name, subscription)
            logger.warning("%s: JetStream unavailable; fetching again in %s s", name, FETCH_WAIT_SECONDS)
            await asyncio.sleep(FETCH_WAIT_SECONDS)
            continue
        if not messages:  # a fetch may end with a status and no message
            continue
        try:
            await send_frames(await _apply_messages(feed, apply, messages, stats, name, framed.sent))
        except (DataError, IntegrityError) as error:
            # A message the database refuses (a check, a race on a unique key) must not block the
            # feed forever: every restart would fetch the same batch again from its position.
            logger.error("%s: a batch failed (%s); applying it one message at a time", name, error)
            for message in messages:
                try:
                    frames = await _apply_messages(feed, apply, [message], stats, name, framed.sent)
                except (DataError, IntegrityError) as refused:
                    await _dead_letter_refused(feed, name, message, refused, stats)
                    frames = _log_frames(feed, [message]).take()
                await send_frames(frames)
                framed.sent_through([message])
        framed.sent_through(messages)
        for message in messages:
            await message.ack()


def _log_frames(feed: Feed, messages: list[Any], sent_through: int | None = None) -> FrameBuffer:
    """The event log's frame of every message fetched, applied or not."""
    frames = FrameBuffer(sent_through)
    for m in messages:
        sequence = m.metadata.sequence.stream
        frames.add("events", log_event(feed.stream, sequence, m.subject, m.metadata.timestamp, m.data))
    return frames


async def _apply_messages(
    feed: Feed, apply: Callable, messages: list[Any], stats: BridgeStats, name: str, sent_through: int | None
) -> list:
    frames = _log_frames(feed, messages, sent_through)
    await apply([(m.metadata.sequence.stream, m.subject, m.data) for m in messages], stats, name, frames)
    return frames.take()


@sync_to_async(thread_sensitive=False)
@database_work
def _dead_letter_refused(feed: Feed, name: str, message: Any, error: Exception, stats: BridgeStats) -> None:
    """Keep a message the database refused in the dead-letter list, and move a feed position past it."""
    sequence = message.metadata.sequence.stream
    with transaction.atomic():
        DeadLetter.record(
            stream=feed.stream,
            subject=message.subject,
            sequence=sequence,
            reason="apply_failed",
            error=str(error),
            data=message.data,
        )
        BridgePosition.objects.filter(consumer=name, sequence__lt=sequence).update(sequence=sequence)
    stats.rejected["apply_failed"] += 1
    logger.error("%s #%s refused by the database, dead-lettered: %s", message.subject, sequence, error)


async def _sweep_until(stop: asyncio.Event, stats: BridgeStats) -> None:
    sweep = sync_to_async(_sweep, thread_sensitive=False)
    while not stop.is_set():
        swept = await sweep()
        for counter, count in swept.items():
            if count:
                stats.processed[counter] += count
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_SECONDS)


async def _connection_lost(stop: asyncio.Event) -> None:
    if not stop.is_set():  # a bridge that is stopping says nothing: another may still be running
        logger.warning("the bridge lost NATS; reconnecting")
        await send_bridge_status(False)


async def run_bridge(
    stop: asyncio.Event,
    *,
    url: str | None = None,
    stats: BridgeStats | None = None,
    consumer_prefix: str | None = None,
    ready: asyncio.Event | None = None,
    catch_up: bool | None = None,
) -> BridgeStats:
    """Consume until ``stop`` is set; reconnects by itself while NATS is away.

    Only one bridge per ``consumer_prefix`` consumes at a time; others wait as standbys until
    it goes (see mistersmith/live/leader.py). Each feed has a durable consumer
    ``<consumer_prefix>-<feed>``. A batch is acked only after it is applied and committed.
    ``ready`` is set once the consumers exist, so a caller can publish knowing the bridge will
    see it. ``catch_up`` (default: settings.BRIDGE_CATCH_UP) lets a feed on its first start
    project its stream's retained history first (mistersmith/live/catchup.py).
    """
    stats = stats or BridgeStats()
    catch_up = settings.BRIDGE_CATCH_UP if catch_up is None else catch_up
    consumer_prefix = consumer_prefix or bridge_consumer_prefix()
    leadership = Leadership(consumer_prefix)
    try:
        if not await leadership.acquire(stop):
            return stats
        return await _lead(
            stop, leadership, url=url, stats=stats, consumer_prefix=consumer_prefix, ready=ready, catch_up=catch_up
        )
    finally:
        await sync_to_async(leadership.release, thread_sensitive=False)()


async def _lead(
    stop: asyncio.Event,
    leadership: Leadership,
    *,
    url: str | None,
    stats: BridgeStats,
    consumer_prefix: str,
    ready: asyncio.Event | None,
    catch_up: bool,
) -> BridgeStats:
    """The leading bridge's work: consumers (after any first-start catch-up), feeds and sweeper,
    until stop or an error."""
    servers = nats_servers(url or nats_url())
    client = await nats.connect(
        servers,
        name="mistersmith-bridge",
        max_reconnect_attempts=-1,
        disconnected_cb=functools.partial(_connection_lost, stop),
        reconnected_cb=functools.partial(send_bridge_status, True),
    )
    RUNNING[consumer_prefix] = stats
    try:
        js = client.jetstream()
        await ensure_streams(js)
        feeds = [(feed, feed.consumer_name(consumer_prefix)) for feed in FEEDS]
        try:
            subscriptions = [
                (feed, name, await _subscribe(js, feed, name, stats, catch_up, stop, servers)) for feed, name in feeds
            ]
        except bridge_catchup.CatchUpInterrupted:
            return stats  # stopped during a catch-up: the next start resumes it
        if ready is not None:
            ready.set()
        await send_bridge_status(True)  # pages that saw the bridge lose NATS catch up now
        tasks = [asyncio.create_task(_consume(feed, name, sub, stats, stop)) for feed, name, sub in subscriptions]
        tasks.append(asyncio.create_task(_sweep_until(stop, stats)))
        tasks.append(asyncio.create_task(probe_runtime(client, stop)))  # the one runtime health requester
        tasks.append(asyncio.create_task(leadership.hold(stop)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
    finally:
        if RUNNING.get(consumer_prefix) is stats:
            del RUNNING[consumer_prefix]
        await client.close()
    return stats


RESTART_BACKOFF_SECONDS = (1, 2, 4, 8, 16, 30)


async def run_bridge_supervised(stop: asyncio.Event, **options: Any) -> None:
    """run_bridge until ``stop``, started again after any error (NATS or PostgreSQL away at start, a
    stream deleted, a bug): 1 s, doubling to 30 s between attempts, back to 1 s after a run that
    lasted a minute. The one restart policy of the bridge process, the server's in-process bridge
    and the test thread. What was not acked is delivered again (see _subscribe)."""
    attempt = 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run_bridge(stop, **options)
            return
        except (FeedLost, LeadershipLost) as error:
            logger.error("%s", error)
        except Exception:
            logger.exception("the bridge stopped by an error")
        if time.monotonic() - started > 60:
            attempt = 0
        delay = RESTART_BACKOFF_SECONDS[min(attempt, len(RESTART_BACKOFF_SECONDS) - 1)]
        attempt += 1
        logger.warning("the bridge starts again in %s s", delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


class BridgeThread(threading.Thread):
    """The bridge on a thread and event loop of its own (tests; an embedding that has no ASGI lifespan)."""

    def __init__(self, *, consumer_prefix: str | None = None, url: str | None = None, catch_up: bool = False) -> None:
        super().__init__(name="bridge", daemon=True)
        self.catch_up = catch_up
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.ready = threading.Event()
        self.stats = BridgeStats()
        self.consumer_prefix = consumer_prefix
        self.url = url

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._run())

    async def _run(self) -> None:
        ready = asyncio.Event()
        ready_waiter = asyncio.ensure_future(ready.wait())
        ready_waiter.add_done_callback(lambda _: self.ready.set())
        try:
            await run_bridge_supervised(
                self.stop_event,
                url=self.url,
                stats=self.stats,
                consumer_prefix=self.consumer_prefix,
                ready=ready,
                catch_up=self.catch_up,
            )
        finally:
            ready_waiter.cancel()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.stop_event.set)
        self.join(10)


def consumers_exist(prefix: str, client: Any = None) -> bool:
    """True once every durable consumer of a bridge that uses ``prefix`` exists (tests, benchmarks);
    ``client`` is a SyncNats for another server than the process's own."""
    from mistersmith.jetstream.client import connection

    client = client or connection()
    js = client.client().jetstream()
    try:
        for feed in FEEDS:
            client.run(js.consumer_info(feed.stream, feed.consumer_name(prefix)))
    except Exception:
        return False
    return True


def delete_consumers(prefix: str) -> None:
    """Remove the durable consumers of a bridge that used ``prefix`` (tests, benchmarks)."""
    from mistersmith.jetstream.client import connection

    client = connection()
    js = client.client().jetstream()
    for feed in FEEDS:
        client.run(js.delete_consumer(feed.stream, feed.consumer_name(prefix)))
