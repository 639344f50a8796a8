"""GET /api/v1/runs and /api/v1/runs/<trace_id>: scope, filters, pagination, payload, queries."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.factories import make_agent, make_run
from traces.models import IngestKey, Span

# The v1 contract's addresses, spelled out: agents and scripts depend on them.
RUNS = "/api/v1/runs"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def run_url(trace_id: str) -> str:
    return f"/api/v1/runs/{trace_id}"


def bearer(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def trace_ids(response) -> list[str]:
    return [run["trace_id"] for run in response.json()["results"]]


# --- Who may read what ------------------------------------------------------------------------


def test_a_project_key_lists_only_its_own_projects_runs(client, project, other_project, ingest_key):
    mine = make_run(project)
    make_run(other_project, make_agent(other_project))

    response = client.get(RUNS, **bearer(ingest_key))

    assert response.status_code == 200
    assert trace_ids(response) == [mine.trace_id]


def test_a_person_with_a_role_lists_runs_of_every_project(client_as, project, other_project):
    ours = make_run(project, started_at=T0)
    theirs = make_run(other_project, make_agent(other_project), started_at=T0 + timedelta(1))

    response = client_as("viewer").get(RUNS)

    assert response.status_code == 200
    assert trace_ids(response) == [theirs.trace_id, ours.trace_id]


@pytest.mark.parametrize("name", ["operator", "reviewer", "commander", "admin"])
def test_every_cockpit_role_may_read_runs(client_as, project, name):
    make_run(project)

    assert client_as(name).get(RUNS).status_code == 200


def test_a_person_can_narrow_the_list_to_one_project(client_as, project, other_project):
    make_run(project)
    theirs = make_run(other_project, make_agent(other_project))

    response = client_as("viewer").get(RUNS, {"project": "globex"})

    assert trace_ids(response) == [theirs.trace_id]


def test_a_key_naming_another_project_still_sees_only_its_own(
    client, project, other_project, ingest_key
):
    make_run(other_project, make_agent(other_project))

    response = client.get(RUNS, {"project": "globex"}, **bearer(ingest_key))

    assert response.status_code == 200
    assert trace_ids(response) == []


def test_an_anonymous_caller_is_told_to_authenticate(client, project):
    make_run(project)

    response = client.get(RUNS)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_logged_in_outsider_is_forbidden(client_as, project):
    make_run(project)

    response = client_as("outsider").get(RUNS)

    assert response.status_code == 403


def test_a_revoked_key_is_refused(client, project, ingest_key):
    make_run(project)
    IngestKey.objects.get(project=project).revoke()

    response = client.get(RUNS, **bearer(ingest_key))

    assert response.status_code == 401
    assert response.json()["detail"] == "Unknown or revoked project key."


def test_an_unknown_key_is_refused(client, project):
    response = client.get(RUNS, **bearer("ck_not-a-key-anyone-was-given"))

    assert response.status_code == 401


def test_the_run_list_accepts_only_get(client, ingest_key):
    response = client.post(RUNS, {}, **bearer(ingest_key))

    assert response.status_code == 405


# --- What a run looks like -------------------------------------------------------------------


def test_each_run_carries_its_summary_tokens_cost_and_links(client, project, ingest_key):
    run = make_run(
        project,
        started_at=T0,
        duration_ms=2500.0,
        version="1.4.0",
        outcome="success",
        llm_calls=2,
        tool_calls=1,
        input_tokens=2700,
        output_tokens=200,
        cache_read_tokens=1000,
        cache_write_tokens=50,
        cost_usd=Decimal("0.01234567"),
        cost_known=False,
        conversation_id="conv-1",
        session_id="sess-1",
        user_id="user-1",
        task_type="refund",
        pii_count=2,
    )

    [body] = client.get(RUNS, **bearer(ingest_key)).json()["results"]

    assert body == {
        "trace_id": run.trace_id,
        "project": "acme",
        "agent": "support-triage",
        "version": "1.4.0",
        "name": "handle ticket",
        "status": "ok",
        "outcome": "success",
        "started_at": "2025-03-01T12:00:00Z",
        "ended_at": "2025-03-01T12:00:02.500000Z",
        "duration_ms": 2500.0,
        "span_count": 3,
        "llm_calls": 2,
        "tool_calls": 1,
        "error_count": 0,
        "tokens": {"input": 2700, "output": 200, "cache_read": 1000, "cache_write": 50},
        "cost_usd": "0.01234567",
        "cost_known": False,
        "conversation_id": "conv-1",
        "session_id": "sess-1",
        "user_id": "user-1",
        "task_type": "refund",
        "team": "",
        "pii_count": 2,
        "links": {
            "api": f"http://testserver/api/v1/runs/{run.trace_id}",
            "page": f"http://testserver/traces/{run.trace_id}/",
        },
    }


def test_a_run_whose_agent_was_deleted_shows_no_agent(client, project, ingest_key):
    run = make_run(project)
    run.agent.delete()

    [body] = client.get(RUNS, **bearer(ingest_key)).json()["results"]

    assert body["agent"] is None


# --- Filters ---------------------------------------------------------------------------------


def test_runs_are_filtered_by_agent_name(client, project, ingest_key):
    make_run(project, make_agent(project, "refunds"))
    triage = make_run(project, make_agent(project, "support-triage"))

    response = client.get(RUNS, {"agent": "support-triage"}, **bearer(ingest_key))

    assert trace_ids(response) == [triage.trace_id]


def test_runs_are_filtered_by_status(client, project, ingest_key):
    make_run(project, status="ok")
    failed = make_run(project, status="error")
    make_run(project, status="running")

    response = client.get(RUNS, {"status": "error"}, **bearer(ingest_key))

    assert trace_ids(response) == [failed.trace_id]


def test_since_is_inclusive_and_until_exclusive(client, project, ingest_key):
    before = make_run(project, started_at=T0 - timedelta(seconds=1))
    at_since = make_run(project, started_at=T0)
    inside = make_run(project, started_at=T0 + timedelta(minutes=30))
    at_until = make_run(project, started_at=T0 + timedelta(hours=1))

    response = client.get(
        RUNS,
        {"since": "2025-03-01T12:00:00Z", "until": "2025-03-01T13:00:00Z"},
        **bearer(ingest_key),
    )

    assert trace_ids(response) == [inside.trace_id, at_since.trace_id]
    assert before.trace_id not in trace_ids(response)
    assert at_until.trace_id not in trace_ids(response)


def test_an_offset_whose_plus_was_decoded_as_a_space_is_still_understood(
    client, project, ingest_key
):
    make_run(project, started_at=T0 - timedelta(minutes=1))
    later = make_run(project, started_at=T0 + timedelta(minutes=1))

    # What curl sends for ?since=2025-03-01T14:00:00+02:00 when the "+" is not escaped.
    response = client.get(f"{RUNS}?since=2025-03-01T14:00:00+02:00", **bearer(ingest_key))

    assert response.status_code == 200
    assert trace_ids(response) == [later.trace_id]


@pytest.mark.parametrize(
    ("params", "field", "reason"),
    [
        ({"since": "yesterday"}, "since", "Not an ISO-8601 date-time"),
        ({"until": "2025-13-01"}, "until", "Not an ISO-8601 date-time"),
        ({"status": "failed"}, "status", '"failed" is not a valid choice.'),
        ({"limit": "0"}, "limit", "greater than or equal to 1"),
        ({"limit": "501"}, "limit", "less than or equal to 500"),
        ({"limit": "many"}, "limit", "A valid integer is required."),
        ({"project": "not a name"}, "project", "letters, numbers, underscores or hyphens"),
        (
            {"since": "2025-03-01T13:00:00Z", "until": "2025-03-01T12:00:00Z"},
            "until",
            "Must be later than since.",
        ),
        ({"cursor": "forged"}, "cursor", "follow a `next` link unchanged"),
    ],
)
def test_a_bad_filter_answers_400_naming_the_field_and_why(
    client, project, ingest_key, params, field, reason
):
    make_run(project)

    response = client.get(RUNS, params, **bearer(ingest_key))

    assert response.status_code == 400
    body = response.json()
    assert list(body) == [field]
    assert reason in body[field][0]


# --- Pagination ------------------------------------------------------------------------------


def test_pages_follow_next_links_newest_first_without_gaps_or_repeats(client, project, ingest_key):
    runs = [make_run(project, started_at=T0 + timedelta(minutes=i)) for i in range(5)]
    # Two runs started at the same instant must both be listed, once each.
    runs.append(make_run(project, started_at=T0 + timedelta(minutes=2)))
    expected = [
        run.trace_id for run in sorted(runs, key=lambda r: (r.started_at, r.id), reverse=True)
    ]

    seen, url, pages = [], f"{RUNS}?limit=2", 0
    while url:
        body = client.get(url, **bearer(ingest_key)).json()
        assert len(body["results"]) <= 2
        seen += [run["trace_id"] for run in body["results"]]
        url, pages = body["next"], pages + 1

    assert seen == expected
    assert pages == 3


def test_the_default_page_holds_100_runs(client, project, ingest_key):
    agent = make_agent(project)
    for i in range(101):
        make_run(project, agent, spans=0, started_at=T0 + timedelta(seconds=i))

    body = client.get(RUNS, **bearer(ingest_key)).json()

    assert len(body["results"]) == 100
    assert body["next"] is not None


def test_next_links_keep_the_filters(client, project, ingest_key):
    for i in range(3):
        make_run(project, status="error", started_at=T0 + timedelta(minutes=i))
    make_run(project, status="ok")

    first = client.get(RUNS, {"status": "error", "limit": 2}, **bearer(ingest_key)).json()
    second = client.get(first["next"], **bearer(ingest_key)).json()

    assert "status=error" in first["next"]
    assert [run["status"] for run in first["results"] + second["results"]] == ["error"] * 3


# --- One run with its spans ------------------------------------------------------------------


def test_a_run_is_returned_with_every_span_in_start_order(client, project, ingest_key):
    run = make_run(project, spans=3, started_at=T0)
    Span.objects.filter(run=run, name="step 1").update(
        operation="chat",
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1200,
        output_tokens=80,
        cache_read_tokens=100,
        reasoning_tokens=20,
        cost_usd=Decimal("0.00042"),
        attributes={"gen_ai.request.model": "gpt-4o-mini"},
        resource={"service.name": "support-triage"},
        events=[{"name": "gen_ai.choice", "attributes": {}}],
        input='[{"role": "user", "content": "hi"}]',
        input_format="messages",
        output="hello",
        output_format="text",
        output_truncated=True,
        pii={"email": 1},
        secrets_redacted=2,
    )

    response = client.get(run_url(run.trace_id), **bearer(ingest_key))

    assert response.status_code == 200
    body = response.json()
    assert body["trace_id"] == run.trace_id
    assert body["links"]["page"] == f"http://testserver/traces/{run.trace_id}/"
    assert [span["name"] for span in body["spans"]] == ["invoke_agent", "step 1", "step 2"]
    root, chat, _ = body["spans"]
    assert root["parent_span_id"] == ""
    assert chat == {
        "span_id": chat["span_id"],
        "parent_span_id": root["span_id"],
        "agent": "support-triage",
        "kind": "llm",
        "name": "step 1",
        "operation": "chat",
        "started_at": "2025-03-01T12:00:00.010000Z",
        "ended_at": "2025-03-01T12:00:00.015000Z",
        "duration_ms": 5.0,
        "status": "ok",
        "error_type": "",
        "error_message": "",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "tool_name": "",
        "tokens": {
            "input": 1200,
            "output": 80,
            "cache_read": 100,
            "cache_write": 0,
            "reasoning": 20,
        },
        "cost_usd": "0.00042000",
        "cost_known": True,
        "attributes": {"gen_ai.request.model": "gpt-4o-mini"},
        "resource": {"service.name": "support-triage"},
        "events": [{"name": "gen_ai.choice", "attributes": {}}],
        "input": '[{"role": "user", "content": "hi"}]',
        "input_format": "messages",
        "input_truncated": False,
        "output": "hello",
        "output_format": "text",
        "output_truncated": True,
        "pii": {"email": 1},
        "secrets_redacted": 2,
    }


def test_a_span_with_an_unknown_price_has_a_null_cost(client, project, ingest_key):
    run = make_run(project, spans=1)
    Span.objects.filter(run=run).update(cost_usd=None, cost_known=False)

    [span] = client.get(run_url(run.trace_id), **bearer(ingest_key)).json()["spans"]

    assert span["cost_usd"] is None
    assert span["cost_known"] is False


def test_the_trace_id_may_be_written_in_upper_case(client, project, ingest_key):
    make_run(project, trace_id="ab" * 16)

    response = client.get(run_url("AB" * 16), **bearer(ingest_key))

    assert response.json()["trace_id"] == "ab" * 16


def test_a_key_of_another_project_gets_404_not_the_run(client, project, other_key):
    run = make_run(project)

    response = client.get(run_url(run.trace_id), **bearer(other_key))

    assert response.status_code == 404
    assert response.json() == {"detail": f"No run with trace id {run.trace_id} in project globex."}


def test_an_unknown_trace_id_gets_404_with_a_clear_message(client_as, project):
    response = client_as("viewer").get(run_url("0" * 32))

    assert response.status_code == 404
    assert response.json() == {"detail": f"No run with trace id {'0' * 32}."}


def test_a_person_can_pick_the_project_of_a_trace_sent_to_two(client_as, project, other_project):
    shared = "cd" * 16
    make_run(project, trace_id=shared, started_at=T0 + timedelta(hours=1))
    make_run(other_project, make_agent(other_project), trace_id=shared, started_at=T0)
    viewer = client_as("viewer")

    assert viewer.get(run_url(shared)).json()["project"] == "acme"
    assert viewer.get(run_url(shared), {"project": "globex"}).json()["project"] == "globex"


def test_a_viewer_reads_a_run_of_any_project(client_as, other_project):
    run = make_run(other_project, make_agent(other_project))

    response = client_as("viewer").get(run_url(run.trace_id))

    assert response.status_code == 200
    assert response.json()["project"] == "globex"


def test_an_outsider_and_an_anonymous_caller_cannot_read_a_run(client, client_as, project):
    run = make_run(project)

    assert client.get(run_url(run.trace_id)).status_code == 401
    assert client_as("outsider").get(run_url(run.trace_id)).status_code == 403


def test_a_revoked_key_cannot_read_a_run(client, project, ingest_key):
    run = make_run(project)
    IngestKey.objects.get(project=project).revoke()

    assert client.get(run_url(run.trace_id), **bearer(ingest_key)).status_code == 401


# --- Query counts ----------------------------------------------------------------------------


@pytest.mark.parametrize("runs", [1, 30])
def test_listing_runs_with_a_key_takes_two_queries_however_many_runs(
    client, project, ingest_key, django_assert_num_queries, runs
):
    agent = make_agent(project)
    for i in range(runs):
        make_run(project, agent, spans=1, started_at=T0 + timedelta(seconds=i))
    client.get(RUNS, **bearer(ingest_key))  # marks the key as used (an UPDATE, once a minute)

    # The key (with its project), then one page of runs with their agents and projects.
    with django_assert_num_queries(2):
        response = client.get(RUNS, **bearer(ingest_key))

    assert len(response.json()["results"]) == runs


@pytest.mark.parametrize("runs", [1, 30])
def test_listing_runs_in_a_session_takes_four_queries_however_many_runs(
    client_as, project, django_assert_num_queries, runs
):
    for i in range(runs):
        make_run(project, spans=1, started_at=T0 + timedelta(seconds=i))
    viewer = client_as("viewer")

    # Session, user, the user's roles, then one page of runs.
    with django_assert_num_queries(4):
        response = viewer.get(RUNS)

    assert len(response.json()["results"]) == runs


@pytest.mark.parametrize("spans", [1, 40])
def test_reading_a_run_takes_three_queries_however_many_spans(
    client, project, ingest_key, django_assert_num_queries, spans
):
    run = make_run(project, spans=spans)
    client.get(RUNS, **bearer(ingest_key))  # marks the key as used

    # The key, the run (with agent and project), its spans (with their agents).
    with django_assert_num_queries(3):
        response = client.get(run_url(run.trace_id), **bearer(ingest_key))

    assert len(response.json()["spans"]) == spans
