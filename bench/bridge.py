"""Bridge throughput and the discovery store's insert rate.

- Bridge: N agent events (heartbeats and state changes of 100 agents) published to AGENT_EVENTS,
  then consumed by the bridge (parse, project in one transaction per batch, frames to the channel
  layer, ack) and, in the same run, by a bare nats-py pull consumer that only acks the same
  messages. Target (issue 4): at least 10,000 events/s and a ratio of at least 0.3.
- Discovery store: inserts per second in batches of 100 with eviction past 1,000.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator

from bench.support import bench_database

EVENTS = 20_000
AGENTS = 100


async def _publish(url: str, subjects: list[str]) -> int:
    """Publish the events; return the stream sequence of the first."""
    import nats

    client = await nats.connect(url)
    js = client.jetstream()
    pending, first = [], None
    for index in range(EVENTS):
        agent = subjects[index % AGENTS]
        body = {
            "Heartbeat": {
                "agent_id": agent.split(".")[1],
                "timestamp": {"secs_since_epoch": 1_800_000_000 + index, "nanos_since_epoch": 0},
            }
        }
        pending.append(js.publish(agent, json.dumps(body).encode()))
        if len(pending) >= 500:
            acks = await asyncio.gather(*pending)
            first = first or min(ack.seq for ack in acks)
            pending.clear()
    acks = await asyncio.gather(*pending)
    await client.close()
    return first or min(ack.seq for ack in acks)


async def bare_consumer(
    url: str, name: str, first_sequence: int, events: int = EVENTS, fetch: int = 100, last_sequence: int | None = None
) -> float:
    """Events/s of a durable pull consumer that fetches ``fetch`` at a time and acks each message:
    the bare nats-py consumer the bridge's throughput is compared with (here and in bench/catchup.py).

    With ``last_sequence`` it stops there, or when nothing more comes: on a shared NATS, others'
    messages on other subjects may sit in the range (fewer than ``events`` match), or push its
    oldest ones out of the stream."""
    import nats
    from nats.js.api import ConsumerConfig, DeliverPolicy

    client = await nats.connect(url)
    js = client.jetstream()
    subscription = await js.pull_subscribe(
        "agent.*.events",
        durable=name,
        stream="AGENT_EVENTS",
        config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=first_sequence),
    )
    seen, started = 0, time.perf_counter()
    while seen < events:
        try:
            messages = await subscription.fetch(fetch, timeout=5)
        except nats.errors.TimeoutError:
            if last_sequence is None:
                raise
            break
        for message in messages:
            await message.ack()
        seen += len(messages)
        if last_sequence is not None and messages and messages[-1].metadata.sequence.stream >= last_sequence:
            break
    elapsed = time.perf_counter() - started
    await js.delete_consumer("AGENT_EVENTS", name)
    await client.close()
    return seen / elapsed


def run() -> Iterator[dict]:
    from agents import discoveries
    from agents.models import Agent, Discovery
    from mistersmith.jetstream.client import connection, nats_url
    from mistersmith.live.bridge import BridgeThread, delete_consumers

    with bench_database():
        url = nats_url()
        connection().client()  # streams exist
        agents = Agent.objects.bulk_create(Agent(name=f"bench-bridge-{i}", status="Running") for i in range(AGENTS))
        subjects = [f"agent.{a.pk}.events" for a in agents]
        tag = uuid.uuid4().hex[:8]
        # The bridge's durable consumers are made first (start, stop), then the events are
        # published, then the bridge is timed from its start to the last event applied.
        prefix = f"bench-bridge-{tag}"
        bridge = BridgeThread(consumer_prefix=prefix, url=url)
        bridge.start()
        bridge.ready.wait(30)
        bridge.stop()
        first_sequence = asyncio.run(_publish(url, subjects))
        bare_name = f"bench-bare-{tag}"
        bridge = BridgeThread(consumer_prefix=prefix, url=url)
        bridge_started = time.perf_counter()
        bridge.start()
        try:
            while bridge.stats.processed["heartbeat"] < EVENTS:
                time.sleep(0.01)
            bridge_rate = EVENTS / (time.perf_counter() - bridge_started)
        finally:
            bridge.stop()
            delete_consumers(prefix)
        bare_rate = asyncio.run(bare_consumer(url, bare_name, first_sequence))
        Agent.objects.filter(pk__in=[a.pk for a in agents]).delete()
        yield {
            "figure": "bridge_throughput",
            "events": EVENTS,
            "bridge_events_per_s": round(bridge_rate),
            "bare_consumer_events_per_s": round(bare_rate),
            "ratio": round(bridge_rate / bare_rate, 3),
            "target": {"bridge_events_per_s": 10_000, "ratio": 0.3},
        }

        Discovery.objects.all().delete()
        started = time.perf_counter()
        total = 20_000
        for batch in range(total // 100):
            discoveries.add_discoveries(
                discoveries.parse_discovery(
                    {
                        "agent_id": "bench",
                        "agent_role": "r",
                        "discovery_type": "Insight",
                        "content": "c",
                        "confidence": 0.5,
                        "timestamp": "2026-11-26T00:00:00Z",
                    },
                    sequence=batch * 100 + n + 1,
                )
                for n in range(100)
            )
        rate = total / (time.perf_counter() - started)
        yield {
            "figure": "discovery_store_inserts",
            "inserts": total,
            "per_s": round(rate),
            "held": Discovery.objects.count(),
        }
