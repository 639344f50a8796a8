"""Two runs side by side: steps aligned, differences highlighted."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from tests.factories import make_agent, make_run
from traces.models import Span

pytestmark = pytest.mark.django_db


def add_tool(run, span_id, tool, offset_ms, duration_ms=10, status="ok"):
    root = run.spans.order_by("started_at").first()
    started = run.started_at + timedelta(milliseconds=offset_ms)
    return Span.objects.create(
        project=run.project,
        run=run,
        trace_id=run.trace_id,
        span_id=span_id,
        parent_span_id=root.span_id,
        kind="tool",
        name=f"execute_tool {tool}",
        tool_name=tool,
        started_at=started,
        ended_at=started + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        status=status,
    )


@pytest.fixture
def before_and_after(project):
    agent = make_agent(project)
    a = make_run(
        project, agent, spans=1, version="1.0", outcome="success", cost_usd=Decimal("0.01")
    )
    b = make_run(
        project, agent, spans=1, version="1.1", outcome="failure", cost_usd=Decimal("0.05")
    )
    add_tool(a, "a000000000000001", "lookup_order", 10)
    add_tool(a, "a000000000000002", "refund", 30)
    add_tool(b, "b000000000000001", "lookup_order", 10, duration_ms=900)
    add_tool(b, "b000000000000002", "escalate", 30, status="error")
    return a, b


def compare(client, a, b):
    return client.get(reverse("run-compare"), {"a": a.trace_id, "b": b.trace_id})


def test_steps_are_aligned_by_kind_and_tool(client_as, before_and_after):
    a, b = before_and_after

    response = compare(client_as("viewer"), a, b)

    assert response.status_code == 200
    pairs = [
        (p["change"], p["a"] and p["a"].tool_name, p["b"] and p["b"].tool_name)
        for p in response.context["pairs"]
    ]
    assert pairs == [
        ("same", "", ""),  # the agent roots
        ("same", "lookup_order", "lookup_order"),
        ("changed", "refund", "escalate"),
    ]
    slow = response.context["pairs"][1]
    assert slow["slower"] and not slow["faster"]


def test_differences_in_outcome_cost_and_tools_are_highlighted(client_as, before_and_after):
    a, b = before_and_after

    response = compare(client_as("viewer"), a, b)

    summary = {row["label"]: row for row in response.context["summary"]}
    assert summary["Outcome"]["changed"] and (summary["Outcome"]["a"], summary["Outcome"]["b"]) == (
        "success",
        "failure",
    )
    assert summary["Cost"]["changed"]
    assert not summary["Steps (spans)"]["changed"]
    tools = {t["tool"]: (t["a"], t["b"]) for t in response.context["tools"]}
    assert tools == {"escalate": (0, 1), "lookup_order": (1, 1), "refund": (1, 0)}
    html = response.content.decode()
    assert html.count('class="changed"') >= 3
    assert "status changed" in html
    assert ">new</span>" in html and ">gone</span>" in html


def test_without_two_trace_ids_it_asks_for_them(client_as):
    response = client_as("viewer").get(reverse("run-compare"), {"a": "ab" * 16})

    assert response.status_code == 200
    assert "Pick two runs" in response.content.decode()


def test_a_malformed_or_unknown_trace_id_is_refused(client_as, before_and_after):
    a, _ = before_and_after
    client = client_as("viewer")

    assert client.get(reverse("run-compare"), {"a": a.trace_id, "b": "<x>"}).status_code == 400
    assert client.get(reverse("run-compare"), {"a": a.trace_id, "b": "f" * 32}).status_code == 404


def test_the_run_page_offers_the_previous_run_of_the_agent(client_as, before_and_after):
    a, b = before_and_after

    html = client_as("viewer").get(reverse("run-detail", args=[b.trace_id])).content.decode()

    assert f"?a={a.trace_id}&amp;b={b.trace_id}" in html
    assert "Compare with previous run" in html


def test_compare_query_count_is_fixed(client_as, before_and_after, django_assert_num_queries):
    a, b = before_and_after
    client = client_as("viewer")
    # session, user, roles, run a, run b, spans a, spans b
    with django_assert_num_queries(7):
        compare(client, a, b)
