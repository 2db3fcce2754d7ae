"""Hostile input to the admin forms and the APIs (issue 6, "Bad input").

Script tags, attribute breakers, SQL fragments, huge values and unicode edge cases (RTL override,
zero-width characters, emoji, combining marks, NUL) go through every editable model's admin add
form, the query parameters of the pages and APIs, and the agent command endpoint. Each is either
stored exactly and shown escaped, or refused with a clear message: never a server error.
(tests/e2e/test_hostile_input.py checks in a browser that no stored script runs.)
"""

from __future__ import annotations

import json
import random
import string
import uuid
from html.parser import HTMLParser

import pytest
from django import forms
from django.apps import apps
from django.contrib.postgres.forms import SimpleArrayField
from django.urls import reverse

from agents.models import Agent, AgentCommandRecord, Discovery, InteractiveSession
from supervision.models import SupervisionNode, SupervisionRestart

pytestmark = pytest.mark.django_db(transaction=True)  # a refused statement must not poison the next one

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '"><img src=x onerror="window.__pwned=1">'
SQL = "x'); DROP TABLE supervision_nodes; --"
UNICODE = "\u202eevil\u202c \u200bzero\u200dwidth \U0001f600 e\u0301 \U0001d54f \ufeff"
# Incompressible: a repeated letter compresses below the size limit of an index entry, this does not.
HUGE = "".join(random.Random(6).choices(string.ascii_letters + string.digits, k=100_000))
NUL = "a\x00b"
STORED = {"script": SCRIPT, "img": IMG, "sql": SQL, "unicode": UNICODE}

# Every model an administrator may add or change, with the fields a valid form needs besides text.
EDITABLE = {
    "supervision.supervisionnode": {"node_type": "Service", "status": "active"},
    "supervision.supervisionpolicy": {"node": "<node>"},
    "supervision.supervisionfailure": {
        "node": "<node>",
        "failure_reason": "Crash",
        "occurred_at_0": "2026-11-26",
        "occurred_at_1": "10:00:00",
    },
    "supervision.supervisionchildstate": {"node": "<node>", "state": "Running"},
    "agents.agent": {"status": "Created"},
    "agents.agentinstance": {"agent": "<agent>", "status": "running"},
    "agents.interactivesession": {"agent": "<agent>", "state": "Ready"},
    "agents.sessionmessage": {
        "session": "<session>",
        "role": "user",
        "position": "0",
        "timestamp_0": "2026-11-26",
        "timestamp_1": "10:00:00",
    },
}


class FormReader(HTMLParser):
    """The fields of the admin's main form as a browser would submit them."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, str] = {}
        self.in_form = False
        self.select: str | None = None
        self.textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attr = dict(attrs)
        if tag == "form" and (attr.get("id") or "").endswith("_form"):
            self.in_form = True
        if not self.in_form or ("name" not in attr and tag != "option"):
            return
        if tag == "input" and attr.get("type") not in ("submit", "button", "file", "image"):
            if attr.get("type") in ("checkbox", "radio") and "checked" not in attr:
                return
            self.data[attr["name"]] = attr.get("value") or ("on" if attr.get("type") == "checkbox" else "")
        elif tag == "textarea":
            self.textarea = attr["name"]
            self.data[attr["name"]] = ""
        elif tag == "select":
            self.select = attr["name"]
        elif tag == "option" and self.select and (self.select not in self.data or "selected" in attr):
            self.data[self.select] = attr.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.in_form = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea:
            self.data[self.textarea] += data


@pytest.fixture
def related():
    node = SupervisionNode.objects.create(node_id=f"hostile-{uuid.uuid4().hex[:8]}", node_type="RootSupervisor")
    agent = Agent.objects.create(name="hostile-target")
    session = InteractiveSession.objects.create(agent=agent)
    return {"<node>": str(node.pk), "<agent>": str(agent.pk), "<session>": str(session.pk)}


def add_form(client, model: str, related: dict, text: str, *, fit: bool = True) -> tuple[str, dict, dict]:
    """The add form's URL, its data with ``text`` in every free-text field (JSON fields get it
    inside an object; cut to a field's maximum length unless not ``fit``), and which fields hold it exactly."""
    app, name = model.split(".")
    url = reverse(f"admin:{app}_{name}_add")
    page = client.get(url)
    assert page.status_code == 200
    reader = FormReader()
    reader.feed(page.content.decode())
    data = reader.data
    form = page.context["adminform"].form
    exact = {}
    for field_name, field in form.fields.items():
        if isinstance(field, forms.JSONField):
            data[field_name] = json.dumps({"note": text, text[:50]: [text]})
        elif isinstance(field, SimpleArrayField):
            data[field_name] = text.replace(",", " ")
        elif type(field) is forms.CharField and not field.widget.is_hidden:
            value = text[: field.max_length] if field.max_length and fit else text
            data[field_name] = exact[field_name] = value
    for key, value in EDITABLE[model].items():
        data[key] = related.get(value, value)
    if model == "supervision.supervisionnode":  # a unique name per submission
        data["node_id"] = exact["node_id"] = f"{text[:200]} {uuid.uuid4().hex[:6]}"
    if model == "supervision.supervisionpolicy":
        data["escalate_on_error_types"] = ""  # only failure reasons are allowed there
    return url, data, exact


