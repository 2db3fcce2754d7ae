"""manage.py run: everything `make run` promises, in one process.

Embedded PostgreSQL and NATS (unless DATABASE_URL / NATS_URL are set), migrations, the admin
user, a small demo on the first start of an empty database, the runtime stand-in on a thread of
its own, then the ASGI server with the bridge on its event loop. Ctrl-C stops
the server, and the embedded services stop with the process (mistersmith.embedded).
"""

from __future__ import annotations

import io
import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connection

from mistersmith.jetstream.client import nats_url
from mistersmith.private_files import replace_private_file, tighten
from mistersmith.simulator import demo
from mistersmith.simulator.thread import SimulatorOptions, SimulatorThread
from supervision.models import SupervisionNode

ADMIN_USERNAME = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")


def ensure_admin_user() -> str:
    """Create the admin user once; return how to log in (the password is kept in var/, mode 0600).

    In production (MISTERSMITH_ENV=production) the password is never part of the answer, which
    `run` prints and a log collector would keep: only where to find it.
    """
    password_file = settings.VAR_DIR / "admin_password"
    user_model = get_user_model()
    if user_model.objects.filter(username=ADMIN_USERNAME).exists():
        if password_file.exists():
            tighten(password_file)
            if settings.PRODUCTION:
                return f"{ADMIN_USERNAME} (password in {password_file})"
            return f"{ADMIN_USERNAME} / {password_file.read_text().strip()}"
        return f"{ADMIN_USERNAME} (existing user; password unchanged)"
    given = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    if not given:  # a file left by an earlier database is replaced, never written through
        replace_private_file(password_file, password + "\n")
    user_model.objects.create_superuser(ADMIN_USERNAME, "", password)
    if settings.PRODUCTION:
        where = "DJANGO_SUPERUSER_PASSWORD" if given else str(password_file)
        return f"{ADMIN_USERNAME} (password in {where})"
    return f"{ADMIN_USERNAME} / {password}"


class Command(BaseCommand):
    help = "Start the console: services, migrations, admin user, demo data, ASGI server."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--no-demo", action="store_true", help="do not seed demo data into an empty database")
        parser.add_argument(
            "--no-simulator", action="store_true", help="do not start the runtime stand-in (manage.py simulate)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        from mistersmith.live.server import serve

        nats = nats_url()
        try:
            connection.ensure_connection()
        except DatabaseError as error:
            raise CommandError(f"Cannot reach the database ({connection.settings_dict['NAME']}): {error}") from error
        call_command("migrate", interactive=False, verbosity=0)
        try:
            call_command("ensure_streams", stdout=io.StringIO())
        except CommandError as error:  # the console still runs; the operator decides about --update
            self.stderr.write(self.style.WARNING(str(error)))
        login = ensure_admin_user()
        if (
            not options["no_demo"]
            and not os.environ.get("MISTERSMITH_NO_DEMO")
            and not SupervisionNode.objects.exists()
        ):
            counts = demo.seed()
            self.stdout.write(f"Seeded a demo installation: {counts['nodes']} nodes, {counts['failures']} failures.")
        url = f"http://{options['host']}:{options['port']}/admin/"
        database = settings.DATABASES["default"]
        self.stdout.write(
            self.style.SUCCESS(f"MisterSmith console: {url}\n  login: {login}")
            + f"\n  PostgreSQL: {database['HOST'] or 'localhost'}/{database['NAME']}  NATS: {nats}"
            + "\n  Ctrl-C stops it."
        )
        os.environ["MISTERSMITH_BRIDGE_IN_PROCESS"] = "1"  # the ASGI lifespan runs the bridge (mistersmith.asgi)
        simulator = None
        if not options["no_simulator"] and not os.environ.get("MISTERSMITH_NO_SIMULATOR"):
            simulator = SimulatorThread(SimulatorOptions())
            simulator.start()
            self.stdout.write("  The runtime stand-in is running (--no-simulator turns it off).")
        try:
            # uvicorn with the console's bounded stop: sockets closed with 1001, the bridge stopped,
            # the process gone within MISTERSMITH_STOP_TIMEOUT (mistersmith/live/server.py).
            serve(options["host"], options["port"])
        finally:
            if simulator is not None:
                simulator.stop()
