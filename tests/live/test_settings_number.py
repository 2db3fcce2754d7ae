"""number_setting: the Django setting first, then the environment, then the default; bounded below;
anything but a finite number logged and replaced by the default."""

from __future__ import annotations

import logging

import pytest

from mistersmith.jetstream.settings_number import number_setting

NAME = "MISTERSMITH_TEST_NUMBER"


def read() -> float:
    return number_setting(NAME, default=30.0, minimum=5.0)


def test_the_setting_wins_over_the_environment(settings, monkeypatch):
    monkeypatch.setenv(NAME, "60")
    assert read() == 60
    settings.MISTERSMITH_TEST_NUMBER = 120
    assert read() == 120


def test_nothing_set_is_the_default(monkeypatch):
    monkeypatch.delenv(NAME, raising=False)
    assert read() == 30


def test_a_value_below_the_minimum_is_raised_to_it(settings):
    settings.MISTERSMITH_TEST_NUMBER = "1.5"
    assert read() == 5


@pytest.mark.parametrize("value", ["not a number", "", "nan", "inf", "-inf", [], {"a": 1}])
def test_what_is_not_a_finite_number_is_logged_and_gives_the_default(settings, caplog, value):
    settings.MISTERSMITH_TEST_NUMBER = value
    with caplog.at_level(logging.WARNING, logger="mistersmith.jetstream.settings_number"):
        assert read() == 30
    assert f"{NAME}={value!r} is not a finite number" in caplog.text
