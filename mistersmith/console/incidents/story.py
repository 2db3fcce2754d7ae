"""One failure's story for one user: the records of :mod:`.decision`, :mod:`.records` and
:mod:`.agent_events` as one timeline ordered by time, each entry with links to its records.

The story ends at the node's next failure (which has a story of its own, linked) or STORY_MINUTES
after the failure, whichever comes first. Parts whose model the admin hides from the user
(mistersmith.web.access.hidden_parts) are neither read nor shown, each named with the sentence the
page shows in its place: the decision (it is the policy's figures), restarts, the agent's events.
The page and the JSON export are the same structure (:func:`incident_story`).

Reads: one statement for the failure and its decision, one for the restarts, one for the parent's
failures when the failure escalated (or the rules say it should have), one filtered stream read.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib.admin.utils import quote
from django.http import HttpRequest
from django.urls import reverse

from agents.models import Agent
from mistersmith.console.incidents import agent_events, records
from mistersmith.console.incidents.decision import Decision, decide, failure_row
from mistersmith.web.access import hidden_parts
from supervision.models import SupervisionPolicy, SupervisionRestart
from supervision.views.tree import node_tree_url

STORY_MINUTES = 10
VIEW_NODE = "supervision.view_supervisionnode"
VIEW_AGENT = "agents.view_agent"
VIEW_EVENT_LOG = "mistersmith.view_event_log"
PART_MODELS = {"decision": SupervisionPolicy, "restarts": SupervisionRestart, "agent_events": Agent}
# Entries at the same moment keep the story's order: what happened, then what followed from it.
ORDER = ("failure", "decision", "restart", "command", "completion", "agent_event", "parent_failure", "next_failure")


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def incident_url(failure_id: uuid.UUID | str) -> str:
    return reverse("incidents:page", args=[failure_id])


class _Links:
    """The URLs one user may follow from the story (None where they may not)."""

    def __init__(self, request: HttpRequest) -> None:
        user = request.user
        self.nodes = user.has_perm(VIEW_NODE)
        self.agents = user.has_perm(VIEW_AGENT)
        self.event_log = user.has_perm(VIEW_EVENT_LOG)

    @staticmethod
    def change(model: str, pk: Any) -> str:
        return reverse(f"admin:supervision_{model}_change", args=[quote(pk)])

    def node(self, pk: Any) -> dict[str, str | None]:
        return {
            "admin": self.change("supervisionnode", pk) if self.nodes else None,
            "tree": node_tree_url(pk) if self.nodes else None,
        }

    def agent(self, agent_id: Any) -> str | None:
        return reverse("agent_pages:detail", args=[agent_id]) if self.agents and agent_id else None

    def replay(self, stream: str, subject: str, **start: Any) -> str | None:
        """The event log's replay of ``subject`` from a sequence or a time (UTC, to the second)."""
        if not self.event_log:
            return None
        query = {"replay": stream, "replay_subject": subject, **{k: v for k, v in start.items() if v is not None}}
        return f"{reverse('event_log:page')}?{urlencode(query)}"


def _entry(kind: str, at: dt.datetime, title: str, text: str = "", **links: str | None) -> dict[str, Any]:
    return {
        "kind": kind,
        "at": at,
        "title": title,
        "text": text,
        "links": [{"text": name.replace("_", " "), "url": url} for name, url in links.items() if url],
    }


def _failure_json(row: dict[str, Any], links: _Links) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "node": {
            "id": str(row["node_id"]),
            "name": row["node_name"],
            "type": row["node_type"],
            "status": row["node_status"],
            "agent_id": None if row["agent_id"] is None else str(row["agent_id"]),
            "links": links.node(row["node_id"]),
        },
        "failure_reason": row["failure_reason"],
        "failure_detail": row["failure_detail"],
        "stack_trace": row["stack_trace"],
        "context": row["context"],
        "occurred_at": _iso(row["occurred_at"]),
        "restart_attempted": row["restart_attempted"],
        "escalated_to_parent": row["escalated_to_parent"],
        "recovery_action": row["recovery_action"],
        "correlation_id": None if row["correlation_id"] is None else str(row["correlation_id"]),
        "links": {"admin": links.change("supervisionfailure", row["id"]), "incident": incident_url(row["id"])},
    }


