from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces import views
from traces.forms import SORTS
from traces.models import Run, Span
from traces.views import RUNS_PER_PAGE, fetch_runs

pytestmark = pytest.mark.django_db

# Session, user and the user's groups, the agent names, then the page of runs: in a savepoint
# here (a plain transaction in production, where BEGIN and COMMIT are not logged) whose
# SET LOCAL turns parallel workers off and bounds the time (savepoint, SET, page, release).
RUN_LIST_QUERIES = 8
# An htmx swap needs no agent names.
RUN_LIST_FRAGMENT_QUERIES = 7
HTMX = {"HTTP_HX_REQUEST": "true"}
LIVE = {**HTMX, "HTTP_HX_TRIGGER": "runs-live"}


def minutes_ago(minutes):
    return timezone.now() - timedelta(minutes=minutes)


def listed(response):
    return [run.trace_id for run in response.context["runs"]]


def get(client, **params):
    return client.get(reverse("run-list"), params)


def test_it_lists_runs_newest_first_with_their_numbers(client_as, project):
    agent = make_agent(project, "support-triage")
    older = make_run(project, agent, started_at=minutes_ago(30), name="refund order")
    newer = make_run(
        project,
        agent,
        started_at=minutes_ago(2),
        name="answer question",
        status="error",
        outcome="escalated",
        duration_ms=2350,
        input_tokens=1200,
        output_tokens=34,
        llm_calls=2,
        tool_calls=1,
        error_count=1,
        pii_count=2,
        user_id="customer-42",
        task_type="refund",
        cost_usd=Decimal("0.0421"),
    )

    response = client_as("viewer").get(reverse("run-list"))

    assert response.status_code == 200
    assert listed(response) == [newer.trace_id, older.trace_id]
    html = response.content.decode()
    assert "answer question" in html and "refund order" in html
    assert '<span class="badge error">error</span>' in html
    assert '<span class="badge escalated">escalated</span>' in html
    assert ">1 err</span>" in html and ">PII</span>" in html
    assert "2.35 s" in html
    assert "1,234" in html
    assert "2 / 1" in html
    assert "$0.0421" in html
    assert 'href="/traces/?user=customer-42">customer-42</a>' in html
    assert f'href="/traces/{newer.trace_id}/?project=acme"' in html


def test_a_run_without_a_known_cost_is_marked_unknown(client_as, project):
    make_run(project, cost_known=False)

    html = client_as("viewer").get(reverse("run-list")).content.decode()

    assert ">unknown</span>" in html


@pytest.mark.parametrize(
    ("params", "wanted", "other"),
    [
        ({"status": "error"}, {"status": "error"}, {"status": "ok"}),
        ({"status": "running"}, {"status": "running"}, {"status": "ok"}),
        ({"outcome": "escalated"}, {"outcome": "escalated"}, {"outcome": "success"}),
        ({"outcome": "none"}, {"outcome": ""}, {"outcome": "success"}),
        ({"version": "2.0.1"}, {"version": "2.0.1"}, {"version": "2.0.0"}),
        ({"user": "u-7"}, {"user_id": "u-7"}, {"user_id": "u-8"}),
        ({"conversation": "c-1"}, {"conversation_id": "c-1"}, {"conversation_id": "c-2"}),
        ({"task": "refund"}, {"task_type": "refund"}, {"task_type": "faq"}),
        ({"min_cost": "0.5"}, {"cost_usd": Decimal("0.5")}, {"cost_usd": Decimal("0.49")}),
        ({"min_duration": "30"}, {"duration_ms": 30_000.0}, {"duration_ms": 29_999.0}),
        ({"has_error": "on"}, {"error_count": 1}, {"error_count": 0}),
        ({"has_pii": "on"}, {"pii_count": 3}, {"pii_count": 0}),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, dict) else None,
)
def test_each_filter_keeps_only_the_runs_it_names(client_as, project, params, wanted, other):
    match = make_run(project, **wanted)
    make_run(project, **other)

    response = get(client_as("viewer"), **params)

    assert listed(response) == [match.trace_id]
    assert response.context["form"].is_filtered


def test_it_filters_by_agent_and_by_period(client_as, project):
    triage = make_agent(project, "support-triage")
    refunds = make_agent(project, "refunds")
    recent = make_run(project, triage, started_at=minutes_ago(10))
    old = make_run(project, triage, started_at=minutes_ago(3 * 60))
    make_run(project, refunds, started_at=minutes_ago(10))
    client = client_as("viewer")

    assert listed(get(client, agent="support-triage")) == [recent.trace_id, old.trace_id]
    response = get(client, agent="support-triage", period="1h")
    assert listed(response) == [recent.trace_id]
    assert '<option value="1h" selected>' in response.content.decode()


