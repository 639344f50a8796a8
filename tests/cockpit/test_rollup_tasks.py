import random
import threading
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from celery.contrib.testing.worker import start_worker
from channels.layers import get_channel_layer
from django.db import connection, transaction

from cockpit import realtime, rollups
from cockpit.celery import app
from cockpit.models import Rollup, RollupWatermark
from cockpit.tasks import build_coarse_rollups, fold_rollups
from tests.cockpit.rollup_traffic import ingest, traffic, truth_by_minute


def total_rows():
    rows = Rollup.objects.filter(resolution="1m", dim_kind="")
    return {(r.agent_id, r.bucket_start): r.runs for r in rows}


def expected_rows():
    return {key: row["runs"] for key, row in truth_by_minute().items()}


@pytest.mark.django_db(transaction=True)
def test_a_pass_finds_the_watermark_held_and_leaves_the_buckets_to_the_holder(project):
    ingest(project, traffic(random.Random(1), runs=20))
    rollups.fold_pass()  # creates the watermark row
    holding, release = threading.Event(), threading.Event()

    def hold_the_watermark():
        with transaction.atomic():
            RollupWatermark.objects.select_for_update().get(name=rollups.FOLD_WATERMARK)
            holding.set()
            release.wait(10)
        connection.close()

    holder = threading.Thread(target=hold_the_watermark)
    holder.start()
    try:
        assert holding.wait(10)
        assert rollups.fold_pass() == set()
    finally:
        release.set()
        holder.join()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_fold_passes_never_double_count(project):
    ingest(project, traffic(random.Random(2), runs=150))
    start = threading.Barrier(2)
    folded = []

    def fold():
        start.wait()
        folded.append(rollups.fold_pass())
        connection.close()

    threads = [threading.Thread(target=fold) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert any(folded)
    assert total_rows() == expected_rows()
    ingest(project, traffic(random.Random(3), runs=50))  # more traffic, folded by racing passes
    threads = [threading.Thread(target=fold) for _ in range(2)]
    start.reset()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rollups.fold_pass()  # whichever lost the race is picked up now
    assert total_rows() == expected_rows()


@pytest.mark.django_db(transaction=True)
def test_a_fold_pass_announces_the_agents_it_folded_after_commit(project, monkeypatch):
    # Without the margin the watermark passes every run already read (see safe_horizon).
    monkeypatch.setattr(rollups, "WATERMARK_MARGIN", timedelta(0))
    heard = []

    def receiver(sender, agent_ids, **kwargs):
        heard.append((agent_ids, connection.in_atomic_block))

    rollups.rollups_folded.connect(receiver)
    try:
        ingest(project, traffic(random.Random(4), agents=("refunds",), runs=5))
        agent_ids = rollups.fold_pass()
        assert heard == [(agent_ids, False)] and len(agent_ids) == 1
        rollups.fold_pass()
        assert len(heard) == 1  # nothing changed since: nothing announced
    finally:
        rollups.rollups_folded.disconnect(receiver)


@pytest.mark.django_db(transaction=True)
def test_a_real_celery_worker_folds_and_the_redis_channel_layer_carries_the_news(project):
    """Redis broker, a worker thread, and the Redis channel layer (not the in-memory one)."""
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(realtime.group_for("fleet"), channel)

    def announce(sender, agent_ids, **kwargs):
        realtime._send(  # the worker thread is outside any transaction by now
            realtime.group_for("fleet"),
            {"type": "live.fragment", "html": f"<p id='folded'>{sorted(agent_ids)}</p>"},
        )

    rollups.rollups_folded.connect(announce)
    ingest(project, traffic(random.Random(5), agents=("refunds",), runs=10))
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
            fold_rollups.delay()
            build_coarse_rollups.delay()
            message = async_to_sync(receive_marker)(layer, channel)
    finally:
        rollups.rollups_folded.disconnect(announce)
        async_to_sync(layer.group_discard)(realtime.group_for("fleet"), channel)
    assert total_rows() == expected_rows()
    assert f"[{project.agents.get().pk}]" in message["html"]


async def receive_marker(layer, channel, timeout=20.0):
    import asyncio

    async def wait():
        while True:
            message = await layer.receive(channel)
            if "id='folded'" in message.get("html", ""):
                return message

    return await asyncio.wait_for(wait(), timeout)
