"""Commands to agents: the one place a command is checked, sent to the runtime and recorded.

The runtime takes commands on ``agent.command`` as core NATS requests (CONTRACTS.md §3). Its own
types (MisterSmith's ``src/message/types.rs``) fix the shapes, so this module speaks them exactly:

- the command is a ``MessageEnvelope<AgentCommand>``: ``{message_id, timestamp, source_agent,
  target_agent, correlation_id, payload}`` with the timestamp as a Rust ``SystemTime``
  (``{secs_since_epoch, nanos_since_epoch}``) and the payload externally tagged, e.g.
  ``{"Pause": {"agent_id": "…"}}``; ``Stop`` carries ``graceful`` and ``timeout`` (a Rust
  ``Duration``: ``{secs, nanos}``, or null), ``Status`` and ``HealthCheck`` a ``reply_to``;
- the answer is a ``MessageEnvelope<CommandResponse>`` whose ``correlation_id`` is the command's
  ``message_id`` and whose payload is one of ``{"Success": {message, data}}``,
  ``{"Error": {error, code}}``, ``{"Status": AgentStatus}``, ``{"HealthCheck": {agent_id, healthy,
  details}}`` (a bare payload, without the envelope, is accepted too).

The reply is the state (:func:`interpret_reply`): the runtime publishes no event for a pause or a
resume, so a Success to Pause or Resume moves the agent here (agents.services explains how, and
why a StateChanged is then published on the agent's events subject).

The console refuses, before anything is sent, what the agent lifecycle forbids (pause only from
Running or Idle, resume only from Paused, stop from Running, Idle, Processing, Paused or Error);
Status and HealthCheck are always allowed. Every command handled, refused or sent, becomes an
:class:`~agents.models.AgentCommandRecord` and a line in the agent's admin history.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import nats.errors
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db import transaction

from agents.lifecycle import AgentState
from agents.models import Agent, AgentCommand, AgentCommandRecord, CommandOutcome
from agents.services import apply_reply_move, health_check_target
from mistersmith.jetstream import client as console_nats
from mistersmith.jetstream.messages import InvalidMessage, decode_json, envelope, open_envelope, tagged_variant

COMMAND_SUBJECT = "agent.command"
PERMISSION = "agents.command_agent"
REPLY_TIMEOUT_SECONDS = 5.0  # Pause, Resume, Status, HealthCheck, forced Stop
# A graceful stop waits for the agent up to its timeout before the runtime answers. The default is the
# agent's timeout_seconds, but never more than this: a person is waiting for the answer on a page.
DEFAULT_STOP_TIMEOUT_CAP_SECONDS = 30
MAX_STOP_TIMEOUT_SECONDS = 120
EXCERPT_CHARS = 2000

S = AgentState
# The states a command may be sent from (the lifecycle's pause, resume and stop); None: always.
ALLOWED_FROM: dict[str, frozenset[str] | None] = {
    AgentCommand.PAUSE: frozenset({S.RUNNING, S.IDLE}),
    AgentCommand.RESUME: frozenset({S.PAUSED}),
    AgentCommand.STOP: frozenset({S.RUNNING, S.IDLE, S.PROCESSING, S.PAUSED, S.ERROR}),
    AgentCommand.STATUS: None,
    AgentCommand.HEALTH_CHECK: None,
}
ALIASES = {
    "pause": AgentCommand.PAUSE,
    "resume": AgentCommand.RESUME,
    "stop": AgentCommand.STOP,
    "status": AgentCommand.STATUS,
    "health_check": AgentCommand.HEALTH_CHECK,
    "healthcheck": AgentCommand.HEALTH_CHECK,
    "health-check": AgentCommand.HEALTH_CHECK,
}
RESPONSE_VARIANTS = ("Success", "Error", "Status", "HealthCheck")


class CommandError(Exception):
    """A command that did not get a usable answer; ``record`` says so in the log, ``outcome`` how."""

    outcome = CommandOutcome.ERROR

    def __init__(self, message: str, record: AgentCommandRecord | None = None) -> None:
        super().__init__(message)
        self.record = record


class CommandRefused(CommandError):
    """The console refused the command before sending it (the lifecycle forbids it, the agent is gone)."""

    outcome = CommandOutcome.REFUSED


class CommandTimeout(CommandError):
    """The command was sent, and no answer came in time."""

    outcome = CommandOutcome.TIMEOUT


class RuntimeUnavailable(CommandError):
    """NATS could not be reached, or no runtime listens on agent.command; nothing was carried out."""

    outcome = CommandOutcome.UNAVAILABLE


class BadReply(CommandError):
    """An answer came but is not a CommandResponse: what the runtime did is unknown."""

    outcome = CommandOutcome.ERROR


@dataclass(frozen=True)
class CommandResponse:
    """The runtime's answer, whichever variant it came as."""

    variant: str  # Success, Error, Status or HealthCheck
    success: bool
    message: str
    data: Any = None
    code: int | None = None
    correlation_id: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "success": self.success,
            "message": self.message,
            "data": self.data,
            "code": self.code,
        }


