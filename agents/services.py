"""What a command's reply means for the agent's state: the runtime's reply is the state.

The runtime publishes no event when it pauses or resumes an agent, nor when a failed health check
puts an active agent in Error (``src/message/handler.rs``, ``src/agent/lifecycle.rs``): the only
word of those moves is the ``Success`` reply to the command. So the console applies the move the
reply reports, through the lifecycle (an :class:`~agents.models.AgentAnomaly` naming who asked
when the agent can no longer make it, e.g. it moved meanwhile), and then publishes a
``StateChanged {agent_id, old_state, new_state}`` on ``agent.{id}.events`` in the runtime's own
envelope (source_agent null) with ``Nats-Msg-Id`` = its message id.

Why publish it: the AGENT_EVENTS stream is the history every projection is made from. Without
the event, a rebuild from the streams (``rebuild_projections``), another console attached to the
same streams, and the live pages of other workers would all keep the agent Running after a
pause. With it, they replay the same move; the bridge of this console finds the agent already in
that state ("in_sync"), so the move is applied once. The row is moved first (in the transaction
that checks the lifecycle) and the event published after the commit: a person waiting on the
page sees the state at once, and with NATS away the move still stands and the answer says the
stream was not told.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models.functions import Now

from agents.lifecycle import ACTIVE_STATES, AgentState, IllegalTransition, check_transition
from agents.models import Agent, AgentAnomaly
from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.messages import envelope

logger = logging.getLogger(__name__)
PUBLISH_TIMEOUT_SECONDS = 3.0


@dataclass(frozen=True)
class ReplyMove:
    """What came of a reply's move: the states, whether it was applied, and a sentence for people."""

    old_state: str | None
    new_state: str
    applied: bool
    detail: str
    event_message_id: str | None = None


def events_subject(agent_id: uuid.UUID) -> str:
    return f"agent.{agent_id}.events"


def state_changed_message(agent_id: uuid.UUID, old_state: str, new_state: str) -> dict[str, Any]:
    """A StateChanged as the runtime would publish it (``MessageEnvelope::new(AgentEvent)``)."""
    body = {"StateChanged": {"agent_id": str(agent_id), "old_state": old_state, "new_state": new_state}}
    return envelope(body, message_id=str(uuid.uuid4()))


def _who(user: Any) -> str:
    return getattr(user, "username", "") or "an unknown user"


def apply_reply_move(user: Any, agent_id: uuid.UUID, command: str, target: str) -> ReplyMove:
    """Move the agent to ``target``, the state the runtime's Success reply to ``command`` reports.

    Already there: nothing to do (the runtime's row or an earlier event said so). A move the
    lifecycle forbids from the console's state: an anomaly naming ``user``, nothing moved, no
    event. Else the row moves and, after the commit, the StateChanged is published.
    """
    with transaction.atomic():
        current = Agent.objects.select_for_update().filter(pk=agent_id).values_list("status", flat=True).first()
        if current is None:
            return ReplyMove(None, target, False, "The console no longer has this agent: nothing moved.")
        if current == target:
            return ReplyMove(current, target, False, f"The agent is {target}.")
        try:
            check_transition(current, target)
        except IllegalTransition as error:
            detail = (
                f"The runtime's reply to {command} (asked by {_who(user)}) says the agent is {target}, "
                f"but the console has it in {current}: {error}"
            )
            AgentAnomaly.objects.create(
                agent_id=agent_id,
                event_kind=f"{command} reply"[:32],
                current_state=current,
                attempted_state=target,
                detail=detail,
            )
            return ReplyMove(current, target, False, f"{detail} Recorded as an anomaly; nothing moved.")
        Agent.objects.filter(pk=agent_id).update(status=target, state_changed_at=Now(), updated_at=Now())
    message = state_changed_message(agent_id, current, target)
    detail = f"The agent is now {target} (was {current}), as the runtime's reply says."
    try:
        console_nats.connection().publish(
            events_subject(agent_id), message, msg_id=message["message_id"], timeout=PUBLISH_TIMEOUT_SECONDS
        )
    except console_nats.NatsUnavailable as error:
        logger.warning("agent %s moved to %s, but its StateChanged was not published: %s", agent_id, target, error)
        detail += f" Its StateChanged event could not be published ({error}): other consoles will not see it."
        return ReplyMove(current, target, True, detail)
    return ReplyMove(current, target, True, detail, message["message_id"])


def health_check_target(healthy: bool, state: str | None) -> str | None:
    """The runtime's ``health_check`` puts an active agent that is not healthy in Error; None: no move."""
    if not healthy and state in ACTIVE_STATES:
        return AgentState.ERROR.value
    return None
