"""Scores: POST /api/v1/scores, cockpit.score.<name> span attributes at ingest, linking scores
that beat their run, daily rollups per agent and version, score SLOs, and scores on runs."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.urls import reverse

from cockpit import scores
from cockpit.models import AlertEvent, Score, ScoreDaily, Slo
from cockpit.slo import evaluate_slos, slo_status
from tests.factories import make_agent, make_run
from tests.traces.payloads import export_request, make_span, new_trace_id
from traces.ingest import ingest_batch
from traces.normalise import normalise_request

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def post(client, key, data):
    return client.post(
        reverse("api-scores"), data, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )  # fmt: skip


@pytest.fixture
def run(project):
    return make_run(project, version="1.2.0")


# --- The API -------------------------------------------------------------------------------------


def test_a_numeric_score_for_a_trace_is_stored_on_its_run(client, run, ingest_key):
    response = post(
        client,
        ingest_key,
        {"trace_id": run.trace_id, "name": "helpfulness", "value": 0.8,
         "source": "user_feedback", "comment": "Solved it"},
    )  # fmt: skip

    assert response.status_code == 201
    body = response.json()
    assert (body["kind"], body["value"], body["pending"], body["run_id"]) == (
        "numeric", 0.8, False, run.pk,
    )  # fmt: skip
    score = Score.objects.get()
    assert (score.run, score.agent, score.version) == (run, run.agent, "1.2.0")
    assert (score.source, score.comment) == ("user_feedback", "Solved it")


def test_boolean_and_categorical_values_get_their_kind(client, run, ingest_key):
    flag = post(client, ingest_key, {"run_id": run.pk, "name": "resolved", "value": True})
    label = post(client, ingest_key, {"run_id": run.pk, "name": "tone", "value": "curt"})

    assert (flag.status_code, flag.json()["kind"], flag.json()["value"]) == (201, "boolean", True)
    assert (label.json()["kind"], label.json()["value"]) == ("categorical", "curt")
    assert Score.objects.get(name="resolved").as_number == 1.0


def test_a_trace_that_has_not_arrived_is_accepted_as_pending(client, project, ingest_key):
    trace_id = new_trace_id()

    response = post(client, ingest_key, {"trace_id": trace_id.upper(), "name": "csat", "value": 4})

    assert response.status_code == 202
    assert response.json()["pending"] is True
    assert Score.objects.get().trace_id == trace_id


def test_an_unknown_run_id_is_not_found(client, project, ingest_key):
    response = post(client, ingest_key, {"run_id": 999_999, "name": "csat", "value": 4})

    assert response.status_code == 404


def test_another_projects_run_id_is_not_found(client, run, other_key):
    response = post(client, other_key, {"run_id": run.pk, "name": "csat", "value": 4})

    assert response.status_code == 404
    assert not Score.objects.exists()


@pytest.mark.parametrize(
    "body, field",
    [
        ({"name": "csat", "value": 4}, "trace_id"),
        ({"trace_id": "not-hex", "name": "csat", "value": 4}, "trace_id"),
        ({"trace_id": "a" * 32, "name": "has space", "value": 4}, "name"),
        ({"trace_id": "a" * 32, "name": "csat", "value": [1, 2]}, "value"),
        ({"trace_id": "a" * 32, "name": "csat", "value": None}, "value"),
        ({"trace_id": "a" * 32, "name": "csat", "value": 4, "kind": "boolean"}, "kind"),
        ({"trace_id": "a" * 32, "name": "csat", "value": 4, "source": "vibes"}, "source"),
    ],
)
def test_a_bad_field_answers_400_naming_it(client, project, ingest_key, body, field):
    response = post(client, ingest_key, body)

    assert response.status_code == 400
    assert field in response.json()


def test_scores_need_a_project_key(client, client_as, run):
    anonymous = client.post(reverse("api-scores"), {}, content_type="application/json")
    person = client_as("operator").post(
        reverse("api-scores"),
        {"run_id": run.pk, "name": "csat", "value": 4},
        content_type="application/json",
    )

    assert anonymous.status_code == 401
    assert person.status_code == 403


def test_the_scores_api_is_in_the_openapi_schema(client_as):
    schema = client_as("viewer").get("/api/schema/", {"format": "json"}).json()

    operation = schema["paths"]["/api/v1/scores"]["post"]
    assert {"201", "202", "400", "404"} <= set(operation["responses"])


# --- Span attributes -------------------------------------------------------------------------


def _ingest(project, trace_id, attributes):
    root = make_span(trace_id=trace_id, name="invoke_agent support", attributes=attributes)
    request = export_request({"service.name": "support", "service.version": "3.0"}, [root])
    return ingest_batch(project, normalise_request(request))


def test_score_attributes_on_spans_are_stored_once_however_often_the_span_arrives(project):
    trace_id = new_trace_id()
    attributes = {
        "cockpit.score.helpfulness": 0.9,
        "cockpit.score.resolved": False,
        "cockpit.score.tone": "warm",
        "cockpit.score.bad name": 1,
    }

    _ingest(project, trace_id, attributes)
    _ingest(project, trace_id, attributes)

    stored = {s.name: (s.kind, s.display_value, s.version) for s in Score.objects.all()}
    assert stored == {
        "helpfulness": ("numeric", "0.9", "3.0"),
        "resolved": ("boolean", "no", "3.0"),
        "tone": ("categorical", "warm", "3.0"),
    }
    assert all(s.span_id and s.run.trace_id == trace_id for s in Score.objects.all())


def test_spans_without_scores_do_not_touch_the_score_store(project):
    with mock.patch("traces.ingest.store_span_scores") as store:
        _ingest(project, new_trace_id(), {"gen_ai.agent.name": "support"})

    store.assert_not_called()


def test_normalise_keeps_score_attributes_visible_on_the_span(project):
    trace_id = new_trace_id()
    _ingest(project, trace_id, {"cockpit.score.helpfulness": 0.5})

    span = Score.objects.get().run.spans.get()
    assert span.attributes["cockpit.score.helpfulness"] == 0.5


# --- Linking and rollups ----------------------------------------------------------------------


def test_a_pending_score_is_linked_when_its_run_arrives(client, project, ingest_key):
    trace_id = new_trace_id()
    post(client, ingest_key, {"trace_id": trace_id, "name": "csat", "value": 5})
    run = make_run(project, trace_id=trace_id, version="2.0")

    assert scores.link_pending() == 1

    score = Score.objects.get()
    assert (score.run, score.version, score.run_started_at) == (run, "2.0", run.started_at)


def _score(run, name, value, kind="numeric"):
    fields = scores.value_fields(kind, value)
    return Score.objects.create(
        project=run.project, run=run, trace_id=run.trace_id, agent=run.agent,
        version=run.version, run_started_at=run.started_at, name=name, kind=kind,
        created_at=run.started_at, updated_at=run.started_at, **fields,
    )  # fmt: skip


def test_the_rollup_pass_sums_scores_per_agent_version_and_day(project):
    agent = make_agent(project)
    day = NOW - timedelta(hours=2)
    for version, values in (("1.0", [0.6, 0.8]), ("1.1", [1.0])):
        for value in values:
            _score(make_run(project, agent, started_at=day, version=version), "helpfulness", value)
    _score(make_run(project, agent, started_at=day, version="1.1"), "resolved", True, "boolean")
    _score(make_run(project, agent, started_at=day, version="1.1"), "tone", "warm", "categorical")

    assert scores.rollup_pass(now=NOW + timedelta(minutes=1)) == 1

    rows = {(r.name, r.version): r for r in ScoreDaily.objects.all()}
    assert rows[("helpfulness", "1.0")].mean == pytest.approx(0.7)
    assert rows[("helpfulness", "1.0")].count == 2
    assert rows[("resolved", "1.1")].mean == 1.0
    assert rows[("tone", "1.1")].categories == {"warm": 1}
    means = scores.version_means(agent.pk, since=day - timedelta(days=1), until=NOW)
    assert {(m["name"], m["version"]): m["mean"] for m in means}[("helpfulness", "1.1")] == 1.0


def test_a_burst_of_scores_stamped_at_one_instant_never_stalls_the_rollup(project, monkeypatch):
    monkeypatch.setattr(scores, "ROLLUP_BATCH", 2)
    agent = make_agent(project)
    for days_ago in (1, 2, 3):
        run = make_run(project, agent, started_at=NOW - timedelta(days=days_ago))
        _score(run, "helpfulness", 0.5)
    Score.objects.update(updated_at=NOW - timedelta(hours=1))  # one ingest batch, one stamp

    assert scores.rollup_pass(now=NOW) == 3  # every score of the burst, past the batch size
    assert ScoreDaily.objects.count() == 3


def test_a_second_rollup_pass_with_nothing_new_rebuilds_nothing(project):
    run = make_run(project, started_at=NOW - timedelta(hours=1))
    _score(run, "helpfulness", 0.5)
    scores.rollup_pass(now=NOW)

    assert scores.rollup_pass(now=NOW + timedelta(minutes=1)) == 0
    assert ScoreDaily.objects.count() == 1


# --- Score SLOs --------------------------------------------------------------------------------


@pytest.fixture
def helpfulness_slo(project):
    agent = make_agent(project)
    return Slo.objects.create(
        agent=agent, kind=Slo.Kind.SCORE_MEAN, score_name="helpfulness", target=0.8, window_days=7
    )


def _scores_over(agent, project, values, *, ago):
    for value in values:
        _score(make_run(project, agent, started_at=NOW - ago), "helpfulness", value)


def test_a_score_slo_reads_the_mean_score_as_its_compliance(helpfulness_slo, project):
    _scores_over(helpfulness_slo.agent, project, [0.9, 0.7, 0.5, 1.0], ago=timedelta(days=2))

    (status,) = slo_status(helpfulness_slo.agent, now=NOW)

    assert status.compliance == pytest.approx(0.775)
    assert status.met is False
    assert status.runs == 4
    assert helpfulness_slo.describe() == "mean helpfulness ≥ 0.8 over 7 d"


def test_a_score_slo_burns_at_one_minus_the_mean_over_its_budget(helpfulness_slo, project):
    _scores_over(helpfulness_slo.agent, project, [0.1] * 20, ago=timedelta(minutes=3))

    with mock.patch("cockpit.webhooks.notify"):
        result = evaluate_slos(now=NOW)

    # Mean 0.1 against a target of 0.8: burn (1 − 0.1) / (1 − 0.8) = 4.5 in every window,
    # below both rules' rates (6 and 14.4): no alert.
    (status,) = slo_status(helpfulness_slo.agent, now=NOW)
    assert status.burn_rates["1h"] == pytest.approx(4.5)
    assert status.burn_rates["5m"] == pytest.approx(4.5)
    assert result["opened"] == 0


def test_a_score_slo_with_a_tight_target_pages_on_a_bad_hour(project):
    agent = make_agent(project)
    slo = Slo.objects.create(
        agent=agent, kind=Slo.Kind.SCORE_MEAN, score_name="helpfulness", target=0.98
    )
    _scores_over(agent, project, [0.5] * 30, ago=timedelta(minutes=2))

    with mock.patch("cockpit.webhooks.notify"):
        evaluate_slos(now=NOW)

    # Burn (1 − 0.5) / 0.02 = 25 in every window: past 14.4 and 6.
    kinds = set(AlertEvent.objects.filter(slo=slo).values_list("kind", flat=True))
    assert kinds == {AlertEvent.Kind.SLO_FAST_BURN, AlertEvent.Kind.SLO_SLOW_BURN}


# --- Scores on the run page ----------------------------------------------------------------


def test_the_run_page_loads_the_runs_scores_escaped(client_as, run):
    _score(run, "helpfulness", 0.25)
    _score(run, "tone", "<b>rude</b>", "categorical")
    viewer = client_as("viewer")

    page = viewer.get(reverse("run-detail", args=[run.trace_id])).content.decode()
    fragment = viewer.get(reverse("run-scores", args=[run.pk])).content.decode()

    assert f'hx-get="{reverse("run-scores", args=[run.pk])}"' in page
    assert 'id="run-scores"' in fragment and "helpfulness" in fragment and "0.25" in fragment
    assert "&lt;b&gt;rude&lt;/b&gt;" in fragment and "<b>rude</b>" not in fragment


def test_the_agent_page_loads_mean_scores_per_version(client_as, project):
    run = make_run(project, started_at=NOW, version="1.4")
    _score(run, "helpfulness", 0.75)
    scores.rollup_pass(now=NOW + timedelta(minutes=1))
    viewer = client_as("viewer")

    page = viewer.get(reverse("agent", args=[run.agent.name])).content.decode()
    fragment = viewer.get(reverse("agent-quality", args=[run.agent.pk])).content.decode()

    assert f'hx-get="{reverse("agent-quality", args=[run.agent.pk])}"' in page
    assert "helpfulness" in fragment and "1.4" in fragment and "0.750" in fragment


def test_score_fragments_need_a_role(client_as, run):
    outsider = client_as("outsider")

    assert outsider.get(reverse("run-scores", args=[run.pk])).status_code == 403
    assert outsider.get(reverse("agent-quality", args=[run.agent.pk])).status_code == 403
