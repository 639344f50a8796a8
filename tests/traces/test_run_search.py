"""Text search in run content: run documents and fresh spans on PostgreSQL (two plans, one
answer), LIKE elsewhere; the indexer that writes the documents."""

import random
import string
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from cockpit.models import RollupWatermark
from tests.factories import make_agent, make_run
from traces import search as run_search
from traces.models import Run, RunSearch, Span
from traces.tasks import index_run_content

pytestmark = pytest.mark.django_db


def with_content(project, agent=None, *, input="", output="", **fields):
    run = make_run(project, agent, spans=3, **fields)
    Span.objects.filter(run=run, name="step 1").update(input=input, output=output)
    return run


def index_everything():
    """One indexer pass as if a minute had passed: every run has its document."""
    run_search.index_pass(now=timezone.now() + timedelta(minutes=1))


@pytest.fixture(
    params=[
        ("index-first", "indexed"),
        ("runs-first", "indexed"),
        ("index-first", "fresh"),
        ("runs-first", "fresh"),
    ],
    ids="-".join,
)
def plan(request, monkeypatch):
    """Every way of running a search, forced: they must find the same runs.

    "indexed" runs are read from their documents; "fresh" ones (changed since the indexer's
    watermark) from their spans.
    """
    order, coverage = request.param
    threshold = float("inf") if order == "index-first" else 0
    monkeypatch.setattr(run_search, "SEARCH_INDEX_FIRST_BELOW", threshold)
    return coverage


@pytest.fixture
def search(plan):
    def search(client, **params):
        if plan == "indexed":
            index_everything()
        response = client.get(reverse("run-list"), params)
        return [run.trace_id for run in response.context["runs"]]

    return search


def test_it_finds_runs_by_words_in_span_input_or_output(client_as, project, search):
    in_input = with_content(project, input='[{"role": "user", "content": "Where is my parcel?"}]')
    in_output = with_content(project, output="The parcel left the depot today.")
    with_content(project, input="Refund the duplicate charge.", output="Done.")

    found = search(client_as("viewer"), q="parcel")

    assert set(found) == {in_input.trace_id, in_output.trace_id}


def test_every_word_must_appear_and_quotes_keep_a_phrase(client_as, project, search):
    both = with_content(project, input="the warranty claim was rejected")
    apart = with_content(project, input="claim under the warranty", output="")
    with_content(project, input="warranty only")
    client = client_as("viewer")

    assert set(search(client, q="warranty claim")) == {both.trace_id, apart.trace_id}
    assert search(client, q='"warranty claim"') == [both.trace_id]


def test_search_combines_with_the_other_filters_and_the_order(client_as, project, search):
    triage = make_agent(project, "support-triage")
    refunds = make_agent(project, "refunds")
    cheap = with_content(project, triage, input="chargeback threatened", cost_usd=1)
    dear = with_content(project, triage, input="chargeback threatened", cost_usd=5)
    with_content(project, refunds, input="chargeback threatened")

    found = search(client_as("viewer"), q="chargeback", agent="support-triage", sort="-cost")

    assert found == [dear.trace_id, cheap.trace_id]


def test_a_run_matching_in_several_spans_is_listed_once(client_as, project, search):
    run = with_content(project, input="parcel", output="parcel")
    Span.objects.filter(run=run).update(input="parcel parcel")

    assert search(client_as("viewer"), q="parcel") == [run.trace_id]


def test_search_syntax_and_punctuation_never_break_the_page(client_as, project, search):
    with_content(project, input="hello")
    client = client_as("viewer")

    for words in ["!!!", "a & b | (c", "-", "'", '"', "<script>", "\\"]:
        response = client.get(reverse("run-list"), {"q": words})
        assert response.status_code == 200


def test_a_run_changed_after_its_document_is_found_by_its_new_words(client_as, project, plan):
    run = with_content(project, input="first draft")
    index_everything()
    Span.objects.filter(run=run, name="step 2").update(output="second thoughts")
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() + timedelta(minutes=2))
    client = client_as("viewer")

    assert [r.trace_id for r in client.get("/traces/", {"q": "thoughts"}).context["runs"]] == [
        run.trace_id
    ]
    assert [r.trace_id for r in client.get("/traces/", {"q": "draft"}).context["runs"]] == [
        run.trace_id
    ]


def test_the_planner_estimate_decides_the_plan(project, monkeypatch):
    fresh = with_content(project, input="rare common")

    monkeypatch.setattr(run_search, "estimated_rows", lambda queryset: 10)
    rare = str(Run.objects.filter(run_search.runs_mentioning("rare")).query).replace('"', "")
    assert "IN ((SELECT" in rare and "UNION ALL" in rare and "EXISTS" not in rare
    monkeypatch.setattr(run_search, "estimated_rows", lambda queryset: 10**9)
    common = str(Run.objects.filter(run_search.runs_mentioning("common")).query)
    assert "EXISTS" in common and f"IN ({fresh.pk})" in common


