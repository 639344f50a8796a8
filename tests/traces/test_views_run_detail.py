import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces.models import Span
from traces.views import tree_order

pytestmark = pytest.mark.django_db


def url(run):
    return reverse("run-detail", args=[run.trace_id])


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


def test_it_lists_spans_in_tree_order_with_their_depth(client_as, project):
    run = make_run(project, spans=3)
    root, first, second = run.spans.order_by("started_at")
    # A grandchild that started before its uncle: tree order puts it under its parent.
    Span.objects.create(
        project=project,
        run=run,
        trace_id=run.trace_id,
        span_id="ffffffffffffff01",
        parent_span_id=first.span_id,
        kind="tool",
        name="lookup_order",
        tool_name="lookup_order",
        started_at=first.started_at + timedelta(milliseconds=1),
        ended_at=first.ended_at,
    )

    response = client_as("viewer").get(url(run))

    spans = response.context["spans"]
    assert [(s.name, s.depth) for s in spans] == [
        ("invoke_agent", 0),
        ("step 1", 1),
        ("lookup_order", 2),
        ("step 2", 1),
    ]
    html = response.content.decode()
    assert '<span class="badge kind">tool</span> lookup_order' in html
    assert 'style="--depth: 2"' in html


def test_content_is_shown_escaped_and_cuts_are_noted(client_as, project):
    run = make_run(project, spans=2)
    step = run.spans.get(parent_span_id__gt="")
    step.kind = "llm"
    step.model = "gpt-4o"
    step.provider = "openai"
    step.input = json.dumps([{"role": "user", "content": "<script>alert(1)</script>"}])
    step.input_format = "messages"
    step.output = "x" * 300
    step.output_truncated = True
    step.error_type = "ToolError"
    step.error_message = "<img src=x onerror=alert(1)>"
    step.save()

    html = client_as("viewer").get(url(run)).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x onerror" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&quot;role&quot;: &quot;user&quot;" in html  # messages are indented JSON
    assert "cut at 300 characters" in html
    assert "<details>" in html
    assert "gpt-4o" in html


def test_hostile_span_names_are_escaped(client_as, project):
    run = make_run(project, spans=1, name='<a href="javascript:alert(1)">click</a>')
    run.spans.update(name="<svg onload=alert(1)>", tool_name="javascript:alert(1)")

    html = client_as("viewer").get(url(run)).content.decode()

    assert '<a href="javascript:alert(1)">' not in html
    assert "&lt;a href=&quot;javascript:alert(1)&quot;&gt;click&lt;/a&gt;" in html
    assert "<svg onload" not in html
    assert 'href="javascript:' not in html


def test_an_unpriced_span_is_marked_unknown(client_as, project):
    run = make_run(project, spans=2, cost_known=False)
    run.spans.filter(parent_span_id__gt="").update(
        kind="llm", model="mystery-1", cost_usd=None, cost_known=False
    )

    html = client_as("viewer").get(url(run)).content.decode()

    assert html.count(">unknown</span>") >= 2  # the run's cost tile and the span


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