def test_a_custom_time_range_includes_its_start_and_excludes_its_end(client_as, project, settings):
    settings.TIME_ZONE = "UTC"
    start = timezone.now().replace(microsecond=0) - timedelta(days=2)
    inside = make_run(project, started_at=start)
    make_run(project, started_at=start + timedelta(hours=1))
    make_run(project, started_at=start - timedelta(minutes=1))

    response = get(
        client_as("viewer"),
        since=start.strftime("%Y-%m-%dT%H:%M:%S"),
        until=(start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"),
    )

    assert listed(response) == [inside.trace_id]


def test_it_filters_by_a_model_the_run_called(client_as, project):
    uses_o3 = make_run(project)
    Span.objects.filter(run=uses_o3, kind="llm").update(model="o3")
    named_o3_elsewhere = make_run(project)
    Span.objects.filter(run=named_o3_elsewhere, kind="tool").update(model="o3")
    make_run(project)

    response = get(client_as("viewer"), model="o3")

    assert listed(response) == [uses_o3.trace_id]


def test_an_unknown_agent_lists_nothing_and_says_so(client_as, project):
    make_run(project)

    response = get(client_as("viewer"), agent="ghost")

    assert listed(response) == []
    assert "No runs match these filters" in response.content.decode()


def test_bad_filter_values_are_explained_and_the_valid_ones_still_apply(client_as, project):
    triage = make_agent(project, "support-triage")
    match = make_run(project, triage)
    make_run(project, make_agent(project, "refunds"))

    response = get(
        client_as("viewer"),
        agent="support-triage",
        min_cost="lots",
        min_duration="-3",
        since="yesterday",
        status="bogus",
        sort="sideways",
        cursor="not-a-cursor",
    )

    assert response.status_code == 200
    assert listed(response) == [match.trace_id]
    html = response.content.decode()
    assert "Some filters were left out" in html
    assert "Min cost ($): Enter a number." in html
    assert "Min duration (s): Ensure this value is greater than or equal to 0." in html
    assert "From: Enter a valid date/time." in html
    assert "This page link is out of date" in html
    assert 'aria-invalid="true"' in html


def test_an_end_before_the_start_is_refused(client_as, project):
    make_run(project)

    response = get(client_as("viewer"), since="2026-11-20T12:00", until="2026-11-20T08:00")

    assert "Until: Until must be after From." in response.content.decode()


@pytest.mark.parametrize("sort", list(SORTS))
def test_every_sort_pages_through_all_runs_once_even_with_equal_values(client_as, project, sort):
    agent = make_agent(project)
    start = minutes_ago(60)
    runs = []
    for i in range(2 * RUNS_PER_PAGE + 5):
        # Values repeat in groups of seven, so page boundaries fall inside ties.
        runs.append(
            make_run(
                project,
                agent,
                spans=1,
                started_at=start + timedelta(seconds=i // 7),
                duration_ms=float(1000 + 10 * (i // 7)),
                cost_usd=Decimal("0.01") * (i // 7),
            )
        )
    field, descending = SORTS[sort].field, SORTS[sort].descending
    expected = [
        r.trace_id
        for r in sorted(runs, key=lambda r: (getattr(r, field), r.pk), reverse=descending)
    ]
    client = client_as("viewer")

    seen, response = [], get(client, sort=sort, agent=agent.name)
    while True:
        seen += listed(response)
        if not response.context["next_query"]:
            break
        assert f"sort={sort}" in response.context["next_query"]
        response = client.get(f"{reverse('run-list')}?{response.context['next_query']}")

    assert seen == expected


def test_the_next_page_link_keeps_the_filters_and_the_first_page_link_drops_the_cursor(
    client_as, project
):
    agent = make_agent(project, "support-triage")
    for i in range(RUNS_PER_PAGE + 1):
        make_run(project, agent, spans=1, started_at=minutes_ago(i + 1), task_type="refund")
    client = client_as("viewer")

    first = get(client, agent="support-triage", task="refund", has_error="")
    html = first.content.decode()
    assert "Next page →" in html
    next_query = first.context["next_query"]
    assert "agent=support-triage" in next_query and "task=refund" in next_query

    second = client.get(f"{reverse('run-list')}?{next_query}")
    assert len(listed(second)) == 1
    assert "← First page" in second.content.decode()
    assert "cursor" not in second.context["first_query"]
    assert "task=refund" in second.context["first_query"]


def test_the_form_shows_the_filters_of_the_address(client_as, project):
    make_run(project)

    html = get(
        client_as("viewer"), q="late parcel", user="u-7", min_cost="0.2", has_pii="on"
    ).content.decode()

    assert 'name="q" value="late parcel"' in html
    assert 'name="user" value="u-7"' in html
    assert 'name="min_cost" value="0.2"' in html
    assert 'name="has_pii" id="id_has_pii" checked' in html
    assert '<details class="more-filters" open>' in html


def test_an_htmx_request_gets_only_the_results(client_as, project):
    run = make_run(project)

    response = client_as("viewer").get(reverse("run-list"), {"status": "ok"}, **HTMX)

    html = response.content.decode()
    assert html.lstrip().startswith('<div id="runs-results">')
    assert "<html" not in html and 'id="run-filters"' not in html
    assert run.trace_id in html
    assert "HX-Request" in response["Vary"]


def test_a_history_restore_gets_the_whole_page(client_as, project):
    make_run(project)

    response = client_as("viewer").get(
        reverse("run-list"), **HTMX, HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )

    assert "<html" in response.content.decode()


def test_the_live_element_is_only_on_the_first_page_sorted_by_time(client_as, project):
    for i in range(RUNS_PER_PAGE + 1):
        make_run(project, spans=1, started_at=minutes_ago(i + 1))
    client = client_as("viewer")

    first = get(client, status="ok")
    html = first.content.decode()
    assert 'id="runs-live"' in html
    assert 'hx-get="/traces/?status=ok"' in html
    assert 'ws-connect="/ws/live/runs/"' in html
    assert "data-cursor=" in html
    assert 'id="runs-live"' not in get(client, sort="-cost").content.decode()
    paged = client.get(f"{reverse('run-list')}?{first.context['next_query']}")
    assert 'id="runs-live"' not in paged.content.decode()


def test_the_live_refresh_returns_only_the_rows_newer_than_the_cursor(
    client_as, project, django_assert_num_queries
):
    agent = make_agent(project)
    shown = make_run(project, agent, started_at=minutes_ago(5))
    client = client_as("viewer")
    cursor = get(client).context["runs"][0].live_cursor
    newer = make_run(project, agent, started_at=minutes_ago(1))
    make_run(project, agent, started_at=minutes_ago(1), status="error")  # filtered out
    make_run(project, agent, started_at=minutes_ago(9))  # older than what is shown

    with django_assert_num_queries(RUN_LIST_FRAGMENT_QUERIES):
        response = client.get(reverse("run-list"), {"status": "ok", "after": cursor}, **LIVE)

    html = response.content.decode()
    assert html.lstrip().startswith('<tr class="fresh"')
    assert newer.trace_id in html and shown.trace_id not in html
    assert html.count("<tr") == 1


def test_a_live_refresh_with_more_than_a_page_of_new_runs_redraws_the_first_page(
    client_as, project
):
    agent = make_agent(project)
    make_run(project, agent, started_at=minutes_ago(90))
    client = client_as("viewer")
    cursor = get(client).context["runs"][0].live_cursor
    for i in range(RUNS_PER_PAGE + 1):
        make_run(project, agent, spans=1, started_at=minutes_ago(i + 1))

    response = client.get(reverse("run-list"), {"after": cursor}, **LIVE)

    assert response["HX-Retarget"] == "#runs-results"
    assert response["HX-Reswap"] == "outerHTML"
    assert response.content.decode().lstrip().startswith('<div id="runs-results">')


def test_the_query_count_does_not_grow_with_the_page(client_as, project, django_assert_num_queries):
    client = client_as("viewer")
    client.get(reverse("run-list"))
    for n in range(4):
        make_run(project, make_agent(project, f"agent-{n}"), spans=1)
    with django_assert_num_queries(RUN_LIST_QUERIES):
        client.get(reverse("run-list"))
    for n in range(10):
        make_run(project, make_agent(project, f"agent-{n}"), spans=1, error_count=1)
    with django_assert_num_queries(RUN_LIST_QUERIES):
        get(client, agent="agent-1", period="24h", has_error="on", model="m", sort="-cost")
    with django_assert_num_queries(RUN_LIST_FRAGMENT_QUERIES):
        client.get(reverse("run-list"), {"sort": "duration"}, **HTMX)


def test_no_runs_yet_shows_a_friendly_empty_state(client_as):
    html = client_as("viewer").get(reverse("run-list")).content.decode()

    assert "No runs yet" in html
    assert "/v1/traces" in html
    # The empty list still listens, so the first run shows up by itself.
    assert 'id="runs-live"' in html


def test_hostile_run_content_is_escaped(client_as, project):
    agent = make_agent(project, '"><img src=x onerror=alert(1)>')
    make_run(
        project,
        agent,
        name="<script>alert(1)</script>",
        user_id="javascript:alert(document.cookie)",
        version="<b>1</b>",
        task_type="<svg onload=alert(1)>",
    )

    html = (
        client_as("viewer")
        .get(reverse("run-list"), {"q": '"><script>alert(2)</script>', "user": "<i>x</i>"})
        .content.decode()
    )
    html += client_as("viewer").get(reverse("run-list")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(2)</script>" not in html
    assert "<img src=x onerror=alert(1)>" not in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<b>1</b>" not in html and "<i>x</i>" not in html
    assert "<svg onload" not in html
    assert 'href="javascript:' not in html


def test_a_list_query_past_its_time_limit_is_cancelled(project, monkeypatch):
    make_run(project)
    monkeypatch.setattr(views, "LIST_QUERY_TIMEOUT", "50ms")
    slow = Run.objects.extra(where=["pg_sleep(0.5) IS NOT NULL"])  # noqa: S610 - fixed SQL

    assert fetch_runs(slow, 10) is None
    assert len(fetch_runs(Run.objects.all(), 10)) == 1


def test_a_search_that_takes_too_long_says_how_to_narrow_it(client_as, project, monkeypatch):
    make_run(project)
    monkeypatch.setattr(views, "fetch_runs", lambda runs, limit: None)

    response = get(client_as("viewer"), q="the")

    assert response.status_code == 200
    html = response.content.decode()
    assert "This search took too long" in html
    assert 'id="runs-live"' not in html
