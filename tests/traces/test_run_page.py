"""The run page: header, span tree beside the waterfall, span details, live refresh and rows."""

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces import run_views
from traces.models import Run, Span
from traces.run_views import tree_order

pytestmark = pytest.mark.django_db


def url(run, **query):
    path = reverse("run-detail", args=[run.trace_id])
    return path + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def add_span(run, span_id, parent="", *, offset_ms=0, duration_ms=5, **fields):
    started = run.started_at + timedelta(milliseconds=offset_ms)
    return Span.objects.create(
        project=run.project,
        run=run,
        agent=run.agent,
        trace_id=run.trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=fields.pop("name", span_id),
        kind=fields.pop("kind", "tool"),
        started_at=started,
        ended_at=started + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        **fields,
    )


def test_it_shows_the_run_header(client_as, project):
    agent = make_agent(project, "support-triage")
    run = make_run(
        project,
        agent,
        name="refund order 1234",
        version="2.1.0",
        outcome="success",
        user_id="customer-42",
        conversation_id="conv-9",
        input_tokens=1500,
        output_tokens=20,
        duration_ms=850,
    )

    response = client_as("viewer").get(url(run))

    assert response.status_code == 200
    html = response.content.decode()
    for text in ["refund order 1234", "support-triage", "2.1.0", "customer-42", "conv-9"]:
        assert text in html
    assert '<span class="badge success">success</span>' in html
    assert "850 ms" in html
    assert "1,520" in html
    assert "$0.0123" in html


def test_the_header_links_the_conversation_and_its_other_runs(client_as, project):
    agent = make_agent(project)
    earlier = make_run(project, agent, conversation_id="conv-7", name="first turn")
    run = make_run(project, agent, conversation_id="conv-7", started_at=timezone.now())

    html = client_as("viewer").get(url(run)).content.decode()

    assert reverse("conversation-detail", args=["conv-7"]) in html
    assert reverse("run-detail", args=[earlier.trace_id]) in html


def test_it_lists_spans_in_tree_order_with_their_depth(client_as, project):
    run = make_run(project, spans=3)
    root, first, second = run.spans.order_by("started_at")
    # A grandchild that started before its uncle: tree order puts it under its parent.
    add_span(run, "ffffffffffffff01", first.span_id, offset_ms=11, name="lookup_order")

    response = client_as("viewer").get(url(run))

    rows = response.context["rows"]
    assert [(s.name, s.depth) for s in rows] == [
        ("invoke_agent", 0),
        ("step 1", 1),
        ("lookup_order", 2),
        ("step 2", 1),
    ]
    html = response.content.decode()
    assert 'id="row-ffffffffffffff01"' in html
    assert 'aria-level="3"' in html
    assert 'style="--depth: 2"' in html


def test_waterfall_bars_are_placed_by_start_offset(client_as, project):
    run = make_run(project, spans=1, duration_ms=1000)
    add_span(run, "00000000000000aa", run.spans.get().span_id, offset_ms=250, duration_ms=500)

    rows = client_as("viewer").get(url(run)).context["rows"]

    child = rows[1]
    assert (child.bar_start, child.bar_width) == ("25.000", "50.000")


def test_the_tree_does_not_load_span_content(client_as, project, django_assert_num_queries):
    run = make_run(project, spans=2)
    run.spans.update(input="x" * 5000, attributes={"big": "y" * 5000})

    with CaptureQueriesContext(connection) as queries:
        client_as("viewer").get(url(run))

    (spans_query,) = [q["sql"] for q in queries if 'FROM "traces_span"' in q["sql"]]
    columns = spans_query.split(" FROM ")[0].removeprefix("SELECT ").split(", ")
    for column in ['"input"', '"output"', '"attributes"', '"events"', '"resource"']:
        assert f'"traces_span".{column}' not in columns
    assert any('MD5("traces_span"."input")' in c for c in columns)  # a digest, not the text


def test_errors_are_highlighted_and_the_origin_is_named(client_as, project):
    run = make_run(project, spans=2, status="error")
    child = run.spans.get(parent_span_id__gt="")
    add_span(
        run, "00000000000000e1", child.span_id, status="error", error_type="Timeout", name="db"
    )

    response = client_as("viewer").get(url(run))

    assert response.context["signals"].error_origin.span_id == "00000000000000e1"
    html = response.content.decode()
    assert "Error started at" in html
    assert 'class="span-row is-error is-origin' in html


