"""Long texts on the agents pages: a bounded preview in every snapshot and frame, the whole on demand.

An Output or Error text may be as long as AGENT_EVENTS allows (1 MiB), a session message as long as
the Output it came from. The console keeps them whole (agents/events.py); a page gets the first
PREVIEW_CHARS characters and the whole length, so it says the text was cut and fetches the rest
through the agent's text endpoint (agents/views/pages.py ``agent_text``) only when a person asks.
The bridge's frames cut texts at the same length (mistersmith/live/bridge.py, ``text[:2000]``).
"""

from __future__ import annotations

import uuid
from typing import Any

import nats.js.errors

from agents.events import parse_agent_event, subject_agent_id
from agents.models import SessionMessage
from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.messages import InvalidMessage, decode_json

STREAM = "AGENT_EVENTS"
PREVIEW_CHARS = 2000


class TextNotFound(LookupError):
    """No such text for this agent (the message left the stream, or never held a text)."""


def preview(text: str | None, key: str = "text") -> dict[str, Any]:
    """``{key: the first PREVIEW_CHARS characters, key_length: the whole length}`` (nothing for None)."""
    if text is None:
        return {}
    return {key: text[:PREVIEW_CHARS], f"{key}_length": len(text)}


async def _get(js: Any, sequence: int) -> Any:
    """The message, or None for "no such message" (kept apart from NATS being away, which the
    connection's run() turns into NatsUnavailable)."""
    try:
        return await js.get_msg(STREAM, seq=sequence)
    except nats.js.errors.NotFoundError:
        return None


def stored_event(sequence: int) -> Any:
    """The whole AGENT_EVENTS message at ``sequence`` (TextNotFound when the stream no longer holds it;
    NatsUnavailable when NATS is away)."""
    connection = console_nats.connection()
    message = connection.run(_get(connection.client().jetstream(), sequence))
    if message is None:
        raise TextNotFound(f"The stream no longer holds message {sequence}.")
    return message


def event_text(agent_id: uuid.UUID, sequence: int) -> str:
    """The whole text (Output's content, Error's error) of the agent's event at ``sequence``."""
    message = stored_event(sequence)
    if message.subject != f"agent.{agent_id}.events":
        raise TextNotFound(f"Message {sequence} is not one of this agent's events.")
    try:
        event = parse_agent_event(decode_json(message.data or b""), subject_agent=subject_agent_id(message.subject))
    except InvalidMessage as error:
        raise TextNotFound(f"Message {sequence} cannot be read: {error}") from error
    if event.text is None:
        raise TextNotFound(f"Message {sequence} holds no text.")
    return event.text


def session_message_text(agent_id: uuid.UUID, message_id: int) -> str:
    """The whole content of one of the agent's session messages."""
    messages = SessionMessage.objects.filter(pk=message_id, session__agent_id=agent_id)
    content = messages.values_list("content", flat=True).first()
    if content is None:
        raise TextNotFound("This agent has no such session message.")
    return content
