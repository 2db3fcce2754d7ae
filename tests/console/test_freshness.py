"""Freshness on every live page (issue 11 item 9) through real NATS: per bridge feed, how many
messages it has not applied and how old the oldest of them is; "stale" past the threshold; the
same figures in the JSON every live page polls, in /metrics and in verify_state; and the badge on
every live page."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.freshness import CACHE, FeedLag
from mistersmith.operations.verify import live as verify_live
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

FRESHNESS = reverse("dashboard:freshness")


def agents_feed(client) -> dict:
    CACHE.clear()  # the endpoint caches ~1 s; each look here wants a fresh read
    response = client.get(FRESHNESS)
    assert response.status_code == 200, response.content
    return next(feed for feed in response.json()["feeds"] if feed["feed"] == "agents")


def publish_heartbeats(count: int) -> None:
    agent = str(uuid.uuid4())
    for _ in range(count):
        body = {"Heartbeat": {"agent_id": agent, "timestamp": {"secs_since_epoch": 1, "nanos_since_epoch": 0}}}
        console_nats.connection().publish(f"agent.{agent}.events", body, msg_id=uuid.uuid4().hex)


def test_a_stopped_bridge_with_new_messages_is_behind_then_stale(admin_client, stopped_bridge, settings):
    settings.MISTERSMITH_STALE_SECONDS = 30
    feed = agents_feed(admin_client)
    assert (feed["messages_behind"], feed["seconds_behind"], feed["stale"]) == (0, 0, False)
    assert feed["text"] == "up to date" and feed["consumer"] == stopped_bridge and feed["consumer_exists"]

    publish_heartbeats(3)
    feed = agents_feed(admin_client)
    assert feed["messages_behind"] == 3 and not feed["stale"]
    assert feed["text"] == f"3 messages, {feed['seconds_behind']:.0f} s behind"

    settings.MISTERSMITH_STALE_SECONDS = 1
    wait_until(lambda: agents_feed(admin_client)["stale"], timeout=10, what="the feed to go stale")
    feed = agents_feed(admin_client)
    assert feed["seconds_behind"] >= 1 and feed["text"].startswith("stale: ")
    body = admin_client.get(FRESHNESS).json()
    assert body["stale"] is True and body["stale_after_seconds"] == 1

    from tests.operations.test_metrics import scrape, value

    samples = scrape()
    assert value(samples, "mistersmith_feed_stale", feed="agents", stream="AGENT_EVENTS") == 1
    assert value(samples, "mistersmith_feed_lag_messages", feed="agents", stream="AGENT_EVENTS") == 3
    assert value(samples, "mistersmith_feed_lag_seconds", feed="agents", stream="AGENT_EVENTS") >= 1

    async def rows() -> list:
        client = await verify_live.connect_nats(console_nats.nats_url())
        try:
            return await verify_live.freshness_rows(client.jetstream(), stopped_bridge.removesuffix("-agents"))
        finally:
            await client.close()

    row = next(row for row in asyncio.run(rows()) if row.check == "freshness agents")
    assert row.status == "degraded" and row.found.startswith("stale: ")

    # The bridge comes back and applies them: up to date again.
    nats = console_nats.connection()
    subscription = nats.run(nats.client().jetstream().pull_subscribe_bind(stopped_bridge, stream="AGENT_EVENTS"))
    for message in nats.run(subscription.fetch(3, timeout=5)):
        nats.run(message.ack_sync())
    feed = agents_feed(admin_client)
    assert (feed["messages_behind"], feed["seconds_behind"], feed["stale"], feed["text"]) == (0, 0, False, "up to date")


def test_the_text_of_a_lag():
    def lag(messages: int, seconds: float, stale: bool) -> str:
        return FeedLag("agents", "AGENT_EVENTS", "c", True, messages, seconds, stale).text

    assert lag(0, 0, False) == "up to date"
    assert lag(1, 2.4, False) == "1 message, 2 s behind"
    assert lag(1200, 3, False) == "1,200 messages, 3 s behind"
    assert lag(5, 120, True) == "stale: 120 s behind"


def test_the_endpoint_is_for_staff_only(client, django_user_model):
    response = client.get(FRESHNESS)
    assert response.status_code == 401 and response.json() == {"error": "Log in first."}
    client.force_login(django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}", is_staff=False))
    assert client.get(FRESHNESS).status_code == 403
    assert client.post(FRESHNESS).status_code in (401, 403, 405)


def test_every_live_page_has_the_badge(admin_client):
    from agents.models import Agent

    agent = Agent.objects.create(name="fresh", status="Running")
    pages = [
        reverse("dashboard:page"),
        reverse("event_log:page"),
        reverse("agent_pages:list"),
        reverse("agent_pages:detail", args=[agent.pk]),
        reverse("discovery_pages:page"),
        reverse("supervision:tree"),
    ]
    for page in pages:
        html = admin_client.get(page).content.decode()
        assert 'id="freshness-badge"' in html, page
        assert f'data-url="{FRESHNESS}"' in html and "mistersmith/freshness.js" in html, page
    tree = admin_client.get(reverse("supervision:tree")).content.decode()
    assert 'data-feeds="supervision control"' in tree


def test_a_staff_user_without_model_rights_may_read_the_figures(client, django_user_model):
    user = django_user_model.objects.create_user(f"u{uuid.uuid4().hex[:8]}", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_agent"))
    client.force_login(user)
    body = client.get(FRESHNESS).json()
    assert [feed["feed"] for feed in body["feeds"]] == ["control", "agents", "discoveries", "supervision"]
