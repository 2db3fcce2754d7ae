"""Fixtures shared by the agent command tests (test_commands, test_command_replies): core NATS
subscriptions that may answer ``agent.command`` as the runtime would, and an operator who may command."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import Permission
from django.db import connections

from tests.agents.test_commands import Subscriber


@pytest.fixture
def subscribe() -> Iterator[Callable[..., Subscriber]]:
    """``subscribe(subject, answer=None)``: a subscription on the console's connection, closed after the
    test; with ``answer`` it replies to each request with the bytes ``answer(request)`` returns."""
    made: list[Subscriber] = []

    def start(subject: str, answer: Callable[[dict], bytes | None] | None = None) -> Subscriber:
        made.append(Subscriber(subject, answer))
        return made[-1]

    yield start
    for subscriber in made:
        subscriber.close()
    connections.close_all()


@pytest.fixture
def operator(django_user_model):
    """Staff with view and command permissions on agents, nothing else."""
    user = django_user_model.objects.create_user("operator", password="operator-pass-1", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="agents", codename__in=["view_agent", "command_agent"])
    )
    return django_user_model.objects.get(pk=user.pk)  # fresh: no permission cache
