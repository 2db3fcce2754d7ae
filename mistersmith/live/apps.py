from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class MisterSmithConfig(AppConfig):
    name = "mistersmith.live"
    label = "mistersmith"  # the tables, permissions and migrations keep it
    verbose_name = "MisterSmith console"

    def ready(self) -> None:
        from mistersmith.live.socket_session import connect_signals
        from mistersmith.web import (
            host_checks,  # noqa: F401  (register the deploy checks)
            login_throttle,  # noqa: F401  (register the deploy checks)
        )

        connect_signals()  # logouts and user changes reach the open live sockets
        # Each app's feeds.py registers its bridge feeds, positions and topic filters (like admin.py).
        autodiscover_modules("feeds")
