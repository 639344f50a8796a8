"""Runs with spans written in bulk for the degradation tests, and demo runs through ingest."""

from __future__ import annotations

import itertools
import random
from datetime import datetime, timedelta
from decimal import Decimal

from cockpit import run_profiles
from tests.traces.payloads import export_request, make_span
from traces.ingest import ingest_batch
from traces.models import Run, Span
from traces.normalise import normalise_request

_numbers = itertools.count(1)


def _value(spec, i: int, rng: random.Random):
    return spec(i, rng) if callable(spec) else spec


def add_runs(
    project,
    agent,
    n: int,
    *,
    start: datetime,
    spacing: timedelta = timedelta(seconds=30),
    version: str = "1.0",
    success=True,
    duration_ms=1000.0,
    cost="0.0100",
    steps=2,
    tools=("search_kb",),
    traits=None,
    error=None,
    outcome=None,
    output_chars=200,
    pii=None,
    seed: int = 1,
) -> list[Run]:
    """n finished runs of `agent`, spaced from `start`, each with a root span, `steps` LLM
    and tool span pairs, and their profiles. Every keyword may be a value or a function of
    (index, rng). error: (error type, span name, message) makes the run fail with an error
    span; success False without error makes it fail quietly (outcome failure)."""
    rng = random.Random(seed)
    runs, plan = [], []
    for i in range(n):
        number = next(_numbers)
        ok = _value(success, i, rng)
        failure = _value(error, i, rng) if not ok else None
        run_outcome = _value(outcome, i, rng) or ("success" if ok else "failure")
        started = start + i * spacing
        duration = float(_value(duration_ms, i, rng))
        run = Run(
            project=project,
            agent=agent,
            trace_id=f"{0xDE6 << 96 | number:032x}",
            name=f"invoke_agent {agent.name}",
            version=_value(version, i, rng),
            status="error" if failure else "ok",
            outcome=run_outcome,
            started_at=started,
            ended_at=started + timedelta(milliseconds=duration),
            duration_ms=duration,
            cost_usd=Decimal(str(_value(cost, i, rng))),
            input_tokens=400,
            output_tokens=100,
            updated_at=started,
        )
        runs.append(run)
        plan.append(
            (_value(steps, i, rng), failure, _value(traits, i, rng) or {}, _value(pii, i, rng))
        )
    Run.objects.bulk_create(runs)
    spans = []
    for run, (step_count, failure, run_traits, run_pii) in zip(runs, plan, strict=True):
        root_id = f"{run.pk:016x}"

        def span(index, run=run, root_id=root_id, **fields):
            moment = run.started_at + timedelta(milliseconds=index)
            defaults = {
                "project": project,
                "run": run,
                "agent": agent,
                "trace_id": run.trace_id,
                "span_id": f"{run.pk:08x}{index:08x}",
                "parent_span_id": root_id,
                "started_at": moment,
                "ended_at": moment,
                "status": "ok",
            }
            return Span(**{**defaults, **fields})

        spans.append(
            span(
                0,
                span_id=root_id,
                parent_span_id="",
                kind="agent",
                name=run.name,
                attributes=run_traits,
                status="error" if failure else "ok",
                error_type=failure[0] if failure else "",
                output="x" * _value(output_chars, 0, rng),
            )
        )
        count = 1
        for step in range(step_count):
            tool = tools[step % len(tools)]
            spans.append(span(count, kind="llm", name="chat gpt-4o", model="gpt-4o"))
            spans.append(span(count + 1, kind="tool", name=f"execute_tool {tool}", tool_name=tool))
            count += 2
        if failure:
            error_type, name, message = failure
            spans.append(
                span(
                    count,
                    kind="tool",
                    name=name,
                    tool_name=name.split()[-1],
                    status="error",
                    error_type=error_type,
                    error_message=message,
                )
            )
        if run_pii:
            text, found = run_pii
            spans.append(span(count + 1, kind="llm", name="chat", input=text, pii=found))
        run.span_count = sum(1 for s in spans if s.run is run)
        run.llm_calls = sum(1 for s in spans if s.run is run and s.kind == "llm")
        run.tool_calls = sum(1 for s in spans if s.run is run and s.kind == "tool")
    Span.objects.bulk_create(spans)
    Run.objects.bulk_update(runs, ["span_count", "llm_calls", "tool_calls"])
    run_profiles.profile_runs([run.pk for run in runs])
    return runs


def ingest_sim(project, version: str, runs, *, agent: str, rng) -> list[str]:
    """Send simulated demo runs [(traces.demo.SimSpan root, started at)] of one agent version
    through normalise and ingest, in one batch, as if each had started when it says. Returns
    their trace ids."""
    spans, trace_ids = [], []

    def walk(sim, trace_id: str, parent: str, origin: int):
        span_id = f"{rng.getrandbits(64) or 1:016x}"
        spans.append(
            make_span(
                trace_id=trace_id,
                span_id=span_id,
                parent_span_id=parent,
                name=sim.name,
                start_ns=origin + int(sim.start_ms * 1e6),
                duration_ms=sim.duration_ms,
                attributes=sim.attributes,
                events=sim.events,
                status_code=2 if sim.error_type else 0,
                status_message=sim.error_message or sim.error_type,
            )
        )
        for child in sim.children:
            walk(child, trace_id, span_id, origin)

    for root, at in runs:
        trace_id = f"{rng.getrandbits(128):032x}"
        trace_ids.append(trace_id)
        walk(root, trace_id, "", int(at.timestamp() * 1e9))
    request = export_request({"service.name": agent, "service.version": version}, spans)
    ingest_batch(project, normalise_request(request))
    return trace_ids