def _decision_text(decision: Decision) -> tuple[str, str]:
    if not decision.has_policy:
        return "No policy: the runtime does not restart this node", "should_restart answers false without a policy."
    counter = (
        f"{decision.failures_in_window} of max_restarts {decision.max_restarts} failures "
        f"in the {decision.window_seconds} s window"
    )
    if decision.restart:
        title = f"Restart: attempt {decision.attempt} after {decision.delay_ms} ms ({decision.strategy})"
    elif decision.should_restart:
        title = f"No restart: strategy {decision.strategy}"
    else:
        title = f"No restart: the window is full ({decision.strategy})"
    escalation = "no escalation"
    if decision.escalates:
        target = decision.parent["name"] if decision.parent else "beyond the root (no parent)"
        escalation = f"escalates to {target}: {'; '.join(decision.escalation_reasons)}"
    return title, f"{counter}; should_restart {'yes' if decision.should_restart else 'no'}; {escalation}."


def _restart_json(restart: SupervisionRestart, links: _Links) -> dict[str, Any]:
    sent = restart.command_sequence is not None and restart.command_sequence > 0
    return {
        "id": str(restart.pk),
        "node": {"id": str(restart.node_id), "name": restart.node.node_id},
        "failure_id": None if restart.failure_id is None else str(restart.failure_id),
        "restart_attempt_number": restart.restart_attempt_number,
        "restart_delay_ms": restart.restart_delay_ms,
        "started_at": _iso(restart.started_at),
        "completed_at": _iso(restart.completed_at),
        "success": restart.success,
        "error_message": restart.error_message,
        "new_instance_id": None if restart.new_instance_id is None else str(restart.new_instance_id),
        "requested_by": restart.requested_by.get_username() if restart.requested_by else None,
        "reason": restart.reason,
        "command_sequence": restart.command_sequence if sent else None,
        "links": {
            "admin": links.change("supervisionrestart", restart.pk),
            # the command and the answers after it on system.control
            "command": links.replay("SYSTEM_EVENTS", "system.control", from_sequence=restart.command_sequence)
            if sent
            else None,
        },
    }


def _restart_entries(restarts: list[dict[str, Any]], started: dict[str, dt.datetime], ended: dict) -> list[dict]:
    entries = []
    for restart in restarts:
        who = f" by {restart['requested_by']}" if restart["requested_by"] else ""
        origin = "the runtime" if restart["failure_id"] else "the console"
        title = f"Restart of {restart['node']['name']}: attempt {restart['restart_attempt_number']}, "
        title += f"delay {restart['restart_delay_ms']} ms (recorded by {origin}{who})"
        links = restart["links"]
        entries.append(_entry("restart", started[restart["id"]], title, restart["reason"], record=links["admin"]))
        if restart["command_sequence"] is not None:
            text = f"SYSTEM_EVENTS sequence {restart['command_sequence']}"
            entries.append(
                _entry("command", started[restart["id"]], "RestartNode command sent", text, event_log=links["command"])
            )
        if restart["completed_at"] is not None:
            outcome = "succeeded" if restart["success"] else f"failed: {restart['error_message'] or 'no error given'}"
            entries.append(_entry("completion", ended[restart["id"]], f"Restart {outcome}", record=links["admin"]))
    return entries


