"""Issue 12, item 6: no database connection is held while a request waits on NATS.

Through a real server (uvicorn in a process of its own) whose pool has two connections: four
graceful Stops wait for a runtime that takes them and does not answer yet. Each did a query before
sending, so each held a connection across its wait before; the fifth request then waited out the
pool and got the 503 page. Now the admin still answers, and the Stops end when the runtime answers.
"""

from __future__ import annotations

import http.cookiejar
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from agents.models import Agent, AgentCommandRecord
from mistersmith.jetstream.client import SyncNats
from tests.agents.test_commands import reply_to
from tests.conftest import wait_until
from tests.services import Browser, ConsoleProcess, PrivateNats

pytestmark = pytest.mark.django_db(transaction=True)
WAITING = 4


class HeldRuntime:
    """Takes every agent.command and answers none until ``answer_all()``."""

    def __init__(self, url: str) -> None:
        self.nats = SyncNats(url, create_streams=False)
        self.held: list = []
        self._lock = threading.Lock()

        async def hold(message) -> None:
            with self._lock:
                self.held.append(message)

        client = self.nats.client()
        self.nats.run(client.subscribe("agent.command", cb=hold))
        self.nats.run(client.flush())

    def count(self) -> int:
        with self._lock:
            return len(self.held)

    def answer_all(self) -> None:
        with self._lock:
            held, self.held = self.held, []
        for message in held:
            request = json.loads(message.data)
            agent_id = request["payload"]["Stop"]["agent_id"]
            answer = reply_to(request, {"Success": {"message": "stopped", "data": {"agent_id": agent_id}}})
            self.nats.run(self.nats.client().publish(message.reply, answer))


def post_form(browser: Browser, jar: http.cookiejar.CookieJar, path: str, fields: dict[str, str]) -> int:
    token = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    request = urllib.request.Request(
        f"{browser.base_url}{path}",
        data=urllib.parse.urlencode(fields).encode(),
        headers={"X-CSRFToken": token, "Referer": f"{browser.base_url}/admin/"},
    )
    try:
        with browser.opener.open(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_requests_waiting_for_the_runtime_leave_the_pool_to_other_pages(tmp_path):
    nats = PrivateNats(tmp_path).start()
    runtime = HeldRuntime(nats.url)
    agents = [Agent.objects.create(name=f"pool-{index}", status="Running") for index in range(WAITING)]
    name = f"pool-{uuid.uuid4().hex[:8]}"
    user = get_user_model().objects.create_user(name, password="pool-pass-123", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="agents", codename__in=["view_agent", "command_agent"])
    )
    console = ConsoleProcess(
        NATS_URL=nats.url, MISTERSMITH_BRIDGE_IN_PROCESS="0", DB_POOL_MIN="1", DB_POOL_MAX="2", DB_POOL_TIMEOUT="3"
    ).start()
    try:
        jar = http.cookiejar.CookieJar()
        browser = Browser(console.url)
        browser.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.log_in(name, "pool-pass-123")
        statuses: list[int] = []

        def stop(agent: Agent) -> None:
            path = f"/admin/agents/live/{agent.pk}/command/"
            statuses.append(post_form(browser, jar, path, {"command": "stop", "timeout": "30"}))

        threads = [threading.Thread(target=stop, args=(agent,)) for agent in agents]
        for thread in threads:
            thread.start()
        wait_until(lambda: runtime.count() == WAITING or statuses, timeout=30, what="the Stops to reach the runtime")
        assert runtime.count() == WAITING, f"a Stop ended before the runtime had them all: {statuses}"

        status, page = browser.get("/admin/agents/agent/", timeout=20)
        assert status == 200, f"the agents admin answered {status} while Stops waited:\n{page[:500]}"

        runtime.answer_all()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * WAITING
        assert (
            AgentCommandRecord.objects.filter(agent_id__in=[agent.pk for agent in agents], outcome="ok").count()
            == WAITING
        )
    finally:
        console.stop()
        runtime.nats.close()
        nats.stop()
