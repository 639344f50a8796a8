"""Serve the cockpit in one process: web (uvicorn), Celery worker and beat, and a demo fleet.

    python manage.py serve_embedded --host 127.0.0.1 --port 8000 --demo

This is the embedded run mode behind `make run`: SQLite, the in-process channel layer and Celery
on the in-memory broker, so nothing else has to be installed or started. With --demo it also
creates a "demo" project with a fresh ingest key and runs a simulated agent fleet against the
server. Ctrl-C (or SIGTERM) stops the fleet, Celery and the server, and exits 0.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from cockpit import roles
from cockpit.embedded import start_embedded_celery
from incidents.demo import seed_demo_incidents

logger = logging.getLogger(__name__)

DEMO_USERNAME = "demo"
DEMO_PROJECT = "demo"
DEMO_KEY_LABEL = "demo fleet"
LOGIN_FILE = "demo-login.txt"


def data_dir() -> Path:
    return Path(getattr(settings, "DATA_DIR", settings.BASE_DIR / "var"))


def ensure_demo_login(directory: Path) -> tuple[str, str]:
    """The demo user, an admin, and its password, generated once and kept in a 0600 file.

    The file is the source of truth: if the user's password was changed, it is set back to the
    file's, so the password printed at start always works.
    """
    path = directory / LOGIN_FILE
    password = ""
    if path.exists():
        password = path.read_text().strip().partition(":")[2]
    if not password:
        password = secrets.token_urlsafe(12)
        directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{DEMO_USERNAME}:{password}\n")
    os.chmod(path, 0o600)

    user, created = User.objects.get_or_create(username=DEMO_USERNAME)
    if created or not user.check_password(password) or not user.is_active:
        user.set_password(password)
        user.is_active = True
        user.save()
    user.groups.add(Group.objects.get_or_create(name=roles.ADMIN)[0])
    return DEMO_USERNAME, password


def issue_demo_key() -> str:
    """A fresh ingest key for the "demo" project; the previous demo fleet's keys are revoked."""
    from traces.models import IngestKey, Project

    project, _ = Project.objects.get_or_create(name=DEMO_PROJECT)
    # The demo fleet's SLOs and budgets, so its scenarios (a latency breach, a budget pause, a
    # bad release) show on the fleet page.
    from cockpit.slo import ensure_demo_objectives

    ensure_demo_objectives(project)
    for old in IngestKey.objects.active().filter(project=project, label=DEMO_KEY_LABEL):
        old.revoke()
    _, plaintext = IngestKey.issue(project, label=DEMO_KEY_LABEL)
    return plaintext


def wait_until_healthy(base_url: str, stop: threading.Event, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:  # noqa: S310
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        stop.wait(0.2)
    return False


def banner(lines: list[str]) -> str:
    width = max(len(line) for line in lines) + 4
    rule = "+" + "-" * width + "+"
    return "\n".join([rule, *(f"|  {line.ljust(width - 4)}  |" for line in lines), rule])


class Command(BaseCommand):
    help = "Serve the cockpit with Celery inside the process and, with --demo, a demo fleet."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--demo", action="store_true", help="Run the demo agent fleet too.")
        parser.add_argument(
            "--rate", type=float, default=1.0, help="Demo fleet runs per second (default 1)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Demo fleet random seed.")
        parser.add_argument("--access-log", action="store_true", help="Log every request.")
        parser.add_argument(
            "--no-migrate", action="store_true", help="Do not apply pending migrations first."
        )

    def handle(self, *args, host, port, demo, rate, seed, access_log, no_migrate, **options):
        if rate <= 0:
            raise CommandError("--rate must be above 0")
        self.stop = threading.Event()
        self.serving = False
        # Installed before uvicorn's own handlers, so they are what uvicorn restores — and
        # re-raises the signal into — once it has shut down: then they only note the request.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

        celery = None
        helper = None
        try:
            if not no_migrate:
                call_command("migrate", interactive=False, verbosity=0)
            username, password = ensure_demo_login(data_dir())
            key = issue_demo_key() if demo else None
            if settings.EMBEDDED:
                celery = start_embedded_celery()
            else:
                logger.warning(
                    "REDIS_URL is set: run `celery -A cockpit worker` and `celery -A cockpit beat`"
                    " as their own processes; only the web app is served here."
                )
            server = self._server(host, port, access_log)
            base_url = f"http://{self._local_host(host)}:{port}"
            helper = threading.Thread(
                target=self._when_ready,
                args=(base_url, username, password, key, rate, seed),
                name="serve-embedded-ready",
                daemon=True,
            )
            helper.start()
            self.serving = True
            server.run()
        except KeyboardInterrupt:
            pass  # a signal during start-up: stop what was started
        finally:
            self.stop.set()
            if helper is not None:
                helper.join(10)
            if celery is not None:
                celery.stop()
        self.stdout.write("Agent Cockpit stopped.")

    def _on_signal(self, signum, frame):
        self.stop.set()
        if not self.serving:
            raise KeyboardInterrupt

    def _server(self, host: str, port: int, access_log: bool):
        import uvicorn

        from approvals import waiting
        from cockpit.asgi import application

        stop = self.stop

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame):
                # Stop the demo fleet first, so it does not send into a closing server, and
                # answer the approval long-polls, which would hold the shutdown open.
                stop.set()
                waiting.release_all()
                super().handle_exit(sig, frame)

        config = uvicorn.Config(
            # Static files come from WhiteNoise, which reads the source folders when embedded.
            application,
            host=host,
            port=port,
            lifespan="off",
            log_config=None,  # Django's LOGGING already formats uvicorn's loggers.
            access_log=access_log,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        return Server(config)

    @staticmethod
    def _local_host(host: str) -> str:
        if host in ("0.0.0.0", ""):  # noqa: S104 - the address we bound, not one we pick
            return "127.0.0.1"
        if host == "::":
            return "[::1]"
        return f"[{host}]" if ":" in host else host

    def _when_ready(self, base_url, username, password, key, rate, seed):
        """Once /healthz answers: print how to log in, then run the demo fleet until stop."""
        if not wait_until_healthy(base_url, self.stop):
            if not self.stop.is_set():
                logger.error("The server did not answer %s/healthz; no demo fleet.", base_url)
            return
        lines = [
            "Agent Cockpit is running (embedded mode)",
            "",
            f"Open      {base_url}/",
            f"Username  {username}",
            f"Password  {password}",
            "",
        ]
        if key:
            lines.append(f"Demo fleet: simulated agents sending about {rate:g} runs/s")
        lines.append("Ctrl-C stops everything.")
        self.stdout.write("\n" + banner(lines) + "\n")
        self.stdout.flush()
        if key:
            seed_demo_incidents(base_url, key)
            run_demo_fleet(base_url, key, rate=rate, seed=seed, stop=self.stop)


def run_demo_fleet(base_url: str, key: str, *, rate: float, seed, stop: threading.Event) -> None:
    from traces.demo import DemoFleet

    fleet = DemoFleet(base_url, key, seed=seed)
    logger.info("Demo fleet: %d agents sending to %s", len(fleet.profiles), fleet.endpoint)
    try:
        fleet.run(rate=rate, stop=stop)
    finally:
        # The server is going away: drop what is still queued rather than retry into it.
        fleet.close(flush=False)
        logger.info("Demo fleet stopped after %d runs.", fleet.runs_sent)