def test_big_runs_open_with_subtrees_folded_and_rows_capped(client_as, project, monkeypatch):
    monkeypatch.setattr(run_views, "ROWS_PER_BATCH", 50)
    run = make_run(project, spans=1)
    root = run.spans.get()
    for i in range(100):
        add_span(run, f"a{i:015x}", root.span_id, offset_ms=i, kind="llm")
        add_span(run, f"b{i:015x}", f"a{i:015x}", offset_ms=i)

    response = client_as("viewer").get(url(run))

    rows = response.context["rows"]
    assert len(rows) == 50
    assert rows[1].collapsed and rows[2].hidden  # each llm span folded over its tool call
    assert response.context["next_offset"] == 50
    more = client_as("viewer").get(
        reverse("run-rows", args=[run.trace_id]), {"project": project.name, "offset": 50}
    )
    assert more.status_code == 200
    assert len(more.context["rows"]) == 50
    assert more.context["rows"][0].index == 50


def test_the_path_to_an_error_stays_unfolded(client_as, project):
    run = make_run(project, spans=1)
    root = run.spans.get()
    for i in range(200):
        add_span(run, f"a{i:015x}", root.span_id, offset_ms=i, kind="llm")
        add_span(run, f"b{i:015x}", f"a{i:015x}", offset_ms=i, status="error" if i == 7 else "ok")

    rows = client_as("viewer").get(url(run)).context["rows"]

    failing = next(r for r in rows if r.span_id == f"b{7:015x}")
    assert not failing.hidden


def test_the_run_page_query_count_does_not_grow_with_spans(
    client_as, project, django_assert_num_queries
):
    small = make_run(project, spans=3, conversation_id="c1")
    big = make_run(project, spans=300, conversation_id="c2")
    client = client_as("viewer")
    # session, user, roles, run, spans, the conversation's other runs, the previous run,
    # the incidents linked to the run, the approval requests it made
    with django_assert_num_queries(9):
        assert client.get(url(small)).status_code == 200
    with django_assert_num_queries(9):
        assert client.get(url(big)).status_code == 200


def test_span_details_load_on_demand_with_a_pinned_query_count(
    client_as, project, django_assert_num_queries
):
    run = make_run(project, spans=2)
    span = run.spans.get(parent_span_id__gt="")
    span.kind, span.model, span.provider = "llm", "gpt-4o", "openai"
    span.input = json.dumps(
        [
            {"role": "system", "content": "You are helpful.", "tool_calls": [], "tool_call_id": ""},
            {"role": "user", "content": "Where is order 42?", "tool_calls": [], "tool_call_id": ""},
        ]
    )
    span.input_format = "messages"
    span.output = json.dumps(
        [
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [{"name": "lookup_order", "arguments": '{"id": 42}', "id": "c1"}],
                "tool_call_id": "",
            }
        ]
    )
    span.output_format = "messages"
    span.attributes = {"gen_ai.request.temperature": 0.2}
    span.events = [
        {
            "name": "exception",
            "offset_ms": 3,
            "attributes": {
                "exception.type": "ValueError",
                "exception.stacktrace": "Traceback (most recent call last):\n  boom",
            },
        }
    ]
    span.save()
    client = client_as("viewer")
    detail = reverse("span-detail", args=[run.trace_id, span.span_id])

    # session, user, roles, run, span
    with django_assert_num_queries(5):
        response = client.get(detail)

    html = response.content.decode()
    assert 'class="msg system"' in html and 'class="msg user"' in html
    assert "Where is order 42?" in html
    assert "lookup_order" in html and "&quot;id&quot;: 42" in html
    assert "gen_ai.request.temperature" in html
    assert "Traceback (most recent call last):" in html
    assert "gpt-4o" in html


def test_a_deep_link_to_a_span_renders_its_details_in_the_page(client_as, project):
    run = make_run(project, spans=2)
    span = run.spans.get(parent_span_id__gt="")
    span.output = "the tool said hello"
    span.save()

    html = client_as("viewer").get(url(run, span=span.span_id)).content.decode()

    assert "the tool said hello" in html


def test_cut_content_says_where_it_was_cut(client_as, project):
    run = make_run(project, spans=2)
    span = run.spans.get(parent_span_id__gt="")
    span.output = "x" * 300
    span.output_truncated = True
    span.save()

    html = (
        client_as("viewer")
        .get(reverse("span-detail", args=[run.trace_id, span.span_id]))
        .content.decode()
    )

    assert "Cut at 300 characters" in html


def test_a_missing_span_is_404(client_as, project):
    run = make_run(project, spans=1)

    response = client_as("viewer").get(reverse("span-detail", args=[run.trace_id, "f" * 16]))

    assert response.status_code == 404


