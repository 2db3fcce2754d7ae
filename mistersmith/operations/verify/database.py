"""Checks of the state the console keeps in PostgreSQL: the pool, agent state, interactive
sessions and the discovery store (the supervision schema is :mod:`.verify_schema`).

Each answers in a constant number of queries whatever the data size.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from functools import partial

from django.db import connection
from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone
from psycopg_pool import PoolTimeout

from mistersmith.operations.verify.matrix import DEGRADED, PROBE_TIMEOUT, Row, judged, listing, plural

ANOMALY_WINDOW = dt.timedelta(hours=1)
PID_REUSE_TOLERANCE = dt.timedelta(seconds=60)  # a process newer than its session by more is another one
SESSIONS_CHECKED = 10_000  # live sessions whose process is looked up (a few µs each); the rest are counted


def probe_database(timeout: float = PROBE_TIMEOUT, *, explain: bool = True) -> float:
    """Milliseconds for a connection and ``SELECT 1``. Raises when the database does not answer
    within ``timeout``: a connection from the pool directly, without Django's own wait of the
    pool's full timeout (10 s), so a report or a readiness probe stays fast with PostgreSQL down.
    ``explain``: on a pool timeout, spend up to ``timeout`` more to say why (see below)."""
    started = time.perf_counter()
    pool = getattr(connection, "pool", None)
    if pool is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    else:
        pool.open()
        try:
            with pool.connection(timeout=timeout) as conn:
                conn.execute("SELECT 1")
        except PoolTimeout as error:
            raise (_connection_error(timeout) if explain else None) or error from error
    return (time.perf_counter() - started) * 1000


def _connection_error(timeout: float) -> Exception | None:
    """Why the pool got no connection: it only says it timed out, so try one connection of our
    own (a wrong database name, a refused password, a host down) and return its error, if any."""
    import psycopg

    params = {**connection.get_connection_params(), "connect_timeout": max(1, int(timeout))}
    try:
        psycopg.connect(**params).close()
    except Exception as error:
        return error
    return None


def pool_rows(probe_ms: float) -> list[Row]:
    """The console's psycopg pool (``get_stats()``): connections below the maximum, no waiting."""
    from mistersmith.console.dashboard.selectors import console_pool_stats

    row = partial(judged, "db_pool", status=DEGRADED)
    rows = [row("database answers", f"SELECT 1 within {PROBE_TIMEOUT:g} s", f"{probe_ms:.0f} ms", bad=False)]
    stats = console_pool_stats()
    if not stats.get("pooled"):
        hint = "Set DATABASES['default']['OPTIONS']['pool'] (settings.DATABASE_POOL) so requests share connections."
        return [*rows, row("pool", "Django's psycopg pool", "pooling is off", bad=True, hint=hint)]
    in_use, maximum, waiting = stats["in_use"], stats["max"], stats["waiting"]
    return [
        *rows,
        row(
            "connections below max",
            f"in use < {maximum}",
            f"{in_use} in use (this check's own included), {stats['size']} open, max {maximum}",
            bad=in_use >= maximum,
            hint="Every connection is taken: raise DB_POOL_MAX, or find what holds them.",
        ),
        row(
            "waiting requests",
            "0",
            str(waiting),
            bad=waiting > 0,
            hint="Requests queue for a connection: the pool is saturated (DB_POOL_MAX).",
        ),
    ]


def agent_rows() -> list[Row]:
    """The agents projection: lifecycle states only, active agents heard from, instance statuses
    the contract knows, and no events refused by the lifecycle lately."""
    from agents.lifecycle import ACTIVE_STATES, TERMINAL_STATES, AgentState
    from agents.models import Agent, AgentAnomaly, AgentInstance, InstanceStatus
    from agents.silence import LAST_HEARD, silent_filter, silent_seconds

    row = partial(judged, "agent_state")
    now = timezone.now()
    threshold = silent_seconds()  # agents/silence.py: the one definition of a silent agent
    active = Q(status__in=ACTIVE_STATES)
    silent = silent_filter(now - dt.timedelta(seconds=threshold))
    # Every known state falls in exactly one part (active, ended, or its own name), so the
    # parts add up to the total: a Paused or Starting agent is counted, not left out.
    between = [state for state in AgentState if state not in ACTIVE_STATES and state not in TERMINAL_STATES]
    counts = Agent.objects.alias(last_heard=LAST_HEARD).aggregate(
        total=Count("id"),
        unknown=Count("id", filter=~Q(status__in=AgentState.values)),
        active=Count("id", filter=active),
        ended=Count("id", filter=Q(status__in=TERMINAL_STATES)),
        silent=Count("id", filter=active & silent),
        **{f"in_{state.value}": Count("id", filter=Q(status=state)) for state in between},
    )
    bad_instances = AgentInstance.objects.exclude(status__in=InstanceStatus.values).count()
    anomalies = AgentAnomaly.objects.filter(recorded_at__gte=now - ANOMALY_WINDOW).count()
    unknown, silent_count, active_count = counts["unknown"], counts["silent"], counts["active"]
    return [
        row(
            "lifecycle states",
            "every agent in one of " + ", ".join(AgentState.values),
            f"{plural(counts['total'], 'agent')}: {', '.join(_state_parts(counts, between))}",
            bad=unknown > 0,
            hint="Rows were written outside the lifecycle: set their status in the admin (Agents).",
        ),
        row(
            "heartbeats",
            f"active agents heard from within {threshold} s",
            f"{silent_count} of {active_count} active silent"
            if silent_count
            else f"{active_count} active, none silent",
            bad=silent_count > 0,
            status=DEGRADED,
            hint="The runtime stopped sending their Heartbeat events, or the bridge is behind (see jetstream).",
        ),
        row(
            "instance statuses",
            "every instance in one of " + ", ".join(InstanceStatus.values),
            f"{bad_instances} unknown" if bad_instances else "all known",
            bad=bad_instances > 0,
            hint="agent_instances rows with a status the contract does not know: correct them in the admin.",
        ),
        row(
            "anomalies",
            "no events refused by the lifecycle in the last hour",
            str(anomalies),
            bad=anomalies > 0,
            status=DEGRADED,
            hint="The runtime sent moves the lifecycle forbids: see Agent anomalies in the admin.",
        ),
    ]