def assert_escaped(html: str, text: str) -> None:
    """The payload's markup never appears as markup."""
    assert "<script>window.__pwned" not in html
    assert "<img src=x onerror" not in html


@pytest.mark.parametrize("model", list(EDITABLE))
@pytest.mark.parametrize("kind", list(STORED))
def test_hostile_text_is_stored_exactly_and_shown_escaped(admin_client, related, model, kind):
    text = STORED[kind]
    url, data, exact = add_form(admin_client, model, related, text)
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    app, name = model.split(".")
    stored = apps.get_model(model).objects.order_by().filter(**exact).get()
    for key, value in exact.items():
        assert getattr(stored, key) == value  # byte for byte, unicode included
    for view_url in (
        reverse(f"admin:{app}_{name}_changelist"),
        reverse(f"admin:{app}_{name}_change", args=[stored.pk]),
        reverse(f"admin:{app}_{name}_delete", args=[stored.pk]),
    ):
        page = admin_client.get(view_url)
        assert page.status_code == 200
        assert_escaped(page.content.decode(), text)


@pytest.mark.parametrize("model", list(EDITABLE))
def test_nul_and_unstorable_json_are_form_errors(admin_client, related, model):
    """PostgreSQL refuses NUL in text and \\u0000 or NaN in jsonb; a lone surrogate cannot even be
    shown again: each is a message on the form, the page shown again (200), nothing stored."""
    before = apps.get_model(model).objects.count()
    url, data, exact = add_form(admin_client, model, related, NUL)
    if exact:
        response = admin_client.post(url, data)
        assert response.status_code == 200
        assert "Null characters are not allowed" in response.content.decode()
    url, data, _ = add_form(admin_client, model, related, "fine")
    json_fields = [key for key, value in data.items() if value.startswith('{"note"')]
    for bad in ('{"a": "\\u0000"}', '{"a": NaN}', "[Infinity]", '"\\ud800"', "[" * 50_000 + "]" * 50_000):
        for field in json_fields:
            response = admin_client.post(url, {**data, field: bad})
            assert response.status_code == 200, bad
            assert "errorlist" in response.content.decode()
    assert apps.get_model(model).objects.count() == before


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("supervision.supervisionnode", 200),  # a unique name under an index: refused past 255 characters
        ("agents.agent", 200),  # the name is under the list's indexes: the same
        ("agents.sessionmessage", 302),  # unindexed text: kept whole
    ],
)
def test_huge_values_are_stored_or_refused_never_a_server_error(admin_client, related, model, status):
    url, data, exact = add_form(admin_client, model, related, HUGE, fit=False)
    if model == "supervision.supervisionnode":
        data["node_id"] = HUGE  # unique: its index entry has a size limit
    response = admin_client.post(url, data)
    assert response.status_code == status
    if response.status_code == 200:
        assert "errorlist" in response.content.decode()
    else:
        assert apps.get_model(model).objects.filter(**exact).exists()
    number_fields = ["max_turns", "timeout_seconds", "memory_limit_mb", "position"]
    url, data, _ = add_form(admin_client, model, related, "fine")
    for field in (name for name in number_fields if name in data):
        for bad in ("9" * 30, "-" + "9" * 5000, "1e999", "NaN", "0x10"):
            response = admin_client.post(url, {**data, field: bad})
            assert response.status_code == 200 and "errorlist" in response.content.decode(), (field, bad)


