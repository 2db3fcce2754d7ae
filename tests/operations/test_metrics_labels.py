"""/metrics stays bounded whatever methods clients make up (issue 12, item 3): django-prometheus
labelled series by the request's method, so every made-up method on /healthz added series for good."""

from __future__ import annotations

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db

MADE_UP_METHODS = [f"ZZQX{index:02d}" for index in range(50)]


def series() -> set[tuple[str, frozenset]]:
    response = Client().get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items()))
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_fifty_made_up_methods_add_no_series():
    client = Client()
    assert client.generic("ZZQXWARM", "/healthz").status_code == 200  # the "other" series exist from here on
    series()  # a scrape's own series are recorded after its answer: the next scrape shows them
    before = series()
    for method in MADE_UP_METHODS:
        assert client.generic(method, "/healthz").status_code == 200
    after = series()
    assert after - before == set()
    label_values = {value for _, labels in after for _, value in labels}
    assert not label_values & {*MADE_UP_METHODS, "ZZQXWARM"}
    assert ("django_http_requests_total_by_method_total", frozenset({("method", "other")})) in after


def test_known_methods_keep_their_own_label():
    Client().generic("PATCH", "/healthz")
    assert ("django_http_requests_total_by_method_total", frozenset({("method", "PATCH")})) in series()