def test_runs_not_yet_indexed_are_read_on_their_own_and_only_the_newest(project, monkeypatch):
    runs = [with_content(project, input="parcel") for _ in range(3)]
    with_content(project, input="nothing here")
    index_everything()
    changed = runs[:2]
    Run.objects.filter(pk__in=[r.pk for r in changed]).update(
        updated_at=timezone.now() + timedelta(minutes=2)
    )
    monkeypatch.setattr(run_search, "FRESH_RUNS_CAP", 1)

    assert run_search.fresh_runs_mentioning("parcel") in ([changed[0].pk], [changed[1].pk])
    monkeypatch.setattr(run_search, "FRESH_RUNS_CAP", 10)
    assert sorted(run_search.fresh_runs_mentioning("parcel")) == sorted(r.pk for r in changed)


def test_without_postgresql_it_searches_substrings(project, monkeypatch):
    part_of_a_word = with_content(project, input="Where is my parcel?")
    with_content(project, input="nothing here")
    monkeypatch.setattr(connection, "vendor", "sqlite")

    found = Run.objects.filter(run_search.runs_mentioning("PARC"))

    assert list(found.values_list("pk", flat=True)) == [part_of_a_word.pk]


# --- The indexer ---------------------------------------------------------------------------


def position():
    return RollupWatermark.objects.get(name=run_search.SEARCH_WATERMARK).position


def test_a_pass_writes_one_document_per_changed_run_and_moves_the_watermark(project):
    first = with_content(project, input="alpha", output="beta")
    second = with_content(project, output="gamma")
    now = timezone.now() + timedelta(minutes=1)

    assert index_run_content() == 2
    documents = dict(RunSearch.objects.values_list("run_id", "document"))
    assert set(documents) == {first.pk, second.pk}
    assert "'alpha'" in documents[first.pk] and "'beta'" in documents[first.pk]

    assert run_search.index_pass(now=now) == 2  # still within the margin of the first pass
    assert position() == now - timedelta(seconds=2)
    assert run_search.index_pass(now=now) == 0


def test_a_later_change_rebuilds_the_document(project):
    run = with_content(project, input="alpha")
    index_everything()
    Span.objects.filter(run=run, name="step 1").update(input="omega")
    Run.objects.filter(pk=run.pk).update(updated_at=timezone.now() + timedelta(minutes=5))

    run_search.index_pass(now=timezone.now() + timedelta(minutes=10))

    assert RunSearch.objects.get(run=run).document == "'omega':1"


def test_a_full_batch_finishes_every_run_stamped_like_its_last(project, monkeypatch):
    monkeypatch.setattr(run_search, "INDEX_BATCH", 2)
    stamp = timezone.now() - timedelta(minutes=1)
    runs = [with_content(project, input=f"word{i}") for i in range(4)]
    Run.objects.filter(pk__in=[r.pk for r in runs[:3]]).update(updated_at=stamp)
    later = timezone.now() + timedelta(minutes=1)

    assert run_search.index_pass(now=later) == 3
    assert position() == stamp + timedelta(microseconds=1)
    assert run_search.index_pass(now=later) == 1
    assert RunSearch.objects.count() == 4


def test_a_run_whose_words_overflow_a_tsvector_gets_its_first_characters(project, monkeypatch):
    monkeypatch.setattr(run_search, "FALLBACK_CONTENT_CHARS", 30)
    rng = random.Random(7)
    words = {"".join(rng.choices(string.ascii_lowercase, k=9)) for _ in range(140_000)}
    huge = with_content(project, input="opening words " + " ".join(words))
    small = with_content(project, input="ordinary")

    index_everything()

    assert RunSearch.objects.get(run=small).document == "'ordinary':1"
    document = RunSearch.objects.get(run=huge).document
    assert "'opening':1" in document and len(document) < 200


def test_expired_spans_take_their_document_with_them(project, settings):
    from cockpit import rollups

    settings.COCKPIT_SPAN_RETENTION_DAYS = 1
    old = with_content(project, input="ancient", started_at=timezone.now() - timedelta(days=3))
    recent = with_content(project, input="recent")
    index_everything()

    rollups.delete_expired_spans()

    assert list(RunSearch.objects.values_list("run_id", flat=True)) == [recent.pk]
    assert Run.objects.filter(pk=old.pk).exists()


def test_on_sqlite_there_is_nothing_to_index(project, monkeypatch):
    with_content(project, input="alpha")
    monkeypatch.setattr(connection, "vendor", "sqlite")

    assert run_search.index_pass() == 0
    assert not RunSearch.objects.exists()


def test_the_task_keeps_passing_while_a_backlog_remains(project, monkeypatch):
    monkeypatch.setattr(run_search, "INDEX_BATCH", 2)
    stamp = timezone.now() - timedelta(minutes=1)
    runs = [with_content(project, input=f"word{i}") for i in range(5)]
    for offset, run in enumerate(runs):
        Run.objects.filter(pk=run.pk).update(updated_at=stamp + timedelta(seconds=offset))

    assert index_run_content() == 5
    assert RunSearch.objects.count() == 5