HOSTILE_QUERIES = [SCRIPT, IMG, SQL, UNICODE, "x" * 10_000, "%_\\'\"", "9" * 40, "1e999"]


def get_urls(agent: Agent, node: SupervisionNode) -> list[tuple[str, list[str]]]:
    """Pages and APIs with the query parameters each reads."""
    return [
        (reverse("discoveries"), ["types", "agent_roles", "min_confidence", "keywords", "subscriber"]),
        (reverse("discoveries-api"), ["types", "keywords", "page", "pageSize", "min_confidence"]),
        (reverse("discovery_pages:page"), ["types", "agent_roles", "keywords", "subscriber", "min_confidence"]),
        (reverse("discovery_pages:snapshot"), ["types", "agent_roles", "keywords", "subscriber"]),
        (reverse("event_log:page"), ["stream", "subject"]),
        (reverse("event_log:replay"), ["stream", "subject", "start_sequence", "start_time", "limit"]),
        (reverse("agent_pages:list"), ["state", "q", "after", "before"]),
        (reverse("agent_pages:list_snapshot"), ["state", "q", "after", "before"]),
        (reverse("agent_pages:detail", args=[agent.pk]), ["x"]),
        (reverse("supervision:tree"), ["node", "root", "status", "type"]),
        (reverse("supervision:tree_children"), ["parent", "after"]),
        (reverse("supervision:tree_search"), ["q", "status", "type"]),
        (reverse("supervision:tree_nodes"), ["ids", "agents"]),
        (reverse("admin:supervision_supervisionnode_changelist"), ["q", "status__exact", "node_id__exact", "o", "p"]),
        (reverse("admin:agents_agent_changelist"), ["q", "status__exact", "name", "o", "p"]),
        (reverse("admin:agents_discovery_changelist"), ["q", "discovery_type__exact", "timestamp__gte"]),
        (reverse("admin:mistersmith_deadletter_changelist"), ["q", "reason__exact", "received_at__lt"]),
        (reverse("admin:supervision_supervisionfailure_changelist"), ["q", "failure_reason__exact", "node__id__exact"]),
        (reverse("admin:supervision_supervisionpolicy_delays"), ["backoff_strategy", "backoff_factor"]),
    ]


def test_hostile_query_parameters_never_make_a_server_error(admin_client):
    """Every parameter of every page and API with each hostile value, and with a NUL: 200, 302
    (the admin's own refusal of a bad filter), 400 (a clear error) or 404; JSON stays JSON and
    HTML shows the value escaped."""
    agent = Agent.objects.create(name="q-target", status="Running")
    node = SupervisionNode.objects.create(node_id="q-node", node_type="RootSupervisor")
    for url, params in get_urls(agent, node):
        for param in params:
            for value in [*HOSTILE_QUERIES, NUL]:
                response = admin_client.get(url, {param: value}, headers={"accept": "text/html"})
                assert response.status_code in (200, 302, 400, 404), (url, param, value[:40], response.status_code)
                body = response.content.decode()
                if response["Content-Type"].startswith("application/json"):
                    json.loads(body)
                else:
                    assert_escaped(body, value)
                if value == NUL:
                    assert response.status_code == 400 and "NUL" in body, (url, param)


