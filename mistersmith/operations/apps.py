"""Operations as an app: only so Django finds its management commands (no models)."""

from django.apps import AppConfig


class OperationsConfig(AppConfig):
    name = "mistersmith.operations"
    label = "operations"
