"""The catch-up child's reader (mistersmith/jetstream/range_reader.py ``pulled_range``) reads what
``retained_messages`` reads: a stream's range, in order, whole, without what the stream no longer
holds, bounded in bytes per request, and leaves no consumer behind. Against a NATS of the test's own."""

from __future__ import annotations

import time

import nats
from nats.js.api import StreamConfig

from mistersmith.jetstream.range_reader import pulled_range, retained_messages
from tests.services import PrivateNats

STREAM = "RANGE_TEST"


async def filled(url: str, messages: list[tuple[str, bytes]]) -> nats.NATS:
    client = await nats.connect(url)
    js = client.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["range.>"]))
    for index, (subject, data) in enumerate(messages):
        headers = {"Nats-Msg-Id": f"m{index}"} if index % 7 == 0 else None
        await js.publish(subject, data, headers=headers)
    return client


async def read_all(client: nats.NATS, start: int, end: int, **options) -> list[list[tuple[int, str, bytes]]]:
    return [items async for items in pulled_range(client, STREAM, start, end, **options)]


async def test_a_range_is_read_whole_in_order_without_what_the_stream_no_longer_holds(tmp_path, stop_after):
    server = stop_after(PrivateNats(tmp_path).start())
    messages = [(f"range.{index % 5}.events", f"message {index} ".encode() * (index % 40 + 1)) for index in range(300)]
    client = await filled(server.url, messages)
    try:
        js = client.jetstream()
        for gone in (10, 100, 101, 240):
            await js.delete_msg(STREAM, gone)
        expected = [
            (sequence, subject, data)
            for sequence, (subject, data) in enumerate(messages, start=1)
            if 5 <= sequence <= 250 and sequence not in (10, 100, 101, 240)
        ]

        batches = await read_all(client, 5, 250, batch=32)
        assert [item for items in batches for item in items] == expected
        assert all(0 < len(items) <= 32 for items in batches)

        # the same as the reader of the rebuild and the snapshot export, message for message
        retained = [
            (m.metadata.sequence.stream, m.subject, m.data)
            async for ms in retained_messages(js, STREAM, 5, 250, batch=32)
            for m in ms
        ]
        assert retained == expected

        # from the start to the stream's very end, and from beyond it: nothing is waited for
        started = time.monotonic()
        everything = await read_all(client, 1, 10_000, timeout=30)
        assert [item[0] for items in everything for item in items] == [
            sequence for sequence in range(1, 301) if sequence not in (10, 100, 101, 240)
        ]
        assert await read_all(client, 301, 400, timeout=30) == []
        assert time.monotonic() - started < 20  # ended by "nothing pending", not by the 30 s timeout

        assert (await js.stream_info(STREAM)).state.consumer_count == 0
    finally:
        await client.close()


async def test_requests_are_bounded_in_bytes_and_an_early_stop_leaves_no_consumer(tmp_path, stop_after):
    server = stop_after(PrivateNats(tmp_path).start())
    big = [("range.big", bytes([65 + index % 26]) * 50_000) for index in range(120)]
    client = await filled(server.url, big)
    try:
        batches = await read_all(client, 1, 120, batch=1000, fetch_bytes=200_000)
        assert [item[0] for items in batches for item in items] == list(range(1, 121))
        assert [item[2] for items in batches for item in items] == [data for _, data in big]
        assert max(len(items) for items in batches[1:]) <= 4  # 200 KB of 50 KB messages after the first

        reader = pulled_range(client, STREAM, 1, 120, batch=10)
        first = await reader.__anext__()
        assert [item[0] for item in first] == list(range(1, 11))
        await reader.aclose()
        assert (await client.jetstream().stream_info(STREAM)).state.consumer_count == 0
    finally:
        await client.close()
