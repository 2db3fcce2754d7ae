"""agents/rebuild.py: the agents' rewind rules, on their own (the whole rebuild against real
streams is tests/operations/test_rebuild.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.events import AgentEvent
from agents.lifecycle import AgentState
from agents.models import Agent
from agents.rebuild import rewind

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def agent(status: str) -> Agent:
    return Agent.objects.create(name=f"rewind-{status}", status=status, last_heartbeat=NOW)


def test_each_agent_goes_back_to_where_it_stood_before_its_first_state_event_in_the_range():
    born, paused, ended, failed, quiet = (agent(AgentState.RUNNING) for _ in range(5))
    events = [
        (1, AgentEvent("Spawned", born.pk)),
        (2, AgentEvent("StateChanged", paused.pk, old_state=AgentState.IDLE, new_state=AgentState.PAUSED)),
        (3, AgentEvent("StateChanged", paused.pk, old_state=AgentState.PAUSED, new_state=AgentState.RUNNING)),
        (4, AgentEvent("Terminated", ended.pk)),
        (5, AgentEvent("Error", failed.pk, text="boom")),
        (6, AgentEvent("Heartbeat", quiet.pk)),  # not a state event: the agent is left as it is
    ]
    seen: set = set()
    rewind(events, seen)
    states = {a.pk: (a.status, a.last_heartbeat) for a in Agent.objects.filter(pk__in=[e[1].agent_id for e in events])}
    assert states == {
        born.pk: (AgentState.CREATED, None),  # its whole life is in the range
        paused.pk: (AgentState.IDLE, NOW),  # the old state of its first StateChanged, not of its second
        ended.pk: (AgentState.TERMINATED, NOW),
        failed.pk: (AgentState.ERROR, NOW),
        quiet.pk: (AgentState.RUNNING, NOW),
    }
    assert seen == {born.pk, paused.pk, ended.pk, failed.pk}


def test_an_agent_already_rewound_in_this_replay_is_not_rewound_again():
    moved = agent(AgentState.RUNNING)
    seen = {moved.pk}  # met in an earlier batch of the same replay
    rewind([(9, AgentEvent("StateChanged", moved.pk, old_state=AgentState.IDLE, new_state=AgentState.RUNNING))], seen)
    moved.refresh_from_db()
    assert moved.status == AgentState.RUNNING
