"""Simulator as an app: only so Django finds its management commands (no models)."""

from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    name = "mistersmith.simulator"
    label = "simulator"
