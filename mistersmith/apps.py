from django.apps import AppConfig


class MisterSmithConfig(AppConfig):
    name = "mistersmith"
    verbose_name = "MisterSmith console"

    def ready(self) -> None:
        from mistersmith import host_checks, login_throttle  # noqa: F401  (register the deploy checks)
        from mistersmith.socket_session import connect_signals

        connect_signals()  # logouts and user changes reach the open live sockets
