"""Ingest tells live pages about new spans, once the batch commits: the runs list once per batch,
and the pages of runs still arriving."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction

from cockpit import realtime
from traces import ingest as span_store
from traces.ingest import ingest_batch
from traces.normalise import NormalisedBatch, SpanRecord

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def span(trace_n: int, span_n: int, *, root=False) -> SpanRecord:
    started = T0 + timedelta(milliseconds=span_n)
    return SpanRecord(
        trace_id=f"{trace_n:032x}",
        span_id=f"{span_n + 1:016x}",
        parent_span_id="" if root else f"{1:016x}",
        name="invoke_agent" if root else f"step {span_n}",
        kind="agent" if root else "llm",
        operation="",
        started_at=started,
        ended_at=started + timedelta(milliseconds=5),
        duration_ms=5,
        status="ok",
        agent_name="refunds",
        agent_version="1.0.0",
    )


def whole_trace(trace_n: int) -> list[SpanRecord]:
    return [span(trace_n, 0, root=True), span(trace_n, 1), span(trace_n, 2)]


@pytest.fixture(params=["postgresql", "portable"])
def store(request, monkeypatch):
    """Both store paths: PostgreSQL's, and the ORM one embedded SQLite takes."""
    if request.param == "portable":
        monkeypatch.setattr(connection, "vendor", "sqlite")
    return request.param


@pytest.fixture
def sent(monkeypatch):
    """The (topic, refreshed element id) of every live message sent."""
    messages = []

    def capture(group, message):
        marker = 'data-refresh="'
        target = message["html"].split(marker, 1)[1].split('"', 1)[0]
        messages.append((group.removeprefix("live."), target))

    monkeypatch.setattr(realtime, "_send", capture)
    return messages


def ingest(project, spans, capture):
    with capture(execute=True):
        ingest_batch(project, NormalisedBatch(spans=spans))


def test_whole_traces_in_one_batch_refresh_only_the_runs_list_once(
    project, store, sent, django_capture_on_commit_callbacks
):
    ingest(project, whole_trace(1) + whole_trace(2), django_capture_on_commit_callbacks)

    assert sent == [("runs", "runs-live")]


def test_a_trace_without_its_root_yet_refreshes_its_run_page(
    project, store, sent, django_capture_on_commit_callbacks
):
    ingest(project, [span(1, 1), span(1, 2)] + whole_trace(2), django_capture_on_commit_callbacks)

    assert sent == [("runs", "runs-live"), (f"run.{1:032x}", "run-live")]


def test_a_trace_arriving_in_several_batches_refreshes_its_run_page_each_time(
    project, store, sent, django_capture_on_commit_callbacks
):
    trace = f"{1:032x}"
    ingest(project, [span(1, 1)], django_capture_on_commit_callbacks)
    ingest(project, [span(1, 0, root=True), span(1, 2)], django_capture_on_commit_callbacks)

    assert sent == [("runs", "runs-live"), (f"run.{trace}", "run-live")] * 2


def test_a_batch_that_stores_nothing_new_sends_nothing(
    project, store, sent, django_capture_on_commit_callbacks
):
    ingest(project, whole_trace(1), django_capture_on_commit_callbacks)
    sent.clear()

    ingest(project, whole_trace(1), django_capture_on_commit_callbacks)

    assert sent == []


def test_run_page_refreshes_are_capped_per_batch(
    project, sent, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(span_store, "MAX_RUN_REFRESHES", 3)
    ingest(project, [span(n, 1) for n in range(1, 8)], django_capture_on_commit_callbacks)

    assert sent[0] == ("runs", "runs-live")
    assert len(sent) == 1 + 3


def test_nothing_is_sent_before_the_batch_commits_nor_if_it_rolls_back(project, sent):
    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        ingest_batch(project, NormalisedBatch(spans=whole_trace(1)))
        assert sent == []
        raise Abort

    assert sent == []
