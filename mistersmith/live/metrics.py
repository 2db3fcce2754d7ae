"""The live path's own Prometheus gauges: updated as things happen rather than read at scrape time
(mistersmith/operations/metrics/figures.py reads the rest), because sockets are held by this
process only. They join the default registry when imported (the socket consumer imports them)."""

from __future__ import annotations

from prometheus_client import Gauge

# The one metric updated as things happen rather than read at scrape time: sockets are held by
# this process only. "livesum" sums the live processes when prometheus_client runs multiprocess.
LIVE_SOCKETS = Gauge(
    "mistersmith_live_sockets_open",
    "Live-page WebSockets open in this process.",
    multiprocess_mode="livesum",
)
# A socket's consumer task, from the handshake to the task's very end (its groups left, its
# channel-layer receive over): a closed socket whose task never ends shows here and not above.
LIVE_CONSUMERS = Gauge(
    "mistersmith_live_consumers_running",
    "Live-page consumer tasks running in this process (ends after the socket's own cleanup).",
    multiprocess_mode="livesum",
)
