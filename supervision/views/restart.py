"""Restart pages: the confirmation (GET) and the request (POST). Both call the restart service.

Only users with ``supervision.restart_node`` get past the permission check: everyone else gets
403 from the endpoint itself, whatever buttons a page shows.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode

from mistersmith.web.access import admin_page
from supervision import selectors, services

RESTART_PERMISSION = "supervision.restart_node"
MESSAGE_LEVEL = {
    "requested": messages.SUCCESS,
    "already_restarting": messages.WARNING,
    "refused": messages.ERROR,
    "escalated": messages.WARNING,
    "stale": messages.WARNING,
}


def _next_url(request: HttpRequest, node_pk: uuid.UUID) -> str:
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse("admin:supervision_supervisionnode_change", args=[node_pk])


def render_confirmation(request: HttpRequest, plan: services.RestartPlan, *, status: int = 200) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": f"Restart {plan.node}?",
        "plan": plan,
        "budget": selectors.node_budget(plan.node.pk),
        "next": _next_url(request, plan.node.pk),
        "opts": plan.node._meta,
    }
    return render(request, "supervision/restart_confirm.html", context, status=status)


@admin_page(RESTART_PERMISSION, methods=("GET", "POST"))
def restart_node(request: HttpRequest, node_pk: uuid.UUID) -> HttpResponse:
    """GET: what a restart would do (targets, delays, or why not). POST: do it."""
    try:
        plan = services.plan_restart(node_pk)
    except services.RestartError as error:
        messages.error(request, str(error))
        return HttpResponseRedirect(reverse("admin:supervision_supervisionnode_changelist"))
    if request.method == "GET":
        return render_confirmation(request, plan)
    try:
        outcome = services.request_restart(
            node_pk,
            user=request.user,
            reason=request.POST.get("reason", ""),
            confirmed_fingerprint=request.POST.get("fingerprint", ""),
        )
    except services.NodeNotFound as error:  # deleted between the confirmation and the request
        messages.error(request, str(error))
        return HttpResponseRedirect(reverse("admin:supervision_supervisionnode_changelist"))
    except services.RestartError as error:
        messages.error(request, str(error))
        return render_confirmation(request, plan, status=503)
    messages.add_message(request, MESSAGE_LEVEL[outcome.status], outcome.message)
    if outcome.status == "stale":
        return render_confirmation(request, outcome.plan, status=409)
    if outcome.status == "escalated":  # offer the supervisor's restart next
        parent_url = reverse("supervision:restart", args=[outcome.plan.escalate_to.pk])
        return HttpResponseRedirect(f"{parent_url}?{urlencode({'next': _next_url(request, plan.node.pk)})}")
    return HttpResponseRedirect(_next_url(request, plan.node.pk))
