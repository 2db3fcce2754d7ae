"""The JSON of a person's recent actions and their outcomes, read by every live page (actions.js)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from agents.models import AgentCommandRecord
from mistersmith.console.actions import selectors
from mistersmith.web.access import json_endpoint, may_view
from supervision.models import SupervisionRestart

COMMAND_PERMISSION = "agents.command_agent"


@json_endpoint()
@require_safe
def mine(request: HttpRequest) -> JsonResponse:
    """The user's own restarts and bulk runs of the last 30 minutes: their state now, and links.
    Only what this user asked for; a restart's record is linked only for who may view restarts."""
    actions = selectors.recent_actions(
        request.user,
        may_view_restarts=may_view(request, SupervisionRestart),
        may_command=request.user.has_perm(COMMAND_PERMISSION) and may_view(request, AgentCommandRecord),
    )
    return JsonResponse(actions)
