from django.apps import AppConfig


class MisterSmithConfig(AppConfig):
    name = "mistersmith"
    verbose_name = "MisterSmith console"
