"""Bulk Pause, Resume and Stop pages: the confirmation that counts the agents, and the run's results.

Thin shells over :mod:`agents.bulk`. Every page needs ``agents.view_agent`` and the command
permission (``agents.command_agent``); the POSTs are CSRF-checked admin pages. The confirmation is
Django admin's action confirmation: the same form posted again with ``confirm=yes`` and the plan's
fingerprint, so a filter whose result changed meanwhile is shown again (409) instead of sent.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.http import urlencode

from agents import bulk, commands, selectors
from agents.models import BulkCommandRun
from mistersmith.web.access import admin_page, live_page_context

VIEW_PERMISSION = "agents.view_agent"


def _may_view(request: HttpRequest) -> None:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied


def _selected_ids(request: HttpRequest) -> list[uuid.UUID]:
    """The ``agent`` values posted; ValueError for anything that is no agent id."""
    values = request.POST.getlist("agent")
    try:
        return [uuid.UUID(value) for value in values]
    except ValueError:
        raise ValueError("The selection holds something that is not an agent id.") from None


def _plan(request: HttpRequest) -> bulk.BulkPlan:
    """The plan the form describes: ``scope`` "filter" (``state``, ``q``) or the ``agent`` ids."""
    command = request.POST.get("command", "")
    if request.POST.get("scope") == BulkCommandRun.Scope.FILTER:
        return bulk.plan_bulk(command, filters=selectors.ListFilter.from_query(request.POST))
    return bulk.plan_bulk(command, agent_ids=_selected_ids(request))


def _back(plan_filters: dict[str, str]) -> str:
    return reverse("agent_pages:list") + (f"?{urlencode(plan_filters)}" if plan_filters else "")


@admin_page(commands.PERMISSION, methods=("POST",))
def bulk_command(request: HttpRequest) -> HttpResponse:
    """POST without ``confirm``: the confirmation. With ``confirm=yes``: the run, then its page."""
    _may_view(request)
    try:
        plan = _plan(request)
    except (ValueError, bulk.BulkRefused) as error:
        messages.error(request, str(error))
        return HttpResponseRedirect(reverse("agent_pages:list"))
    confirmed = request.POST.get("confirm") == "yes"
    if confirmed and request.POST.get("fingerprint") == plan.fingerprint:
        run = bulk.start_bulk(request.user, plan)
        messages.success(request, f"{plan.command} sent to {plan.total} agents: their results come below.")
        return HttpResponseRedirect(reverse("agent_pages:bulk_run", args=[run.pk]))
    status = 200
    if confirmed:
        messages.warning(request, "The agents matching changed since you looked: review the count again.")
        status = 409
    allowed = commands.ALLOWED_FROM[plan.command]
    context = live_page_context(
        request,
        f"{plan.command} {plan.total} agent{'s' if plan.total != 1 else ''}?",
        plan=plan,
        by_state=sorted(plan.by_state.items()),
        allowed_states=", ".join(sorted(allowed)) if allowed else "",
        selected=[str(pk) for pk in plan.agent_ids] if plan.scope == BulkCommandRun.Scope.SELECTION else [],
        back=_back(plan.filters),
        limit=bulk.BULK_LIMIT,
    )
    return TemplateResponse(request, "agents/bulk_confirm.html", context, status=status)


@admin_page(commands.PERMISSION)
def bulk_run(request: HttpRequest, run_id: uuid.UUID) -> HttpResponse:
    """A run's page: each agent's result, filled and kept current by agents/bulk_run.js."""
    _may_view(request)
    run = get_object_or_404(BulkCommandRun, pk=run_id)
    config = {
        "results": reverse("agent_pages:bulk_results", args=[run.pk]),
        "detail": reverse("agent_pages:detail", args=[uuid.UUID(int=0)]),
        "placeholder": str(uuid.UUID(int=0)),
    }
    context = live_page_context(request, f"Bulk {run.command} of {run.total} agents", run=run, page_config=config)
    return TemplateResponse(request, "agents/bulk_run.html", context)


@admin_page(commands.PERMISSION)
def bulk_results(request: HttpRequest, run_id: uuid.UUID) -> JsonResponse:
    """A run's results as JSON (the page reads it until the run is done)."""
    _may_view(request)
    run = get_object_or_404(BulkCommandRun, pk=run_id)
    return JsonResponse(bulk.run_results(run).as_json())
