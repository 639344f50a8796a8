"""Embedded mode: Celery inside the process, and `serve_embedded` bringing the whole cockpit up.

The test process itself runs in production mode (REDIS_URL is set), so the in-process Celery
tests use an app of their own on memory://, and serve_embedded runs in a subprocess without
DATABASE_URL and REDIS_URL, on a free port and a temporary data dir (safe in parallel).
"""

import http.cookiejar
import os
import re
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from celery import Celery

from cockpit.embedded import EmbeddedCelery, start_embedded_celery

BASE_DIR = Path(__file__).resolve().parents[2]


def memory_app() -> tuple[Celery, threading.Event, list]:
    app = Celery("embedded-test", broker="memory://", set_as_current=False)
    app.conf.task_ignore_result = True
    ran = threading.Event()
    calls = []

    @app.task(name="embedded_test.record", shared=False)
    def record(value):
        calls.append((value, threading.current_thread().name))
        ran.set()

    app.conf.beat_schedule = {
        "every-half-second": {"task": "embedded_test.record", "schedule": 0.5, "args": ("beat",)}
    }
    return app, ran, calls


def test_a_task_sent_on_the_memory_broker_runs_in_a_worker_thread_of_this_process():
    app, ran, calls = memory_app()

    with EmbeddedCelery(app, beat=False):
        app.send_task("embedded_test.record", args=("hello",))
        assert ran.wait(10)

    assert calls[0] == ("hello", "celery-worker")


def test_embedded_beat_sends_scheduled_tasks_to_the_embedded_worker():
    app, _, calls = memory_app()

    with EmbeddedCelery(app):
        deadline = time.monotonic() + 10
        while not any(value == "beat" for value, _ in calls) and time.monotonic() < deadline:
            time.sleep(0.1)

    assert ("beat", "celery-worker") in calls


def test_stopping_ends_the_worker_and_beat_threads():
    app, _, _ = memory_app()
    before = set(threading.enumerate())

    with EmbeddedCelery(app):
        pass

    time.sleep(0.2)
    assert set(threading.enumerate()) <= before


def test_with_a_redis_broker_nothing_is_started_in_process():
    app = Celery("production-test", broker="redis://127.0.0.1:6379/8", set_as_current=False)
    before = threading.active_count()

    assert start_embedded_celery(app) is None
    assert threading.active_count() == before
    with pytest.raises(ValueError, match="memory://"):
        EmbeddedCelery(app)


# --- serve_embedded, for real ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str, opener=None) -> tuple[int, bytes]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def wait_for(predicate, timeout: float, what: str, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if result := predicate():
                return result
        except (OSError, sqlite3.Error):
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; server log:\n{log.read_text()[-4000:]}")


def stored_runs(database: Path) -> int:
    with sqlite3.connect(database, timeout=5) as connection:
        return connection.execute("SELECT count(*) FROM traces_run").fetchone()[0]


def log_in(base: str, username: str, password: str) -> tuple[int, str]:
    """Log in through the real form; return the status and path the browser ends up on."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    _, page = get(f"{base}/login/", opener)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1).decode()
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token}
    ).encode()
    request = urllib.request.Request(f"{base}/login/", data=form, headers={"Referer": base})
    with opener.open(request, timeout=10) as response:
        return response.status, urllib.parse.urlsplit(response.url).path


@pytest.fixture
def serve_embedded(tmp_path):
    """Start `manage.py serve_embedded --demo` in its own session; yield (process, base, log)."""
    port = free_port()
    log = tmp_path / "server.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("COCKPIT_", "DATABASE_", "REDIS_"))
    }
    env.update(COCKPIT_DATA_DIR=str(tmp_path / "data"), PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve_embedded", "--port", str(port), "--demo"]
            + ["--rate", "4", "--seed", "1"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, f"http://127.0.0.1:{port}", log
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_serve_embedded_serves_the_cockpit_with_a_demo_fleet_and_stops_cleanly_on_ctrl_c(
    serve_embedded, tmp_path
):
    process, base, log = serve_embedded
    data = tmp_path / "data"

    wait_for(lambda: get(f"{base}/healthz")[0] == 200, 60, "/healthz", log)
    assert get(f"{base}/login/")[0] == 200
    status, css = get(f"{base}/static/cockpit/cockpit.css")
    assert status == 200 and css

    # The login box is printed, and its password is the one kept in the 0600 file.
    output = wait_for(lambda: "Password" in log.read_text() and log.read_text(), 30, "box", log)
    password = re.search(r"Password\s+(\S+)", output).group(1)
    login_file = data / "demo-login.txt"
    assert login_file.read_text().strip() == f"demo:{password}"
    assert stat.S_IMODE(login_file.stat().st_mode) == 0o600
    assert log_in(base, "demo", password) == (200, "/")
    # The project key the fleet uses is never printed.
    assert "ck_" not in output

    # The demo fleet's runs are ingested, stored in the embedded SQLite database.
    wait_for(lambda: stored_runs(data / "cockpit.sqlite3") > 0, 60, "a stored demo run", log)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=15) == 0, log.read_text()[-4000:]
    assert "Agent Cockpit stopped." in log.read_text()
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)  # nothing of its session is left running


def test_serve_embedded_stops_on_sigterm_too(serve_embedded):
    process, base, log = serve_embedded
    wait_for(lambda: get(f"{base}/healthz")[0] == 200, 60, "/healthz", log)

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=15) == 0, log.read_text()[-4000:]
    with pytest.raises(ProcessLookupError):
        os.killpg(process.pid, 0)
