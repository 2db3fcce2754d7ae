"""The supervision tree page and the JSON it loads while it is explored, as admin views.

Each view is a thin shell over :mod:`supervision.selectors`: it checks access, reads the query
string, calls one selector and answers. Access is the admin's own (login and staff, through
``admin.site.admin_view``) plus the node model's view permission; the Restart link is offered
only to those who may restart, and the restart page checks again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from mistersmith.live.positions import stream_positions
from mistersmith.web.access import admin_page, hidden_parts, live_page_context, may_view
from supervision import selectors
from supervision.models import (
    NodeStatus,
    NodeType,
    SupervisionChildState,
    SupervisionFailure,
    SupervisionPolicy,
    SupervisionRestart,
)

VIEW_PERMISSION = "supervision.view_supervisionnode"
RESTART_PERMISSION = "supervision.restart_node"
# URLs with a node id are handed to the browser once, with this id to replace.
URL_PLACEHOLDER = uuid.UUID(int=0)

View = Callable[..., HttpResponse]


tree_view = admin_page(VIEW_PERMISSION)


def _restart_url(node_pk: uuid.UUID | str) -> str:
    """The restart confirmation, coming back to the tree at this node afterwards."""
    return f"{reverse('supervision:restart', args=[node_pk])}?{urlencode({'next': node_tree_url(node_pk)})}"


def node_tree_url(node_pk: uuid.UUID | str) -> str:
    """The tree opened at a node (its ancestors expanded, it selected): for links from elsewhere."""
    return f"{reverse('supervision:tree')}?{urlencode({'node': str(node_pk)})}"


@tree_view
def tree_page(request: HttpRequest) -> HttpResponse:
    """The page: the top levels (or the filtered tree), with the path to ``?node=`` opened."""
    filters = _filters(request)
    deep_link = _uuid_or_none(request.GET.get("node"))
    if filters:
        tree = selectors.filtered_tree(filters.get("status"), filters.get("type"), "budget" in filters)
    else:
        tree = selectors.top_levels(scope=_uuid_or_none(request.GET.get("root")), deep_link=deep_link)
    context = live_page_context(
        request,
        "Supervision tree",
        tree=_visible_tree(request, tree.as_json()),
        tree_config=_client_config(filters),
        filters=filters,
        status_choices=NodeStatus.choices,
        type_choices=NodeType.choices,
        node_not_found=bool(request.GET.get("node")) and not filters and tree.selected is None,
    )
    return TemplateResponse(request, "supervision/tree.html", context)


@tree_view
def tree_children(request: HttpRequest) -> HttpResponse:
    """One page of a node's children (``?parent=``; none: the roots), after the name ``?after=``."""
    parent = request.GET.get("parent") or None
    if parent is not None and _uuid_or_none(parent) is None:
        return HttpResponseBadRequest("parent must be a node id")
    page = selectors.children_page(parent, after=request.GET.get("after") or None)
    return JsonResponse(_visible_tree(request, page.as_json()))


@tree_view
def tree_search(request: HttpRequest) -> HttpResponse:
    """Nodes whose name contains ``?q=``, within the status and type filters."""
    filters = _filters(request)
    results = selectors.search_nodes(request.GET.get("q", ""), filters.get("status"), filters.get("type"))
    return JsonResponse({"results": results})


@tree_view
def tree_path(request: HttpRequest, node_pk: uuid.UUID) -> HttpResponse:
    """What the page needs to open the path to a node (a search result, a link)."""
    tree = selectors.path_to(node_pk)
    if tree.selected is None:
        raise Http404("No such node.")
    return JsonResponse(_visible_tree(request, tree.as_json()))


@tree_view
def tree_node(request: HttpRequest, node_pk: uuid.UUID) -> HttpResponse:
    """A node's panel: its details and history, and the links this user may follow. The parts whose
    model the admin hides from this user are left out, each with the sentence shown in its place."""
    hidden = hidden_panel_parts(request)
    details = selectors.node_details(node_pk, hidden)
    if details is None:
        raise Http404("No such node.")
    links = _panel_links(request.user, details["node"])
    _visible_nodes(request, [details["node"]])
    return JsonResponse({**details, "links": links, "hidden": hidden})


@tree_view
def tree_nodes(request: HttpRequest) -> HttpResponse:
    """The live tree's refresh: the nodes named by ``ids`` and the nodes of ``agents`` (comma-
    separated UUIDs, at most 500), with the stream positions they reflect."""
    try:
        node_ids = _uuid_list(request.GET.get("ids", ""))
        agent_ids = _uuid_list(request.GET.get("agents", ""))
    except ValueError as error:
        return JsonResponse({"error": str(error)}, status=400)
    with transaction.atomic():
        nodes = selectors.nodes_for_refresh(node_ids, agent_ids)
        positions = stream_positions()
    return JsonResponse({"nodes": _visible_nodes(request, nodes), "positions": positions})


