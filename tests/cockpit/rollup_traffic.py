"""Random agent traffic stored through the real ingest path, and the brute-force truth the
rollups must agree with, computed straight from the stored runs and spans."""

import itertools
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cockpit import histogram
from cockpit.rollups import is_transient_error
from traces.ingest import ingest_batch
from traces.models import Run, Span
from traces.normalise import NormalisedBatch, SpanRecord

# Two minutes before an hour, two days ago: traffic from T0 crosses an hour boundary, and is
# young enough for span retention.
T0 = (datetime.now(UTC) - timedelta(days=2)).replace(minute=58, second=0, microsecond=0)
MODELS = [
    ("openai", "gpt-4o-mini", True),
    ("anthropic", "claude-x", True),
    ("acme", "house", False),
]
ERRORS = ["TimeoutError", "rate_limit_exceeded", "http.503", "ValueError", "NotFound", ""]
_ids = itertools.count(1)


def span_id() -> str:
    return f"{next(_ids):016x}"


def record(trace_id, parent, kind, started, ms, agent, **fields) -> SpanRecord:
    return SpanRecord(
        trace_id=trace_id,
        span_id=fields.pop("span_id", None) or span_id(),
        parent_span_id=parent,
        name=fields.pop("name", kind),
        kind=kind,
        operation="",
        started_at=started,
        ended_at=started + timedelta(milliseconds=ms),
        duration_ms=ms,
        status=fields.pop("status", "ok"),
        agent_name=agent,
        **fields,
    )


def random_run(rng: random.Random, agent: str, started: datetime) -> list[SpanRecord]:
    """An agent root span with LLM and tool steps, some failing, with run hints."""
    trace_id = f"{rng.getrandbits(128):032x}"
    root = span_id()
    duration = rng.lognormvariate(7, 1)  # ms, median ~1.1 s
    hints = {
        "agent_version": rng.choice(["1.0", "1.1"]),
        "team": rng.choice(["payments", ""]),
        "task_type": rng.choice(["refund", "triage", ""]),
        "environment": "prod",
        "outcome": rng.choice(["", "", "", "success", "failure", "escalated", "abandoned"]),
    }
    root_status = "error" if rng.random() < 0.1 else "ok"
    spans = [record(trace_id, "", "agent", started, duration, agent, span_id=root,
                    status=root_status, **hints)]  # fmt: skip
    for step in range(rng.randint(1, 6)):
        at = started + timedelta(milliseconds=step * duration / 8)
        ms = rng.lognormvariate(5, 1)
        failing = rng.random() < 0.15
        error = {"status": "error", "error_type": rng.choice(ERRORS)} if failing else {}
        if rng.random() < 0.6:
            provider, model, priced = rng.choice(MODELS)
            tokens = {"input_tokens": rng.randint(10, 3000), "output_tokens": rng.randint(1, 500),
                      "cache_read_tokens": rng.randint(0, 5), "cache_write_tokens": rng.randint(0, 3)}  # fmt: skip
            cost = Decimal(rng.randint(1, 99_999)) / Decimal(10**8) if priced else None
            spans.append(record(trace_id, root, "llm", at, ms, agent, provider=provider,
                                model=model, cost_usd=cost, cost_known=priced, **tokens, **error))  # fmt: skip
        else:
            spans.append(record(trace_id, root, "tool", at, ms, agent, tool_name="lookup", **error))
    return spans


def traffic(rng, *, agents=("refunds", "triage"), runs=120, minutes=4, start=T0):
    """Runs spread over `minutes` minutes from `start`, for each agent."""
    out = []
    for agent in agents:
        for _ in range(runs):
            at = start + timedelta(seconds=rng.uniform(0, minutes * 60 - 0.001))
            out.extend(random_run(rng, agent, at))
    return out


def ingest(project, spans, batch=200):
    spans = list(spans)
    for i in range(0, len(spans), batch):
        ingest_batch(project, NormalisedBatch(spans=spans[i : i + batch]))


def floor_minute(moment):
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


def result_of(run) -> str:
    if run.outcome:
        return run.outcome
    return {"ok": "success", "error": "failure"}.get(run.status, "unknown")


def truth_by_minute(dim_kind="", dim_value=None):
    """{(agent id, minute): expected counters} straight from stored runs and spans."""
    out = defaultdict(lambda: defaultdict(lambda: 0))
    runs = {r.pk: r for r in Run.objects.select_related("agent")}
    spans_by_run = defaultdict(list)
    for span in Span.objects.all():
        spans_by_run[span.run_id].append(span)
    for run in runs.values():
        key = (run.agent_id, floor_minute(run.started_at))
        row = out[key]
        row["runs"] += 1
        row[result_of(run)] += 1
        row["error_runs"] += run.status == "error"
        for name in ("llm_calls", "tool_calls", "input_tokens", "output_tokens",
                     "cache_read_tokens", "cache_write_tokens"):  # fmt: skip
            row[name] += getattr(run, name)
        row["cost_usd"] += run.cost_usd
        row["cost_unknown_runs"] += not run.cost_known
        for span in spans_by_run[run.pk]:
            if span.status == "error":
                row["error_spans"] += 1
                row[f"error:{span.error_type}"] += 1
                if span.kind == "tool":
                    kind = "transient" if is_transient_error(span.error_type) else "permanent"
                    row[f"tool_{kind}"] += 1
    return out


def exact_quantile(values, q):
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def assert_close(estimate, exact):
    assert estimate is not None
    if exact == 0:
        assert estimate == 0
    else:
        assert abs(estimate - exact) / exact <= histogram.RELATIVE_ERROR + 1e-9, (estimate, exact)
