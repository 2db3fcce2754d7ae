from django.apps import AppConfig


class MisterSmithConfig(AppConfig):
    name = "mistersmith"
    verbose_name = "MisterSmith console"

    def ready(self) -> None:
        from mistersmith import host_checks, login_throttle, socket_session  # noqa: F401  (register the deploy checks)

        socket_session.connect_signals()  # logouts and user changes reach the open live sockets
