"""Playwright driving Debian's chromium against pytest-django's live server.

Playwright's sync API runs an event loop in this thread, which trips Django's async-unsafe
check when the test itself touches the database; the test and the server share nothing
async, so the check is switched off for browser tests.
"""

import os
import re
from pathlib import Path

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.conftest import PASSWORD  # noqa: E402

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1366, "height": 768}


def pytest_collection_modifyitems(items):
    # Keep browser tests on one xdist worker (make test runs --dist loadgroup): one browser.
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.xdist_group("browser"))


# Module scope, not session: Playwright's sync API keeps an event loop running in this thread
# while the browser is open, and async_to_sync (channel-layer broadcasts) refuses to run in a
# thread with a running loop. Closing the browser after each module keeps other tests clean.
@pytest.fixture(scope="module")
def browser():
    executable = os.environ.get("COCKPIT_CHROMIUM") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail(f"chromium not found at {executable}; `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, request):
    """A fresh browser context per test; a screenshot of where it ended is kept."""
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def log_in(page, base_url: str, user):
    """Log in through the real login form; returns on the landing page (the fleet, or the
    approval queue for a person who only reviews)."""
    page.goto(f"{base_url}/login/")
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(rf"^{re.escape(base_url)}/(approvals/)?$"))
    return page


@pytest.fixture
def logged_in_page(page, live_server, people):
    """logged_in_page("viewer") → the page, logged in through the real login form."""
    return lambda name: log_in(page, live_server.url, people[name])


class AsgiLiveServer:
    """The whole ASGI app (HTTP and websockets) served by uvicorn in a thread of the tests.

    pytest-django's live_server speaks WSGI only; pages that go live need websockets.
    """

    def __init__(self):
        import socket
        import threading

        import uvicorn
        from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

        from cockpit.asgi import application

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            ASGIStaticFilesHandler(application),
            host="127.0.0.1",
            port=self.port,
            lifespan="off",
            log_level="warning",
            ws_ping_interval=None,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self):
        import time

        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ASGI live server did not start")
            time.sleep(0.05)

    def stop(self):
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def asgi_live_server(transactional_db):
    """Like live_server, with websockets: asgi_live_server.url."""
    server = AsgiLiveServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def asgi_logged_in_page(page, asgi_live_server, people):
    """asgi_logged_in_page("viewer") → the page, logged in on the ASGI live server."""
    return lambda name: log_in(page, asgi_live_server.url, people[name])