def incident_story(request: HttpRequest, failure_id: uuid.UUID) -> dict[str, Any] | None:
    """The story of one failure for this request's user (None: no such failure)."""
    row = failure_row(failure_id)
    if row is None:
        return None
    hidden = hidden_parts(request, PART_MODELS)
    links = _Links(request)
    occurred = row["occurred_at"]
    until = occurred + dt.timedelta(minutes=STORY_MINUTES)
    ends = f"{STORY_MINUTES} minutes after the failure"
    if row["next_failure_at"] is not None and row["next_failure_at"] < until:
        until, ends = row["next_failure_at"], "the node's next failure"
    failure = _failure_json(row, links)
    story: dict[str, Any] = {
        "failure": failure,
        "story": {"from": _iso(occurred), "until": _iso(until), "ends_at": ends},
        "hidden": hidden,
    }
    entries = [
        _entry(
            "failure",
            occurred,
            f"{row['failure_reason']} on {row['node_name']}",
            row["failure_detail"],
            record=failure["links"]["admin"],
            node=failure["node"]["links"]["admin"],
            tree=failure["node"]["links"]["tree"],
        )
    ]
    decision = decide(row)
    story["decision"] = None if "decision" in hidden else decision.as_json()
    if story["decision"] is not None:
        title, text = _decision_text(decision)
        policy = links.change("supervisionpolicy", row["policy_id"]) if row["policy_id"] else None
        entries.append(_entry("decision", occurred, title, text, policy=policy))
    story["restarts"] = _restarts(row, until, links, hidden, entries)
    story["agent_events"] = _agent_events(row, until, links, hidden, entries)
    rules_escalate = decision.escalates and "decision" not in hidden  # the rules are the policy's figures
    story["escalation"] = _escalation(row, rules_escalate, links, entries)
    if row["next_failure_id"] is not None:
        next_url = incident_url(row["next_failure_id"])
        story["next_failure"] = {"id": str(row["next_failure_id"]), "occurred_at": _iso(row["next_failure_at"])}
        entries.append(_entry("next_failure", row["next_failure_at"], "The node's next failure", incident=next_url))
    else:
        story["next_failure"] = None
    entries.sort(key=lambda entry: (entry["at"], ORDER.index(entry["kind"])))
    story["timeline"] = [{**entry, "at": _iso(entry["at"])} for entry in entries]
    return story


def _restarts(row: dict, until: dt.datetime, links: _Links, hidden: dict, entries: list) -> dict[str, Any] | None:
    if "restarts" in hidden:
        return None
    found = records.restarts_after(row, until)
    shown = found[: records.RESTART_LIMIT]
    restarts = [_restart_json(restart, links) for restart in shown]
    started = {str(r.pk): r.started_at for r in shown}
    ended = {str(r.pk): r.completed_at for r in shown}
    entries.extend(_restart_entries(restarts, started, ended))
    return {"records": restarts, "more": len(found) > records.RESTART_LIMIT}


def _agent_events(row: dict, until: dt.datetime, links: _Links, hidden: dict, entries: list) -> dict[str, Any] | None:
    if "agent_events" in hidden:
        return None
    agent_id = row["agent_id"]
    if agent_id is None:
        return {"agent": None, "events": [], "more": False, "note": "The node has no agent.", "links": {}}
    read = agent_events.events_after(agent_id, row["occurred_at"], until)
    subject = agent_events.agent_subject(agent_id)
    from_time = row["occurred_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    all_url = links.replay("AGENT_EVENTS", subject, from_time=from_time, limit=1000)
    for event in read.events:
        title = f"Agent event: {event.get('kind')}"
        if event.get("status"):
            old = event.get("old_status")
            title += f" ({old} → {event['status']})" if old else f" (now {event['status']})"
        message = links.replay("AGENT_EVENTS", subject, from_sequence=event["sequence"], limit=1)
        at = dt.datetime.fromisoformat(event["time"])
        text = event.get("text") or event.get("reason") or ""
        entries.append(_entry("agent_event", at, title, text, agent=links.agent(agent_id), event_log=message))
    return {
        "agent": {"id": str(agent_id), "url": links.agent(agent_id)},
        "events": read.events,
        "more": read.more,
        "note": read.note,
        "links": {"event_log": all_url},
    }


def _escalation(row: dict, rules_escalate: bool, links: _Links, entries: list) -> dict[str, Any]:
    """The parent and its failures right after, when the failure escalated or the rules say it should."""
    escalated = row["escalated_to_parent"] or rules_escalate
    if not escalated or row["parent_id"] is None:
        return {"escalated": escalated, "parent": None, "parent_failures": []}
    since = row["occurred_at"]
    failures = records.parent_failures_after(row["parent_id"], since, since + dt.timedelta(minutes=STORY_MINUTES))
    parent_failures = []
    for failure in failures:
        url = incident_url(failure.pk)
        parent_failures.append(
            {
                "id": str(failure.pk),
                "occurred_at": _iso(failure.occurred_at),
                "failure_reason": failure.failure_reason,
                "failure_detail": failure.failure_detail,
                "links": {"incident": url},
            }
        )
        title = f"Parent {row['parent_name']} failed: {failure.failure_reason}"
        entries.append(_entry("parent_failure", failure.occurred_at, title, failure.failure_detail, incident=url))
    return {
        "escalated": escalated,
        "parent": {"id": str(row["parent_id"]), "name": row["parent_name"], "links": links.node(row["parent_id"])},
        "parent_failures": parent_failures,
    }