@dataclass(frozen=True)
class CommandResult:
    record: AgentCommandRecord
    response: CommandResponse
    state: str | None = None  # the agent's state in the console once the reply was applied
    summary: str = ""  # what the reply means, in words (the runtime's own message stays in response)

    @property
    def ok(self) -> bool:
        return self.response.success


# The state a Success reply to Pause or Resume reports (handler.rs: data.state "paused", "running").
REPLY_TARGETS = {AgentCommand.PAUSE: AgentState.PAUSED.value, AgentCommand.RESUME: AgentState.RUNNING.value}


def normalise_command(command: str) -> str:
    """A command's variant name from its variant name or a friendly alias; ValueError for others."""
    if command in AgentCommand.values:
        return command
    found = ALIASES.get(str(command).strip().lower())
    if found is None:
        names = ", ".join(AgentCommand.values)
        raise ValueError(f"Unknown command {str(command)[:40]!r}; send one of {names}.")
    return found


def default_stop_timeout(agent: Agent) -> int:
    """The agent's own timeout, capped so that a person waiting on a page gets an answer soon."""
    return max(1, min(agent.timeout_seconds or DEFAULT_STOP_TIMEOUT_CAP_SECONDS, DEFAULT_STOP_TIMEOUT_CAP_SECONDS))


