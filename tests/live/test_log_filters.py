"""channels-redis' "over capacity in group" line, once a minute per group instead of once per frame;
and the settings of issue 16 (stop timeout, pings, group expiry) refuse bad values by name."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings

from mistersmith.live.log_filters import OncePerInterval
from tests.services import BASE_DIR


def over_capacity(group: str) -> logging.LogRecord:
    return logging.LogRecord(
        "channels_redis.core",
        logging.INFO,
        __file__,
        1,
        "%s of %s channels over capacity in group %s",
        (1, 33, group),
        None,
    )


def test_one_line_per_group_per_interval_with_the_count_left_out():
    now = [1000.0]
    keep = OncePerInterval(seconds=60, clock=lambda: now[0])
    passed = [record for record in (over_capacity("live.events") for _ in range(500)) if keep.filter(record)]
    assert len(passed) == 1
    assert keep.filter(over_capacity("live.agents"))  # another group has its own minute
    now[0] += 59
    assert not keep.filter(over_capacity("live.events"))
    now[0] += 1
    record = over_capacity("live.events")
    assert keep.filter(record)
    assert record.getMessage() == (
        "1 of 33 channels over capacity in group live.events (500 more like it in the last 60 s not logged)"
    )


def test_the_settings_put_the_filter_on_channels_redis():
    logger_config = settings.LOGGING["loggers"]["channels_redis"]
    filter_config = settings.LOGGING["filters"][logger_config["filters"][0]]
    assert filter_config["()"] == "mistersmith.live.log_filters.OncePerInterval"
    assert any(isinstance(f, OncePerInterval) for f in logging.getLogger("channels_redis").filters)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MISTERSMITH_STOP_TIMEOUT", "abc"),
        ("MISTERSMITH_STOP_TIMEOUT", "1"),
        ("WS_PING_TIMEOUT", "0"),
        ("LIVE_GROUP_EXPIRY_SECONDS", "nan"),
    ],
)
def test_a_bad_stop_ping_or_group_setting_is_refused_by_name(variable, value):
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "mistersmith.settings", variable: value},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and f"{variable} must be" in result.stderr


def test_a_group_refresh_not_within_the_expiry_is_refused():
    env = {"LIVE_GROUP_EXPIRY_SECONDS": "10", "LIVE_GROUP_REFRESH_SECONDS": "10"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "mistersmith.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert "LIVE_GROUP_REFRESH_SECONDS must be below LIVE_GROUP_EXPIRY_SECONDS" in result.stderr
