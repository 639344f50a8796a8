"""Waking agents that long-poll a request, in this process and across processes.

A waiting poll registers an asyncio event for its request in this process and, with Redis,
subscribes to the request's Redis channel. A decision anywhere calls wake() after commit: it
sets the events of this process's waiters (whatever thread or event loop they run on) and
publishes on Redis for the other processes. Nothing here touches the database: a waiting poll
holds no connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict

import redis
import redis.asyncio
from django.conf import settings

logger = logging.getLogger(__name__)

_waiters: dict[int, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = defaultdict(set)
_lock = threading.Lock()
_publisher: redis.Redis | None = None
# Set when the server stops: polls answer at once instead of holding the shutdown open.
_closing = threading.Event()


def channel_of(approval_id: int) -> str:
    # The channel layer's prefix keeps deployments (and test workers) sharing a Redis apart.
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "cockpit")
    return f"{prefix}:approval-decided:{approval_id}"


def wake(approval_id: int) -> None:
    """Tell every poll waiting on this request, here and in other processes, to look again."""
    with _lock:
        waiting = list(_waiters.get(approval_id, ()))
    for loop, event in waiting:
        with contextlib.suppress(RuntimeError):  # the loop closed: its poll is gone
            loop.call_soon_threadsafe(event.set)
    if settings.REDIS_URL:
        try:
            _redis().publish(channel_of(approval_id), "decided")
        except redis.RedisError:
            # A poll in another process that misses the wake-up returns at its timeout.
            logger.warning("Could not publish the decision of approval %s", approval_id)


def release_all() -> None:
    """Let every waiting poll of this process answer now (still pending): the server is
    stopping, and agents poll again elsewhere rather than hold it open."""
    _closing.set()
    with _lock:
        waiting = [entry for entries in _waiters.values() for entry in entries]
    for loop, event in waiting:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(event.set)


def _redis() -> redis.Redis:
    global _publisher
    if _publisher is None:
        _publisher = redis.Redis.from_url(settings.REDIS_URL)
    return _publisher


class Waiter:
    """Registered before the caller's status check, so a decision landing in between still
    wakes it:

        async with Waiter(pk) as waiter:
            if still pending: await waiter.wait(seconds)
    """

    def __init__(self, approval_id: int):
        self.approval_id = approval_id
        self.event = asyncio.Event()
        self.entry: tuple | None = None
        self.client: redis.asyncio.Redis | None = None
        self.listener: asyncio.Task | None = None

    async def __aenter__(self) -> Waiter:
        self.entry = (asyncio.get_running_loop(), self.event)
        with _lock:
            _waiters[self.approval_id].add(self.entry)
        if settings.REDIS_URL:
            try:
                self.client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
                pubsub = self.client.pubsub()
                await pubsub.subscribe(channel_of(self.approval_id))
                self.listener = asyncio.create_task(self._listen(pubsub))
            except redis.RedisError:
                logger.warning(
                    "Long-poll of approval %s cannot hear other processes", self.approval_id
                )
        return self

    async def _listen(self, pubsub) -> None:
        try:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    self.event.set()
                    return
        finally:
            await pubsub.aclose()

    async def wait(self, seconds: float) -> bool:
        """True when woken, False at the timeout (at once while the server stops)."""
        if _closing.is_set():
            await asyncio.sleep(0)  # a wake-up already scheduled on this loop runs first
            return self.event.is_set()
        try:
            await asyncio.wait_for(self.event.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def __aexit__(self, *exc) -> None:
        with _lock:
            waiting = _waiters.get(self.approval_id)
            if waiting is not None:
                waiting.discard(self.entry)
                if not waiting:
                    del _waiters[self.approval_id]
        if self.listener is not None:
            self.listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, redis.RedisError):
                await self.listener
        if self.client is not None:
            await self.client.aclose()
