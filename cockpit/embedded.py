"""Celery inside the server process, for the embedded run mode.

kombu's in-memory transport lives in one process: a task sent on ``memory://`` is seen only by a
worker in the same process. So in embedded mode the web server, one worker and beat share a
process — the worker and beat each in a daemon thread. In production (``REDIS_URL`` set) the
broker is Redis and worker and beat run as their own processes; nothing is started here.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery
from celery.beat import EmbeddedService
from celery.utils.nodenames import anon_nodename
from celery.worker import WorkController
from celery.worker import state as worker_state

logger = logging.getLogger(__name__)

MEMORY_BROKER = "memory://"


def uses_memory_broker(app: Celery) -> bool:
    return (app.conf.broker_url or "").startswith(MEMORY_BROKER)


class _EmbeddedWorker(WorkController):
    """A worker that says when its consumer is ready, so start() can wait for it."""

    def __init__(self, *args, **kwargs):
        self.ready = threading.Event()
        super().__init__(*args, **kwargs)

    def on_consumer_ready(self, consumer):
        self.ready.set()


class EmbeddedCelery:
    """One solo-pool worker and beat in daemon threads of this process.

    with EmbeddedCelery(app):
        ...  # tasks sent on app's memory:// broker run in this process
    """

    def __init__(
        self, app: Celery, *, beat: bool = True, loglevel: str = "WARNING", timeout: float = 10.0
    ):
        if not uses_memory_broker(app):
            raise ValueError(
                f"embedded Celery needs the {MEMORY_BROKER} broker, not {app.conf.broker_url!r}"
            )
        self.app = app
        self.with_beat = beat
        self.loglevel = loglevel
        self.timeout = timeout
        self.worker: _EmbeddedWorker | None = None
        self._worker_thread: threading.Thread | None = None
        self._beat = None

    def start(self) -> EmbeddedCelery:
        self.app.finalize()
        self.app.set_current()
        self.worker = _EmbeddedWorker(
            app=self.app,
            hostname=anon_nodename(hostname=None, prefix="embedded"),
            pool="solo",
            concurrency=1,
            loglevel=self.loglevel,
            # One worker in one process: nobody to exchange heartbeats or gossip with.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=None,
        )
        self._worker_thread = threading.Thread(
            target=self._run_worker, name="celery-worker", daemon=True
        )
        self._worker_thread.start()
        if not self.worker.ready.wait(self.timeout):
            raise RuntimeError(f"the embedded Celery worker did not start in {self.timeout}s")
        if self.with_beat:
            # The in-memory scheduler keeps no schedule file: deadlines live in the database.
            self._beat = EmbeddedService(
                self.app, thread=True, scheduler_cls="celery.beat:Scheduler"
            )
            self._beat.start()
        logger.info(
            "Embedded Celery started: worker%s on %s", " and beat" * bool(self._beat), MEMORY_BROKER
        )
        return self

    def _run_worker(self) -> None:
        # The current app is thread-local; the worker resolves task names against it.
        self.app.set_current()
        self.worker.start()

    def stop(self) -> None:
        """Stop beat and the worker; the worker finishes the task it is running first."""
        if self._worker_thread is not None:
            # The way celery.contrib.testing stops a threaded worker: its consumer loop checks
            # should_terminate between polls (every 2 s at most) and shuts the worker down warm.
            worker_state.should_terminate = 0
        if self._beat is not None:
            self._beat.stop()
            self._beat.join(self.timeout)
            self._beat = None
        if self._worker_thread is not None:
            self._worker_thread.join(self.timeout)
            alive = self._worker_thread.is_alive()
            worker_state.should_terminate = None
            self._worker_thread = None
            if alive:
                logger.warning("The embedded Celery worker did not stop in %ss", self.timeout)
        logger.info("Embedded Celery stopped")

    def __enter__(self) -> EmbeddedCelery:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def start_embedded_celery(app: Celery | None = None, **options) -> EmbeddedCelery | None:
    """Start worker and beat in this process when the broker is in-memory; else do nothing.

    Production mode (a Redis broker) runs `celery worker` and `celery beat` as processes of
    their own, so this returns None there and starts nothing.
    """
    if app is None:
        from cockpit.celery import app
    if not uses_memory_broker(app):
        return None
    return EmbeddedCelery(app, **options).start()
