"""The agent lifecycle table (CONTRACTS.md §2) and its use through the database."""

from __future__ import annotations

import itertools

import pytest

from agents.lifecycle import ACTIVE_STATES, AgentState, IllegalTransition, allowed_targets, check_transition
from agents.models import Agent

S = AgentState
LEGAL = {
    (S.CREATED, S.STARTING),
    (S.STARTING, S.RUNNING),
    (S.STARTING, S.ERROR),
    (S.RUNNING, S.PROCESSING),
    (S.IDLE, S.PROCESSING),
    (S.PROCESSING, S.IDLE),
    (S.RUNNING, S.PAUSED),
    (S.IDLE, S.PAUSED),
    (S.PAUSED, S.RUNNING),
    *((state, S.STOPPING) for state in (S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.ERROR)),
    (S.STOPPING, S.TERMINATED),
    (S.STOPPING, S.ERROR),  # the stop failed (Agent::stop)
    *((state, S.ERROR) for state in ACTIVE_STATES),  # a failed health check or execute
    *((state, S.ERROR) for state in S if state not in (S.TERMINATED, S.ERROR)),  # a failed kill
    *((state, S.TERMINATED) for state in S if state != S.TERMINATED),  # kill
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_of_states_is_legal_exactly_when_the_contract_says(current, target):
    if (current, target) in LEGAL:
        check_transition(current, target)
        assert target in allowed_targets(current)
    else:
        with pytest.raises(IllegalTransition, match=f"from {current} to {target}"):
            check_transition(current, target)


def test_terminated_is_final_and_unknown_states_are_refused():
    assert allowed_targets(S.TERMINATED) == frozenset()
    with pytest.raises(IllegalTransition):
        check_transition(S.RUNNING, "Sleeping")


@pytest.mark.django_db
def test_transition_to_changes_the_row_or_nothing():
    agent = Agent.objects.create(name="lc")
    agent.transition_to(S.STARTING)
    agent.transition_to(S.RUNNING)
    assert Agent.objects.get(pk=agent.pk).status == S.RUNNING
    with pytest.raises(IllegalTransition, match="may move to"):
        agent.transition_to(S.CREATED)
    assert Agent.objects.get(pk=agent.pk).status == S.RUNNING


@pytest.mark.django_db
def test_transition_reads_the_database_not_a_stale_object():
    agent = Agent.objects.create(name="stale", status=S.RUNNING)
    stale = Agent.objects.get(pk=agent.pk)
    agent.transition_to(S.STOPPING)
    with pytest.raises(IllegalTransition, match="from Stopping to Paused"):
        stale.transition_to(S.PAUSED)