def check_stop_timeout(value: Any) -> int:
    """A whole number of seconds from 1 to MAX_STOP_TIMEOUT_SECONDS; ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"The stop timeout must be a whole number of seconds from 1 to {MAX_STOP_TIMEOUT_SECONDS}.")
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 6 or not 1 <= int(text) <= MAX_STOP_TIMEOUT_SECONDS:
        raise ValueError(f"The stop timeout must be a whole number of seconds from 1 to {MAX_STOP_TIMEOUT_SECONDS}.")
    return int(text)


def refusal(command: str, state: str) -> str | None:
    """Why the lifecycle forbids ``command`` in ``state``, or None when it may be sent."""
    allowed = ALLOWED_FROM[command]
    if allowed is None or state in allowed:
        return None
    verb = {"Pause": "paused", "Resume": "resumed", "Stop": "stopped"}[command]
    states = [value for value in AgentState.values if value in allowed]  # in the lifecycle's order
    listed = states[0] if len(states) == 1 else f"{', '.join(states[:-1])} or {states[-1]}"
    return f"The agent is {state}: it can be {verb} only when it is {listed}. Nothing was sent."


def command_body(
    command: str, agent_id: uuid.UUID, *, graceful: bool = True, timeout_s: int | None = None, reply_to: str = ""
) -> dict[str, Any]:
    """The AgentCommand variant, as the runtime deserialises it."""
    body: dict[str, Any] = {"agent_id": str(agent_id)}
    if command == AgentCommand.STOP:
        body["graceful"] = graceful
        body["timeout"] = {"secs": timeout_s, "nanos": 0} if graceful and timeout_s else None
    elif command in (AgentCommand.STATUS, AgentCommand.HEALTH_CHECK):
        body["reply_to"] = reply_to
    return {command: body}


def command_envelope(message_id: uuid.UUID, agent_id: uuid.UUID, payload: dict[str, Any]) -> dict[str, Any]:
    """``MessageEnvelope<AgentCommand>`` (mistersmith.jetstream.messages.envelope: SystemTime, every key present)."""
    return envelope(payload, message_id=str(message_id), target_agent=str(agent_id))


def _text(body: dict, key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise InvalidMessage("bad_field", f"{key} is not a string")
    return value


def parse_command_response(data: bytes, *, message_id: uuid.UUID | str | None = None) -> CommandResponse:
    """A CommandResponse from the raw reply; InvalidMessage (with a reason) for anything else.

    ``message_id``: the command's id; a reply that names another command is refused.
    """
    wrapped = open_envelope(decode_json(data))
    if message_id is not None and wrapped.correlation_id not in (None, str(message_id)):
        raise InvalidMessage("wrong_correlation", f"the reply answers {wrapped.correlation_id[:40]}")
    variant, body = tagged_variant(wrapped.payload)
    if variant not in RESPONSE_VARIANTS:
        raise InvalidMessage("unknown_variant", variant[:40])
    if not isinstance(body, dict):
        raise InvalidMessage("bad_field", f"{variant} is not an object")
    correlation = wrapped.correlation_id
    if variant == "Success":
        return CommandResponse(variant, True, _text(body, "message", "Done."), body.get("data"), None, correlation)
    if variant == "Error":
        code = body.get("code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, int)):
            raise InvalidMessage("bad_field", "code is not a number")
        text = _text(body, "error", "The runtime reported an error.")
        return CommandResponse(variant, False, text, None, code, correlation)
    if variant == "Status":
        state = body.get("state")
        if not isinstance(state, str):
            raise InvalidMessage("bad_field", "Status has no state")
        return CommandResponse(variant, True, f"The agent is {state}.", body, None, correlation)
    healthy = body.get("healthy")
    if not isinstance(healthy, bool):
        raise InvalidMessage("bad_field", "healthy is not true or false")
    message = "The agent is healthy." if healthy else "The agent is not healthy."
    details = _text(body, "details")
    return CommandResponse(variant, True, f"{message} {details}".strip(), body, None, correlation)


def _duration_text(value: Any) -> str | None:
    """A Rust Duration ({secs, nanos}) as "1 h 2 min", "3 min 4 s" or "5 s"; None for other values."""
    seconds = value.get("secs") if isinstance(value, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        return None
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _check_reply_agent(response: CommandResponse, agent_id: uuid.UUID) -> None:
    """A Success whose data names another agent answers some other command: refused as unreadable."""
    data = response.data if isinstance(response.data, dict) else {}
    named = data.get("agent_id", data.get("id"))
    if named is not None and str(named) != str(agent_id):
        raise InvalidMessage("wrong_agent", f"the reply is about agent {str(named)[:40]}")


def interpret_reply(user: Any, agent: Agent, command: str, response: CommandResponse) -> tuple[str, str | None]:
    """The reply as state: apply the move a Success reports (agents.services) and say in words what
    the runtime answered. Returns that sentence and the agent's state in the console afterwards.

    Pause and Resume: the Success is the move (Running|Idle -> Paused, Paused -> Running).
    Stop: nothing moves here; the Terminated event the runtime publishes before its reply ends it.
    HealthCheck: healthy or not (an active agent found unhealthy is in Error at the runtime, and so
    here). Status: the runtime's AgentInfo {id, state, uptime, config}, shown as it is."""
    state = Agent.objects.filter(pk=agent.pk).values_list("status", flat=True).first()
    if not response.success:  # an Error reply: its text, as the runtime wrote it
        return response.message, state
    data = response.data if isinstance(response.data, dict) else {}
    if command in REPLY_TARGETS:
        move = apply_reply_move(user, agent.pk, command, REPLY_TARGETS[command])
        state = move.new_state if move.applied else state
        verb = "paused" if command == AgentCommand.PAUSE else "resumed"
        return f"The runtime {verb} the agent. {move.detail}", state
    if command == AgentCommand.STOP:
        message = (
            f"The runtime stopped the agent ({data.get('state', 'stopped')}). Its Terminated event ends it here; "
            f"the console has it in {state}."
        )
        return message, state
    if command == AgentCommand.HEALTH_CHECK:
        healthy = data.get("healthy")
        if not isinstance(healthy, bool):
            return response.message, state
        message = "The agent is healthy." if healthy else "The agent is not healthy."
        if response.variant == "HealthCheck":  # the older reply form carries details
            message = response.message
        target = health_check_target(healthy, state)
        if target is not None:
            move = apply_reply_move(user, agent.pk, command, target)
            state = move.new_state if move.applied else state
            message = f"{message} The runtime puts an active agent that is not healthy in Error. {move.detail}"
        return message, state
    if command == AgentCommand.STATUS and isinstance(data.get("state"), str):
        reported = data["state"]
        uptime = _duration_text(data.get("uptime"))
        message = f"The runtime has the agent in {reported}" + (f", up {uptime}" if uptime else "") + "."
        if state is not None and reported != state:
            message += f" The console shows {state}."
        return message, state
    return response.message, state