# The panel's parts that have a model of their own: shown only to whom the admin shows that model.
PANEL_PART_MODELS = {
    "failures": SupervisionFailure,
    "restarts": SupervisionRestart,
    "child_states": SupervisionChildState,
    "policy": SupervisionPolicy,
}
HIDDEN_POLICY = {"hidden": True}
ESCALATING_FILTER = "escalating"  # ?budget=escalating: the nodes one failure from escalating


def hidden_panel_parts(request: HttpRequest) -> dict[str, str]:
    """The panel's parts this user may not see (mistersmith.web.access.may_view), with what the page says instead."""
    return hidden_parts(request, PANEL_PART_MODELS)


def _visible_nodes(request: HttpRequest, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes as this user may see them: a node's policy is a policy's row, shown only to whom the
    admin shows policies; for others it says only that there is one (``{"hidden": true}``)."""
    if not may_view(request, SupervisionPolicy):
        for node in nodes:
            if node["policy"] is not None:
                node["policy"] = HIDDEN_POLICY
                node["budget"] = HIDDEN_POLICY  # the budget is the policy's figures
    return nodes


def _visible_tree(request: HttpRequest, tree: dict[str, Any]) -> dict[str, Any]:
    """A tree slice's JSON with every node passed through :func:`_visible_nodes`."""
    for group in tree["groups"]:
        _visible_nodes(request, group["nodes"])
        _visible_nodes(request, group["pinned"])
    return tree


def _uuid_list(text: str) -> list[uuid.UUID]:
    parts = [part for part in text.split(",") if part.strip()]
    if len(parts) > selectors.LIVE_REFRESH_LIMIT:
        raise ValueError(f"At most {selectors.LIVE_REFRESH_LIMIT} ids at a time.")
    try:
        return [uuid.UUID(part.strip()) for part in parts]
    except ValueError:
        raise ValueError("ids and agents are comma-separated UUIDs.") from None


def _panel_links(user: AbstractBaseUser | AnonymousUser, node: dict[str, Any]) -> dict[str, str | None]:
    """Where the panel may send this user; None where the user has no permission."""
    pk = node["id"]
    history = f"?{urlencode({'node__id__exact': pk})}"
    policy = node["policy"]
    if policy is not None:
        may_see_policy = user.has_perm("supervision.view_supervisionpolicy") or user.has_perm(
            "supervision.change_supervisionpolicy"
        )
        policy_url = (
            reverse("admin:supervision_supervisionpolicy_change", args=[policy["id"]]) if may_see_policy else None
        )
    else:
        may_add = user.has_perm("supervision.add_supervisionpolicy")
        policy_url = (
            f"{reverse('admin:supervision_supervisionpolicy_add')}?{urlencode({'node': pk})}" if may_add else None
        )
    return {
        "change": reverse("admin:supervision_supervisionnode_change", args=[pk]),
        "tree": node_tree_url(pk),
        "policy": policy_url,
        "failures": _if_allowed(user, "supervisionfailure", history),
        "restarts": _if_allowed(user, "supervisionrestart", history),
        "restart": _restart_url(pk) if user.has_perm(RESTART_PERMISSION) else None,
        # a failure's story (mistersmith/console/incidents), the failure's id in place of the placeholder
        "incident": reverse("incidents:page", args=[URL_PLACEHOLDER])
        if user.has_perm("supervision.view_supervisionfailure")
        else None,
        # the node's agent, on its live page (agents/page_urls.py), for whom may view agents
        "agent": reverse("agent_pages:detail", args=[node["agent"]["id"]])
        if node.get("agent") and user.has_perm("agents.view_agent")
        else None,
    }


def _if_allowed(user: AbstractBaseUser | AnonymousUser, model: str, query: str) -> str | None:
    if not user.has_perm(f"supervision.view_{model}"):
        return None
    return reverse(f"admin:supervision_{model}_changelist") + query


def _client_config(filters: dict[str, str]) -> dict[str, Any]:
    """What tree.js needs besides the data: its endpoints, as URL templates where they take an id."""
    return {
        "childrenUrl": reverse("supervision:tree_children"),
        "searchUrl": reverse("supervision:tree_search"),
        "pathUrl": reverse("supervision:tree_path", args=[URL_PLACEHOLDER]),
        "nodeUrl": reverse("supervision:tree_node", args=[URL_PLACEHOLDER]),
        "nodesUrl": reverse("supervision:tree_nodes"),
        "changeUrl": reverse("admin:supervision_supervisionnode_change", args=[URL_PLACEHOLDER]),
        "treeUrl": reverse("supervision:tree"),
        "placeholder": str(URL_PLACEHOLDER),
        "filters": filters,
    }


def _filters(request: HttpRequest) -> dict[str, str]:
    """The status, type and budget filters of the query string; unknown values are dropped."""
    filters = {}
    if (status := request.GET.get("status")) in NodeStatus.values:
        filters["status"] = status
    if (node_type := request.GET.get("type")) in NodeType.values:
        filters["type"] = node_type
    if request.GET.get("budget") == ESCALATING_FILTER:
        filters["budget"] = ESCALATING_FILTER
    return filters


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