def test_a_nul_in_the_query_is_a_clear_400_as_json_for_api_clients(admin_client):
    response = admin_client.get(reverse("discoveries"), {"keywords": NUL})
    assert response.status_code == 400
    assert "NUL character" in response.json()["error"]
    response = admin_client.get(reverse("admin:supervision_supervisionnode_changelist"), {"status__exact": NUL})
    assert response.status_code == 400 and "NUL character" in response.content.decode()


def test_the_discoveries_api_bounds_its_page(admin_client):
    for page in ("9" * 30, "\u00b2", "0", "-1", "1.5"):
        response = admin_client.get(reverse("discoveries-api"), {"page": page})
        assert response.status_code == 400
        assert response.json()["error"].startswith("page must be a whole number from 1")


def test_event_log_times_out_of_range_are_a_400(admin_client):
    for when in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        response = admin_client.get(reverse("event_log:replay"), {"stream": "AGENT_EVENTS", "start_time": when})
        assert response.status_code == 400
        assert "is not a time like" in response.json()["error"]


def test_an_agents_list_cursor_holding_nul_is_a_400(admin_client):
    import base64

    cursor = base64.urlsafe_b64encode(json.dumps(["a\x00", str(uuid.uuid4())]).encode()).decode().rstrip("=")
    deep = base64.urlsafe_b64encode(b"[" * 100_000).decode()
    for value in (cursor, deep):
        response = admin_client.get(reverse("agent_pages:list_snapshot"), {"after": value})
        assert response.status_code == 400
        assert "cursor is not valid" in response.json()["error"]


def test_the_agent_command_endpoint_refuses_hostile_input_clearly(admin_client):
    agent = Agent.objects.create(name="cmd-target", status="Running")
    url = reverse("agent_pages:command", args=[agent.pk])
    cases = [
        {"command": SCRIPT},
        {"command": NUL},
        {"command": "x" * 100_000},
        {"command": "stop", "timeout": "9" * 5000},
        {"command": "stop", "timeout": "\uff11"},
        {"command": "stop", "timeout": "-1"},
        {"command": "stop", "graceful": NUL},
        {"command": "stop", "graceful": SQL},
        {"command": "pause", "timeout": "5"},
    ]
    for data in cases:
        response = admin_client.post(url, data)
        assert response.status_code == 400, data
        error = response.json()["error"]
        assert error and "limit" not in error and "int()" not in error, error  # ours, not Python's
    assert not AgentCommandRecord.objects.filter(agent_id=agent.pk).exists()  # refused before anything was sent


def test_a_restart_reason_holding_nul_or_markup_is_stored_safely(admin_client):
    node = SupervisionNode.objects.create(node_id=f"r-{uuid.uuid4().hex[:6]}", node_type="RootSupervisor")
    url = reverse("supervision:restart", args=[node.pk])
    plan = admin_client.get(url).context["plan"]
    response = admin_client.post(url, {"reason": f"{SCRIPT}\x00{SQL}", "fingerprint": plan.fingerprint})
    assert response.status_code in (200, 302, 409)
    restart = SupervisionRestart.objects.filter(node=node).first()
    if restart is not None:
        assert restart.reason == f"{SCRIPT}{SQL}"
        page = admin_client.get(reverse("admin:supervision_supervisionrestart_change", args=[restart.pk]))
        assert page.status_code == 200
        assert_escaped(page.content.decode(), SCRIPT)


def test_hostile_discoveries_are_served_as_json_and_escaped_in_the_admin(admin_client):
    Discovery.objects.create(
        agent_id=IMG[:100],
        agent_role=SCRIPT,
        discovery_type="Insight",
        content=f"{SCRIPT} {UNICODE} {SQL}",
        confidence=0.5,
        timestamp="2026-11-26T00:00:00Z",
        related_to=IMG,
    )
    data = admin_client.get(reverse("discoveries"), {"keywords": "script"}).json()
    assert data[0]["content"] == f"{SCRIPT} {UNICODE} {SQL}"  # stored exactly, returned exactly
    page = admin_client.get(reverse("admin:agents_discovery_changelist"))
    assert page.status_code == 200
    assert_escaped(page.content.decode(), SCRIPT)
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page.content.decode()
