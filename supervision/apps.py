from django.apps import AppConfig


class SupervisionConfig(AppConfig):
    verbose_name = "Supervision"
    name = "supervision"
