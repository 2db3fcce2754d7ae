"""The dashboard's charts with history in Chromium: drawn by uPlot, values in the legend on hover,
the window kept in the URL (buttons, back, reload), and an unknown window said in the panel."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from playwright.sync_api import expect

from mistersmith.console.dashboard import history
from supervision.models import SupervisionFailure, SupervisionNode, SupervisionRestart
from tests.e2e.conftest import docs_screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

FIGURES = ("history-failures-type", "history-failures-reason", "history-restarts")


@pytest.fixture
def known_point(transactional_db) -> int:
    """Three crashes and two succeeded restarts three hours ago: the 24 h window's bucket start
    (epoch seconds) that holds them."""
    window = history.WINDOWS["24h"]
    start, _ = history.bounds(window)
    at = start + dt.timedelta(hours=21, minutes=2)  # three hours before the window's end
    node = SupervisionNode.objects.create(node_id="chart-e2e", node_type="Service", node_type_detail="db")
    for n in range(3):
        SupervisionFailure.objects.create(node=node, failure_reason="Crash", failure_detail=f"c{n}", occurred_at=at)
    for attempt in (1, 2):
        SupervisionRestart.objects.create(
            node=node,
            restart_attempt_number=attempt,
            restart_delay_ms=0,
            started_at=at,
            completed_at=at + dt.timedelta(seconds=1),
            success=True,
        )
    return int(at.timestamp()) // 900 * 900


@pytest.fixture
def charts_page(live_page):
    errors: list[str] = []
    live_page.on("pageerror", lambda error: errors.append(str(error)))
    yield live_page
    assert errors == []


def open_dashboard(page, query: str = "") -> None:
    page.goto(f"{page.server.url}/admin/live/{query}")
    expect(page.locator("#panel-history")).to_have_attribute("data-ready", "true")


def hover_bucket(page, figure: str, bucket: int) -> None:
    """Move the mouse over ``bucket``'s x position in ``figure``'s chart (uPlot's own scale)."""
    page.locator(f"#{figure} .u-over").scroll_into_view_if_needed()
    x, y = page.evaluate(
        """([figure, bucket]) => {
          const u = window.misterSmithCharts.charts[figure];
          const box = u.over.getBoundingClientRect();
          return [box.left + u.valToPos(bucket, "x"), box.top + box.height / 2];
        }""",
        [figure, bucket],
    )
    page.mouse.move(x, y + 20)  # arrive from inside the plot, as a hand would: uPlot follows mousemove
    page.mouse.move(x, y, steps=4)


def legend_value(page, figure: str, series: str):
    row = page.locator(f"#{figure} .u-legend tr.u-series").filter(has=page.get_by_text(series, exact=True))
    return row.locator(".u-value")


def test_the_charts_are_drawn_with_values_on_hover(known_point, charts_page):
    page = charts_page
    open_dashboard(page)
    expect(page.locator("#panel-history")).to_have_attribute("data-window", "24h")
    expect(page.locator(".history-windows [aria-current]")).to_have_text("24 hours")
    for figure in FIGURES:
        expect(page.locator(f"#{figure} .uplot canvas")).to_have_count(1)
        expect(page.locator(f"#{figure} .u-axis")).to_have_count(2)
    expect(page.locator("#history-failures-reason [data-total]")).to_have_text("3 in 24 hours")
    expect(page.locator("#history-restarts [data-total]")).to_have_text("2 in 24 hours")
    expect(page.locator("#history-failures-reason [data-chart]")).to_have_attribute(
        "aria-label", "Failures by error type over 24 hours: 3 in total"
    )
    # The axes are drawn on the canvas: their labels are read from uPlot (the ticks it drew).
    ticks = page.evaluate("window.misterSmithCharts.charts['history-failures-type'].axes.map((a) => a._values)")
    assert ticks[0] and all(re.fullmatch(r"\d{2}:\d{2}(\n\d{2}-\d{2})?", label) for label in ticks[0]), ticks[0]
    assert re.fullmatch(r"\d{2}:\d{2}\n\d{2}-\d{2}", ticks[0][0]), ticks[0]  # the first tick has its date
    assert "0" in [str(label) for label in ticks[1]], ticks[1]

    hover_bucket(page, "history-failures-reason", known_point)
    expect(legend_value(page, "history-failures-reason", "Crash")).to_have_text("3")
    expect(legend_value(page, "history-failures-reason", "HeartbeatTimeout")).to_have_text("0")
    when = dt.datetime.fromtimestamp(known_point, tz=dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    expect(legend_value(page, "history-failures-reason", "Time")).to_have_text(when)
    hover_bucket(page, "history-failures-type", known_point)
    expect(legend_value(page, "history-failures-type", "Service")).to_have_text("3")
    expect(legend_value(page, "history-failures-type", "Worker")).to_have_text("0")
    hover_bucket(page, "history-restarts", known_point)
    expect(legend_value(page, "history-restarts", "succeeded")).to_have_text("2")
    expect(legend_value(page, "history-restarts", "timed out")).to_have_text("0")
    docs_screenshot(page.locator("#panel-history"), "dashboard-charts")


def test_the_window_is_kept_in_the_url(known_point, charts_page):
    page = charts_page
    open_dashboard(page)
    loads = page.evaluate("window.misterSmithCharts.loads")
    page.locator(".history-windows a", has_text="6 hours").click()
    expect(page).to_have_url(re.compile(r"/admin/live/\?window=6h$"))
    expect(page.locator("#panel-history")).to_have_attribute("data-window", "6h")
    assert page.evaluate("window.misterSmithCharts.loads") == loads + 1  # re-read, not a page load
    assert page.evaluate("window.misterSmithCharts.data.buckets.length") == 72
    expect(page.locator(".history-windows [aria-current]")).to_have_text("6 hours")
    # The crashes three hours ago are in the 6 h window too.
    expect(page.locator("#history-failures-reason [data-total]")).to_have_text("3 in 6 hours")

    page.locator(".history-windows a", has_text="1 hour").click()
    expect(page).to_have_url(re.compile(r"\?window=1h$"))
    expect(page.locator("#history-failures-reason [data-total]")).to_have_text("0 in 1 hour")

    page.go_back()
    expect(page).to_have_url(re.compile(r"\?window=6h$"))
    expect(page.locator("#panel-history")).to_have_attribute("data-window", "6h")

    page.reload()
    expect(page.locator("#panel-history")).to_have_attribute("data-window", "6h")
    expect(page.locator(".history-windows [aria-current]")).to_have_text("6 hours")
    page.locator(".history-windows a", has_text="7 days").click()
    expect(page.locator("#panel-history")).to_have_attribute("data-window", "7d")
    assert page.evaluate("window.misterSmithCharts.data.buckets.length") == 168


def test_an_unknown_window_is_said_in_the_panel(charts_page):
    page = charts_page
    open_dashboard(page, "?window=2h")
    expect(page.locator("#panel-history [data-error]")).to_contain_text("Unknown window '2h'; choose one of")
    page.locator(".history-windows a", has_text="1 hour").click()
    expect(page.locator("#panel-history [data-error]")).to_be_hidden()
    expect(page.locator("#history-restarts .uplot canvas")).to_have_count(1)


def test_the_axes_follow_the_theme(charts_page):
    page = charts_page
    stroke = """() => {
      const u = window.misterSmithCharts.charts["history-restarts"];
      const axis = u.axes[0].stroke;
      return [typeof axis === "function" ? axis(u, 0) : axis,
              getComputedStyle(document.documentElement).getPropertyValue("--body-fg").trim()];
    }"""
    page.emulate_media(color_scheme="dark")
    open_dashboard(page)
    expect(page.locator("#history-restarts .uplot canvas")).to_have_count(1)
    dark, dark_fg = page.evaluate(stroke)
    assert dark == dark_fg
    page.emulate_media(color_scheme="light")  # the system's theme changes: the charts are drawn again
    page.wait_for_function(
        "() => window.misterSmithCharts.charts['history-restarts'].axes[0].stroke("
        "window.misterSmithCharts.charts['history-restarts'], 0) !== " + repr(dark)
    )
    light, light_fg = page.evaluate(stroke)
    assert light == light_fg and light != dark