def _excerpt(data: bytes) -> str:
    return data[:EXCERPT_CHARS].decode("utf-8", errors="replace")


async def _request(client: Any, subject: str, data: bytes, inbox: str, timeout: float) -> Any:
    """A core NATS request on our own inbox (the runtime's Status and HealthCheck name it in
    ``reply_to``): the reply, or None when none came in time. NATS' "no responders" status comes
    back as a reply with ``Status: 503`` in its headers."""
    subscription = await client.subscribe(inbox, max_msgs=1)
    try:
        await client.publish(subject, data, reply=inbox)
        try:
            return await subscription.next_msg(timeout=timeout)
        except nats.errors.TimeoutError:
            return None
    finally:
        with contextlib.suppress(nats.errors.Error):  # already gone with max_msgs, or the connection closed
            await subscription.unsubscribe()


def _no_responders(reply: Any) -> bool:
    return bool(reply.headers) and reply.headers.get("Status") == "503" and not reply.data


class _Recorder:
    """Writes the one record of a command (and its line in the agent's admin history)."""

    def __init__(self, user: Any, agent: Agent, command: str, bulk_run_id: uuid.UUID | None = None) -> None:
        self.user, self.agent, self.command, self.bulk_run_id = user, agent, command, bulk_run_id
        self.arguments: dict[str, Any] = {}
        self.message_id: uuid.UUID | None = None
        self.started = time.monotonic()

    @transaction.atomic
    def write(self, outcome: str, detail: str, reply: bytes | None = None, *, sent: bool = True) -> AgentCommandRecord:
        record = AgentCommandRecord.objects.create(
            agent_id=self.agent.pk,
            agent_name=self.agent.name[:500],
            command=self.command,
            arguments=self.arguments,
            message_id=self.message_id,
            requested_by=self.user if getattr(self.user, "pk", None) else None,
            requested_by_name=getattr(self.user, "username", "")[:150],
            outcome=outcome,
            detail=detail[:2000],
            response_excerpt=_excerpt(reply) if reply else "",
            duration_ms=int((time.monotonic() - self.started) * 1000) if sent else None,
            bulk_run_id=self.bulk_run_id,
        )
        if getattr(self.user, "pk", None) is not None:
            LogEntry.objects.log_actions(
                self.user.pk,
                [self.agent],
                CHANGE,
                change_message=f"{self.command} command: {outcome}. {detail}"[:2000],
                single_object=True,
            )
        return record


