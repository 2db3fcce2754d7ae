"""The policy form's backtest panel asks here: what the saved policy and the values being edited
would have done with the node's failures of the last 1, 7 and 30 days, and the lint of the edited
values (supervision/backtest.py, supervision/policy_lint.py).

GET, read-only: ``node`` (the node's UUID) and the policy's settings as the form posts them. Without
settings only the saved policy is replayed (a view-only user's page has no inputs). The figures are
made of the node's failures, so the caller needs the view permission of failures as well as of
policies. Bad settings are a 400 with the form's own messages; nothing is ever written (the edited
values are staged in a rolled-back savepoint).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.http import HttpRequest, JsonResponse

from mistersmith.web.access import SAFE_METHODS, json_endpoint
from supervision.backtest import (
    REPLAY_CAP,
    SETTINGS_FIELDS,
    Backtest,
    BacktestBusy,
    backtest_saved,
    backtest_settings,
    settings_of,
)
from supervision.models import SupervisionNode, SupervisionPolicy
from supervision.policy_form import PolicySettingsForm
from supervision.policy_lint import lint_policy

POLICY_VIEW = "supervision.view_supervisionpolicy"
FAILURE_VIEW = "supervision.view_supervisionfailure"


def _error(text: str, status: int, **extra: Any) -> JsonResponse:
    return JsonResponse({"error": text, **extra}, status=status)


def _node(value: str | None) -> SupervisionNode | None:
    try:
        return SupervisionNode.objects.filter(pk=uuid.UUID(str(value))).first()
    except ValueError:
        return None


@json_endpoint(POLICY_VIEW, FAILURE_VIEW, methods=SAFE_METHODS)
def policy_backtest(request: HttpRequest) -> JsonResponse:
    """``{"node", "saved", "edited", "lint", "replay_cap"}``: ``saved`` null without a saved policy,
    ``edited`` null without settings in the query; each ``{"periods": [...], "replayed_since"}``."""
    if not request.GET.get("node"):
        return _error("Choose a node: the backtest replays a node's failures.", 400)
    node = _node(request.GET["node"])
    if node is None:
        return _error(f"There is no supervision node {request.GET['node'][:64]!r}.", 404)
    saved_policy = SupervisionPolicy.objects.filter(node=node).first()
    saved = backtest_saved(saved_policy) if saved_policy is not None else None
    edited: Backtest | None = None
    if any(name in request.GET for name in SETTINGS_FIELDS):
        form = PolicySettingsForm(request.GET, instance=SupervisionPolicy(node=node))
        if not form.is_valid():  # the model's clean() too: the policy form's own checks
            errors = {name: [str(message) for message in messages] for name, messages in form.errors.items()}
            return _error(
                "These values are not a valid policy: " + " ".join(text for texts in errors.values() for text in texts),
                400,
                errors=errors,
            )
        settings = settings_of(form.instance)
        same = saved_policy is not None and settings == settings_of(saved_policy)
        try:
            edited = saved if same else backtest_settings(node, settings)
        except BacktestBusy as error:
            return _error(str(error), 409)
        lint = lint_policy(settings, node, edited)
    else:
        lint = lint_policy(settings_of(saved_policy), node, saved) if saved_policy is not None else []
    return JsonResponse(
        {
            "node": {"id": str(node.pk), "name": node.node_id, "has_parent": node.parent_id is not None},
            "saved": None if saved is None else saved.as_json(),
            "edited": None if edited is None else edited.as_json(),
            "lint": [warning.as_json() for warning in lint],
            "replay_cap": REPLAY_CAP,
        }
    )
