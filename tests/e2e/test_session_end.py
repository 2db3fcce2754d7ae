"""Issue 12, item 1 in Chromium: a live page whose session logs out (in another tab of the same
browser) goes offline at once, says why, and does not keep reconnecting to be refused."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_logging_out_in_another_tab_takes_the_live_page_offline(live_page):
    page = live_page
    page.goto(f"{page.server.url}/admin/live/")
    badge = page.locator("#live-badge")
    expect(badge).to_have_attribute("data-state", "live")

    other_tab = page.context.new_page()
    other_tab.goto(f"{page.server.url}/admin/")
    other_tab.locator("#logout-form button[type=submit]").click()
    other_tab.wait_for_url("**/admin/logout/")

    expect(badge).to_have_attribute("data-state", "offline")
    expect(badge).to_have_attribute("title", "You logged out.")
    page.wait_for_function("window.misterSmithLive.stopped === true && window.misterSmithLive.socket === null")
