"""The services under the console are real and reachable: PostgreSQL pool, NATS with JetStream."""

from __future__ import annotations

import uuid

import nats
import pytest
from django.conf import settings
from django.db import connection


def test_database_uses_the_runtime_pool_sizes():
    pool = settings.DATABASES["default"]["OPTIONS"]["pool"]
    assert pool == {"min_size": 5, "max_size": 30, "max_lifetime": 3600, "max_idle": 300, "timeout": 10}


@pytest.mark.django_db
def test_database_answers_through_the_pool():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)
    assert connection.pool is not None
    assert connection.pool.get_stats()["pool_max"] == 30


async def test_nats_jetstream_round_trip(nats_url):
    client = await nats.connect(nats_url)
    stream = f"TEST_{uuid.uuid4().hex[:12].upper()}"
    subject = f"test.{stream.lower()}"
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[subject])
        ack = await js.publish(subject, b"hello", headers={"Nats-Msg-Id": "one"})
        duplicate = await js.publish(subject, b"hello", headers={"Nats-Msg-Id": "one"})
        assert duplicate.duplicate and duplicate.seq == ack.seq
        consumer = await js.pull_subscribe(subject, durable=f"{stream}_c")
        (message,) = await consumer.fetch(1, timeout=5)
        assert message.data == b"hello"
        await message.ack()
    finally:
        await client.jetstream().delete_stream(stream)
        await client.close()