def _state_parts(counts: dict[str, int], between: list) -> list[str]:
    """The parts of the agent count ("6 active", "1 starting", "2 paused", "1 ended", any unknown),
    which add up to the total; a state between active and ended is named when an agent is in it."""
    parts = [f"{counts['active']} active"]
    parts += [
        f"{counts[f'in_{state.value}']} {state.value.lower()}" for state in between if counts[f"in_{state.value}"]
    ]
    parts.append(f"{counts['ended']} ended")
    if counts["unknown"]:
        parts.append(f"{counts['unknown']} in an unknown state")
    return parts


def this_host() -> set[str]:
    """The names a session's host may carry when it is this machine."""
    names = {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", "::1"}
    return {name.lower() for name in names} | {name.split(".")[0].lower() for name in names}


def is_session_process(pid: int, started_at: dt.datetime) -> bool:
    """Whether ``pid`` is a process here that may be the session's: not one started well after
    the session (then the pid was reused by another program)."""
    import psutil

    try:
        created = dt.datetime.fromtimestamp(psutil.Process(pid).create_time(), dt.UTC)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.Error:  # it exists, but is not ours to inspect
        return True
    return created <= started_at + PID_REUSE_TOLERANCE


def session_rows() -> list[Row]:
    """Live interactive sessions and their CLI processes.

    A session names its process by pid only. Its host is taken to be the host of its agent's
    newest instance, or this machine when no instance names one (the single-machine install).
    A session without a pid (the runtime has not reported one yet) or on another host cannot be
    checked from here: it is counted as not checked, never as missing.
    """
    from agents.lifecycle import TERMINAL_STATES
    from agents.models import AgentInstance, InteractiveSession
    from agents.projections import OPEN_SESSION_STATES

    row = partial(judged, "sessions", status=DEGRADED)
    newest = AgentInstance.objects.filter(agent_id=OuterRef("agent_id")).order_by("-started_at")
    open_sessions = InteractiveSession.objects.filter(state__in=OPEN_SESSION_STATES)
    live = list(
        open_sessions.annotate(host=Subquery(newest.values("host_name")[:1])).values_list(
            "pid", "started_at", "host", "agent__status"
        )[:SESSIONS_CHECKED]
    )
    total = open_sessions.count() if len(live) == SESSIONS_CHECKED else len(live)
    here = this_host()
    running, no_pid, elsewhere, of_ended, missing = 0, 0, 0, 0, []
    for pid, started_at, host, agent_status in live:
        of_ended += agent_status in TERMINAL_STATES
        if pid is None:
            no_pid += 1
        elif host and host.lower() not in here:
            elsewhere += 1
        elif is_session_process(pid, started_at):
            running += 1
        else:
            missing.append(str(pid))
    parts = [
        f"{total} live" + (f" (the first {len(live)} checked)" if total > len(live) else ""),
        f"{running} with a process",
    ]
    if missing:
        parts.append(f"{len(missing)} without (pid {listing(missing)})")
    if no_pid:
        parts.append(f"{no_pid} without a pid (not checked)")
    if elsewhere:
        parts.append(f"{elsewhere} on another host (not checked)")
    return [
        row(
            "live sessions have a process",
            "the pid of each live session (Starting, Ready, Processing) is a process on its host",
            ", ".join(parts) if live else "no live sessions",
            bad=bool(missing),
            hint="Their CLI process is gone but the session still says live: end them in the admin "
            "(Interactive sessions), then find out why the runtime did not.",
        ),
        row(
            "sessions of live agents",
            "no live session of a Terminated or Error agent",
            f"{of_ended} of {len(live)} checked" if of_ended else "none",
            bad=of_ended > 0,
            hint="The agent ended but its session did not: end the session in the admin.",
        ),
    ]


def discovery_rows() -> list[Row]:
    """The discovery store answers the runtime's query (an array) and holds at most its capacity."""
    from agents import discoveries

    row = partial(judged, "discovery_store")
    newest = discoveries.search(discoveries.DiscoveryFilter())[:5]
    answer = json.loads(json.dumps([discovery.as_contract() for discovery in newest]))
    stats = discoveries.stats()
    total, capacity = stats["total_discoveries"], discoveries.CAPACITY
    return [
        row(
            "answers",
            "/discoveries returns a JSON array",
            f"an array ({plural(total, 'discovery', 'discoveries')} held)",
            bad=not isinstance(answer, list),
        ),
        row(
            "capacity",
            f"at most {capacity} held, oldest evicted first",
            f"{total} held ({stats['capacity_used']:g}% of {capacity}), {plural(stats['unique_agents'], 'agent')}",
            bad=total > capacity,
            status=DEGRADED,
            hint="More than the store keeps: the next discovery evicts the surplus.",
        ),
    ]
