"""Restart pages: the confirmation (GET) and the request (POST), both through services."""

from django.http import HttpRequest, HttpResponse


def restart_node(request: HttpRequest, node_pk) -> HttpResponse:  # replaced by the restart work
    raise NotImplementedError
