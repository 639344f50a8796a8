"""Live updates: channel-layer group names and broadcasts that fire after commit.

Pages subscribe with the htmx ws extension to ``/ws/live/<topic>/``; cockpit.consumers joins
the socket to the topic's group and forwards what is sent to it. Two kinds of message:

- ``send_fragment(topic, html)``: server-rendered HTML whose top-level elements carry ids; htmx
  swaps each one out of band into the page. Render it with the same fragment template the page
  uses, so the full page, the htmx swap and the push never disagree.
- ``send_refresh(topic, target_id)``: a tiny fragment that makes the page re-fetch one of its
  parts over HTTP (hx-get on the element itself). Use it where rendering for every viewer
  would cost the sender too much, as on the ingest path.

Everything is sent on commit: a page never hears of a row it cannot read yet, and a rolled
back change is never announced. Sending never fails the caller: the page's polling fallback
covers a lost message.
"""

from __future__ import annotations

import logging
import re

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils.html import format_html

logger = logging.getLogger(__name__)

# Topics a browser may subscribe to, and who may: every topic needs a cockpit role (viewer).
# run.<trace_id>: one run page; agent.<id>; incident.<id>; approval.<id>.
TOPIC_PATTERN = re.compile(
    r"^(fleet|runs|approvals|incidents|(run|agent|incident|approval)\.[0-9a-f]{1,32})$"
)


def group_for(topic: str) -> str:
    """The channel-layer group of a topic (group names allow [a-zA-Z0-9._-] only)."""
    if not TOPIC_PATTERN.match(topic):
        raise ValueError(f"not a live topic: {topic!r}")
    return f"live.{topic}"


def send_fragment(topic: str, html: str) -> None:
    """Push HTML to every page subscribed to topic, once the current transaction commits."""
    _on_commit(topic, {"type": "live.fragment", "html": str(html)})


def send_refresh(topic: str, target_id: str) -> None:
    """Make subscribed pages re-fetch the element with this id (it must carry hx-get)."""
    html = format_html(
        '<div id="live-refresh" hx-swap-oob="true" data-refresh="{}"></div>', target_id
    )
    _on_commit(topic, {"type": "live.fragment", "html": html})


def _on_commit(topic: str, message: dict) -> None:
    group = group_for(topic)
    transaction.on_commit(lambda: _send(group, message))


def _send(group: str, message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # noqa: BLE001 - a lost live update is covered by polling
        logger.warning("Could not broadcast to %s", group, exc_info=True)
