"""Saving a node's supervision policy: the one place it is saved and announced, whoever saves it
(the policy's admin page, the node page's policy inline), as services.py is for restarts.

A saved policy is an event of the console's own, published on SUPERVISION_EVENTS so that every
browser hears about it through the one event path (the bridge turns it into frames). Subject:
``supervision.node.<node uuid>.policy.saved``. (A restart request needs no event of its own: its
RestartNode command on ``system.control`` is one, and the bridge frames it.) The publish happens
after the database commit; if NATS is away the change still stands, and the caller is told so
(a live page then shows it at its next snapshot).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.forms.models import model_to_dict

from mistersmith.jetstream.client import NatsUnavailable, connection
from mistersmith.jetstream.messages import envelope
from supervision import history
from supervision.models import SupervisionPolicy

logger = logging.getLogger(__name__)


def policy_subject(node_id: uuid.UUID) -> str:
    return f"supervision.node.{node_id}.policy.saved"


def policy_saved_payload(policy: SupervisionPolicy, user: Any) -> dict[str, Any]:
    fields = model_to_dict(policy, exclude=["id", "node"])
    return {
        "PolicySaved": {
            "node_id": str(policy.node_id),  # the node's UUID (its ``node_id`` column is its name)
            "node_name": policy.node.node_id,
            "changed_by": getattr(user, "username", None),
            "policy": fields,
        }
    }


def save_policy(policy: SupervisionPolicy, user: Any, on_unpublished: Callable[[str], None] | None = None) -> None:
    """Save ``policy`` (changed by ``user``) and, once committed, tell every live page;
    ``on_unpublished`` hears why they were not told (the policy stays saved)."""
    with transaction.atomic():
        history.record_as(user)
        policy.save()
        _publish_after_commit(policy, user, on_unpublished)


def _publish_after_commit(policy: SupervisionPolicy, user: Any, on_failure: Callable[[str], None] | None) -> None:
    """After the commit, publish that ``policy`` was saved by ``user``; ``on_failure`` hears why not."""
    payload = policy_saved_payload(policy, user)
    subject = policy_subject(policy.node_id)

    def publish() -> None:
        message_id = uuid.uuid4().hex
        try:
            connection().publish(subject, envelope(payload, message_id=message_id), msg_id=message_id, timeout=3)
        except NatsUnavailable as error:
            logger.warning("policy of %s saved, but its event was not published: %s", policy.node, error)
            if on_failure is not None:
                on_failure(f"The policy was saved, but live pages were not told ({error}).")

    transaction.on_commit(publish)
