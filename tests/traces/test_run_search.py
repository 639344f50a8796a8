"""Text search in run content: full-text on PostgreSQL (two plans, one answer), LIKE elsewhere."""

import pytest
from django.db import connection
from django.urls import reverse

from tests.factories import make_agent, make_run
from traces import forms
from traces.models import Span

pytestmark = pytest.mark.django_db


def with_content(project, agent=None, *, input="", output="", **fields):
    run = make_run(project, agent, spans=3, **fields)
    Span.objects.filter(run=run, name="step 1").update(input=input, output=output)
    return run


def search(client, **params):
    response = client.get(reverse("run-list"), params)
    return [run.trace_id for run in response.context["runs"]]


@pytest.fixture(params=["index-first", "runs-first"])
def plan(request, monkeypatch):
    """Both ways of running a search, forced: they must find the same runs."""
    threshold = float("inf") if request.param == "index-first" else 0
    monkeypatch.setattr(forms, "SEARCH_INDEX_FIRST_BELOW", threshold)
    return request.param


def test_it_finds_runs_by_words_in_span_input_or_output(client_as, project, plan):
    in_input = with_content(project, input='[{"role": "user", "content": "Where is my parcel?"}]')
    in_output = with_content(project, output="The parcel left the depot today.")
    with_content(project, input="Refund the duplicate charge.", output="Done.")

    found = search(client_as("viewer"), q="parcel")

    assert set(found) == {in_input.trace_id, in_output.trace_id}


def test_every_word_must_appear_and_quotes_keep_a_phrase(client_as, project, plan):
    both = with_content(project, input="the warranty claim was rejected")
    apart = with_content(project, input="claim under the warranty", output="")
    with_content(project, input="warranty only")
    client = client_as("viewer")

    assert set(search(client, q="warranty claim")) == {both.trace_id, apart.trace_id}
    assert search(client, q='"warranty claim"') == [both.trace_id]


def test_search_combines_with_the_other_filters_and_the_order(client_as, project, plan):
    triage = make_agent(project, "support-triage")
    refunds = make_agent(project, "refunds")
    cheap = with_content(project, triage, input="chargeback threatened", cost_usd=1)
    dear = with_content(project, triage, input="chargeback threatened", cost_usd=5)
    with_content(project, refunds, input="chargeback threatened")

    found = search(client_as("viewer"), q="chargeback", agent="support-triage", sort="-cost")

    assert found == [dear.trace_id, cheap.trace_id]


def test_a_run_matching_in_several_spans_is_listed_once(client_as, project, plan):
    run = with_content(project, input="parcel", output="parcel")
    Span.objects.filter(run=run).update(input="parcel parcel")

    assert search(client_as("viewer"), q="parcel") == [run.trace_id]


def test_search_syntax_and_punctuation_never_break_the_page(client_as, project, plan):
    with_content(project, input="hello")
    client = client_as("viewer")

    for words in ["!!!", "a & b | (c", "-", "'", '"', "<script>", "\\"]:
        response = client.get(reverse("run-list"), {"q": words})
        assert response.status_code == 200


def test_the_planner_estimate_decides_the_plan(project, monkeypatch):
    monkeypatch.setattr(forms, "estimated_spans_mentioning", lambda words: 10)
    assert "IN (SELECT" in str(
        forms.Run.objects.filter(forms.runs_mentioning("rare")).query
    ).replace('"', "")
    monkeypatch.setattr(forms, "estimated_spans_mentioning", lambda words: 10**9)
    assert "EXISTS" in str(forms.Run.objects.filter(forms.runs_mentioning("common")).query)


def test_without_postgresql_it_searches_substrings(client_as, project, monkeypatch):
    part_of_a_word = with_content(project, input="Where is my parcel?")
    with_content(project, input="nothing here")
    monkeypatch.setattr(connection, "vendor", "sqlite")

    assert list(forms.spans_mentioning("PARC").values_list("run_id", flat=True)) == [
        part_of_a_word.pk
    ]