def test_the_story_tab_numbers_the_steps(client_as, project):
    run = make_run(project, spans=3)

    response = client_as("viewer").get(reverse("run-story", args=[run.trace_id]))

    assert [step.number for step in response.context["steps"]] == [1, 2, 3]
    assert "Received the request" in response.content.decode()


def test_a_run_in_progress_subscribes_to_its_live_topic(client_as, project):
    run = make_run(project, spans=1, status="running", started_at=timezone.now())

    html = client_as("viewer").get(url(run)).content.decode()

    assert f'ws-connect="/ws/live/run.{run.trace_id}/"' in html
    assert 'id="run-live"' in html
    assert "every 10s[document.body.dataset.live!=='on']" in html


def test_a_finished_run_does_not_subscribe(client_as, project):
    run = make_run(project, spans=1, started_at=timezone.now() - timedelta(hours=1))

    html = client_as("viewer").get(url(run)).content.decode()

    assert "ws-connect" not in html
    assert "every 10s" not in html


def test_a_run_counts_as_live_for_two_minutes_after_its_last_span(project):
    now = timezone.now()
    run = Run(status="ok", ended_at=now - timedelta(seconds=100))

    assert run_views.is_live(run, now)
    assert not run_views.is_live(run, now + timedelta(seconds=30))


def test_the_live_fragment_carries_the_tree_out_of_band(client_as, project):
    run = make_run(project, spans=2, status="running", started_at=timezone.now())

    html = client_as("viewer").get(reverse("run-live", args=[run.trace_id])).content.decode()

    assert html.startswith('<div id="run-live"')
    assert '<div id="span-tree" hx-swap-oob="innerHTML">' in html


def test_an_unknown_trace_is_404(client_as):
    response = client_as("viewer").get(reverse("run-detail", args=["0" * 32]))

    assert response.status_code == 404


def test_the_newest_run_wins_unless_a_project_is_named(client_as, project, other_project):
    trace_id = "ab" * 16
    old = make_run(project, trace_id=trace_id, name="acme run")
    make_run(
        other_project,
        make_agent(other_project),
        trace_id=trace_id,
        name="globex run",
        started_at=timezone.now(),
    )
    client = client_as("viewer")

    newest = client.get(reverse("run-detail", args=[trace_id]))
    assert newest.context["run"].name == "globex run"
    assert "also exists in" in newest.content.decode()

    named = client.get(reverse("run-detail", args=[trace_id]), {"project": "acme"})
    assert named.context["run"] == old

    assert client.get(reverse("run-detail", args=[trace_id]), {"project": "x"}).status_code == 404


def test_a_parent_cycle_still_shows_every_span_once(project):
    run = make_run(project, spans=3)
    root, a, b = run.spans.order_by("started_at")
    a.parent_span_id, b.parent_span_id = b.span_id, a.span_id
    a.save()
    b.save()

    ordered = tree_order(list(run.spans.order_by("started_at")))

    assert sorted(span.pk for span, _ in ordered) == sorted([root.pk, a.pk, b.pk])


def test_an_unpriced_span_is_marked_unknown(client_as, project):
    run = make_run(project, spans=2, cost_known=False)
    run.spans.filter(parent_span_id__gt="").update(
        kind="llm", model="mystery-1", cost_usd=None, cost_known=False
    )

    html = client_as("viewer").get(url(run)).content.decode()

    assert html.count(">unknown</span>") >= 2  # the run's cost tile and the span


@pytest.mark.parametrize("person,status", [("viewer", 200), ("outsider", 403)])
def test_every_run_page_part_needs_the_viewer_role(client_as, project, person, status):
    run = make_run(project, spans=2)
    span = run.spans.first()
    client = client_as(person)

    for path in [
        reverse("run-live", args=[run.trace_id]),
        reverse("run-rows", args=[run.trace_id]),
        reverse("run-story", args=[run.trace_id]),
        reverse("span-detail", args=[run.trace_id, span.span_id]),
    ]:
        assert client.get(path).status_code == status, path


def test_only_a_run_without_its_root_span_is_called_in_progress(client_as, project):
    client = client_as("viewer")
    running = make_run(project, status=Run.Status.RUNNING, started_at=timezone.now())
    finished = make_run(project, status=Run.Status.OK, started_at=timezone.now())

    page = client.get(reverse("run-detail", args=[running.trace_id])).content.decode()
    assert "in progress" in page

    page = client.get(reverse("run-detail", args=[finished.trace_id])).content.decode()
    assert "in progress" not in page
    assert "just finished" in page
