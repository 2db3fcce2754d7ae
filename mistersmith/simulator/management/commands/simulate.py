"""manage.py simulate: a stand-in MisterSmith runtime against the console's PostgreSQL and NATS.

For demos, tests and benchmarks when no Rust runtime is at hand (see mistersmith/simulator.py).
Ctrl-C or SIGTERM stops it cleanly: restarts still waiting out their delay are handed back to NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import psycopg
from django.core.management.base import BaseCommand, CommandError, CommandParser
from nats.errors import Error as NatsError

from mistersmith.simulator.thread import DEFAULT_CONSUMER, SimulatorOptions, SimulatorStats, run_simulator


class Command(BaseCommand):
    help = (
        "Play a MisterSmith runtime: command and system answers, supervision rows, failures healed by policy,"
        " restart answers; --rich-events adds the events the runtime never publishes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=20.0, help="events per second at most (default 20)")
        parser.add_argument(
            "--failure-rate", type=float, default=0.05, help="failures injected per second (default 0.05)"
        )
        parser.add_argument(
            "--restart-failure-ratio", type=float, default=0.1, help="share of restarts that fail, 0..1 (default 0.1)"
        )
        parser.add_argument("--nodes", type=int, default=30, help="tree size created in an empty database")
        parser.add_argument("--sample", type=int, default=500, help="existing agent nodes animated, at most")
        parser.add_argument("--seed", type=int, default=None, help="seed for repeatable randomness")
        parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 runs until stopped")
        parser.add_argument("--no-restarts", action="store_true", help="do not answer RestartNode commands")
        parser.add_argument("--no-agent-commands", action="store_true", help="do not answer commands on agent.command")
        parser.add_argument("--no-events", action="store_true", help="no background discoveries (nor rich chatter)")
        parser.add_argument(
            "--rich-events",
            action="store_true",
            help="also what the real runtime never publishes: StateChanged, Output, Error, Heartbeat, supervision.*"
            " events, system.health reports, long texts (default: only the runtime's own messages)",
        )
        parser.add_argument(
            "--heartbeat-interval", type=float, default=2.0, help="seconds between instance heartbeats (default 2)"
        )
        parser.add_argument("--consumer-name", default=DEFAULT_CONSUMER, help="durable consumer on system.control")

    def handle(self, *args: Any, **options: Any) -> None:
        simulator_options = SimulatorOptions(
            rate=options["rate"],
            failure_rate=options["failure_rate"],
            restart_failure_ratio=options["restart_failure_ratio"],
            nodes=options["nodes"],
            sample=options["sample"],
            seed=options["seed"],
            duration=options["duration"],
            restarts=not options["no_restarts"],
            commands=not options["no_agent_commands"],
            events=not options["no_events"],
            rich_events=options["rich_events"],
            heartbeat_interval=options["heartbeat_interval"],
            consumer_name=options["consumer_name"],
        )
        try:
            simulator_options.validate()
        except ValueError as error:
            raise CommandError(str(error)) from error
        self.stdout.write("Simulating a MisterSmith runtime; Ctrl-C stops it.")
        try:
            stats = asyncio.run(_run_until_signalled(simulator_options))
        except (OSError, psycopg.Error, NatsError) as error:
            raise CommandError(f"The simulator stopped: {error}") from error
        self.stdout.write(self.style.SUCCESS(f"Simulated: {stats.summary()}."))


async def _run_until_signalled(options: SimulatorOptions) -> SimulatorStats:
    """SIGINT and SIGTERM set the stop event, so the simulator ends its work instead of dying mid-write."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    try:
        return await run_simulator(options, stop)
    finally:
        for signum in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signum)