def send_agent_command(
    user: Any,
    agent: Agent,
    command: str,
    *,
    graceful: bool = True,
    timeout_s: int | None = None,
    reply_timeout: float | None = None,
    bulk_run_id: uuid.UUID | None = None,
) -> CommandResult:
    """Send ``command`` (Pause, Resume, Stop, Status, HealthCheck) to ``agent`` and wait for the answer.

    ``graceful`` and ``timeout_s`` are Stop's: a graceful stop lets the agent finish within
    ``timeout_s`` seconds (default: the agent's timeout_seconds, capped at 30 s; at most 120 s).
    ``reply_timeout`` is how long to wait for the answer (default 5 s, plus the stop timeout for a
    graceful stop). ``bulk_run_id``: the bulk run (agents.bulk) the command is one of, on its record.

    Returns the record and the runtime's answer, which may be a refusal (``response.success`` false).
    Raises PermissionDenied without ``agents.command_agent``, ValueError for a bad command or
    timeout (nothing recorded), and a :class:`CommandError` (recorded) when the console refuses
    the move, no answer comes, NATS or the runtime is away, or the answer cannot be read.
    """
    if not user.has_perm(PERMISSION):
        raise PermissionDenied("You may not send commands to agents.")
    command = normalise_command(command)
    stop_timeout: int | None = None
    if command == AgentCommand.STOP and graceful:
        stop_timeout = check_stop_timeout(timeout_s) if timeout_s is not None else default_stop_timeout(agent)
    recorder = _Recorder(user, agent, command, bulk_run_id)
    state = Agent.objects.filter(pk=agent.pk).values_list("status", flat=True).first()
    recorder.arguments = command_body(command, agent.pk, graceful=graceful, timeout_s=stop_timeout)[command]
    if state is None:
        message = "This agent no longer exists. Nothing was sent."
        raise CommandRefused(message, recorder.write(CommandOutcome.REFUSED, message, sent=False))
    reason = refusal(command, state)
    if reason is not None:
        raise CommandRefused(reason, recorder.write(CommandOutcome.REFUSED, reason, sent=False))

    wait = reply_timeout if reply_timeout is not None else REPLY_TIMEOUT_SECONDS + (stop_timeout or 0)
    recorder.message_id = message_id = uuid.uuid4()
    try:
        connection = console_nats.connection()
        client = connection.client()
        inbox = client.new_inbox()
        payload = command_body(command, agent.pk, graceful=graceful, timeout_s=stop_timeout, reply_to=inbox)
        recorder.arguments = payload[command]
        data = json.dumps(command_envelope(message_id, agent.pk, payload)).encode()
        recorder.started = time.monotonic()
        reply = connection.run(_request(client, COMMAND_SUBJECT, data, inbox, wait), wait + 2)
    except console_nats.NatsUnavailable as error:
        message = f"NATS is unavailable, so the command was not sent: {error}"
        raise RuntimeUnavailable(message, recorder.write(CommandOutcome.UNAVAILABLE, message, sent=False)) from error
    if reply is None:
        message = (
            f"No answer from the runtime within {wait:g} s. The command was sent; "
            "the agent's state will show whether it was carried out."
        )
        raise CommandTimeout(message, recorder.write(CommandOutcome.TIMEOUT, message))
    if _no_responders(reply):
        message = f"No runtime is listening on {COMMAND_SUBJECT}: the command reached no one."
        raise RuntimeUnavailable(message, recorder.write(CommandOutcome.UNAVAILABLE, message))
    try:
        response = parse_command_response(reply.data, message_id=message_id)
        if response.success:
            _check_reply_agent(response, agent.pk)
    except InvalidMessage as error:
        message = f"The runtime's answer could not be read ({error}); whether the command was carried out is unknown."
        raise BadReply(message, recorder.write(CommandOutcome.ERROR, message, reply.data)) from error
    summary, state = interpret_reply(user, agent, command, response)
    outcome = CommandOutcome.OK if response.success else CommandOutcome.ERROR
    record = recorder.write(outcome, summary, reply.data)
    return CommandResult(record, response, state, summary)
