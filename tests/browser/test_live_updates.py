"""The live plumbing in a real browser: a broadcast lands in the page; a lost socket shows."""

import threading

from django.db import transaction

from cockpit import realtime


def broadcast(topic: str, html: str) -> None:
    """Send as a view or task would: from a thread with no event loop (Playwright runs one
    in the test's own thread, where async_to_sync refuses to work)."""

    def send():
        with transaction.atomic():
            realtime.send_fragment(topic, html)

    thread = threading.Thread(target=send)
    thread.start()
    thread.join()


def test_a_broadcast_fragment_is_swapped_into_the_page(asgi_logged_in_page, asgi_live_server):
    page = asgi_logged_in_page("viewer")
    # The fleet page subscribes to the fleet topic.
    page.wait_for_function("document.body.dataset.live === 'on'")
    broadcast("fleet", '<div id="live-refresh" hx-swap-oob="true" data-probe="arrived"></div>')
    page.wait_for_selector("#live-refresh[data-probe='arrived']", state="attached")
    assert page.locator(".live-status .when-on").is_visible()


def test_the_page_says_so_when_live_updates_disconnect(asgi_logged_in_page, asgi_live_server):
    page = asgi_logged_in_page("viewer")
    page.wait_for_function("document.body.dataset.live === 'on'")
    asgi_live_server.stop()
    page.wait_for_function("document.body.dataset.live === 'off'", timeout=15_000)
    assert page.locator(".live-status .when-off").is_visible()
