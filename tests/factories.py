"""Small builders for runs and spans stored directly, for tests that do not exercise ingest."""

import itertools
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from traces.models import Agent, Run, Span

_ids = itertools.count(1)


def make_agent(project, name="support-triage", **fields) -> Agent:
    agent, _ = Agent.objects.get_or_create(project=project, name=name, defaults=fields)
    return agent


def make_run(project, agent=None, *, spans=3, started_at=None, status="ok", **fields) -> Run:
    """A run with `spans` spans: one agent root span and llm/tool children."""
    n = next(_ids)
    agent = agent or make_agent(project)
    started_at = started_at or timezone.now() - timedelta(minutes=5)
    trace_id = fields.pop("trace_id", f"{n:032x}")
    duration_ms = fields.pop("duration_ms", 1500.0)
    run = Run.objects.create(
        project=project,
        agent=agent,
        trace_id=trace_id,
        name=fields.pop("name", "handle ticket"),
        started_at=started_at,
        ended_at=started_at + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        status=status,
        span_count=spans,
        cost_usd=fields.pop("cost_usd", Decimal("0.0123")),
        **fields,
    )
    kinds = ["agent"] + ["llm", "tool"] * spans
    for i in range(spans):
        Span.objects.create(
            project=project,
            run=run,
            agent=agent,
            trace_id=trace_id,
            span_id=f"{n:08x}{i:08x}",
            parent_span_id="" if i == 0 else f"{n:08x}{0:08x}",
            kind=kinds[i],
            name="invoke_agent" if i == 0 else f"step {i}",
            started_at=started_at + timedelta(milliseconds=10 * i),
            ended_at=started_at + timedelta(milliseconds=10 * i + 5),
            duration_ms=5,
            status="error" if status == "error" and i == spans - 1 else "ok",
        )
    return run
