"""The span store: idempotent, order-independent run summaries, on PostgreSQL and on SQLite."""

import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from traces.ingest import ingest_batch, summarise_run
from traces.models import Agent, ReleaseMarker, Run, Span, UnpricedModel
from traces.normalise import NormalisedBatch, SpanRecord

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT = "b7ad6b7169203331"


def record(span_id, *, trace_id=TRACE, parent=ROOT, kind="other", at=0.0, ms=100.0, **fields):
    started = T0 + timedelta(seconds=at)
    defaults = {"agent_name": "refunds", "agent_version": "1.0.0"}
    return SpanRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=fields.pop("name", f"{kind} {span_id}"),
        kind=kind,
        operation=fields.pop("operation", ""),
        started_at=started,
        ended_at=started + timedelta(milliseconds=ms),
        duration_ms=ms,
        status=fields.pop("status", "unset"),
        **{**defaults, **fields},
    )


def a_run(trace_id=TRACE):
    """Root agent span (repeating its children's usage), two chats, one tool, one error."""
    return [
        record(
            ROOT, trace_id=trace_id, parent="", kind="agent", ms=2000, name="invoke_agent refunds",
            input_tokens=2700, output_tokens=200, conversation_id="conv-1", user_id="u-7",
            task_type="refund", team="payments", outcome="success",
        ),
        record(
            "1000000000000001", trace_id=trace_id, kind="llm", at=0.1, provider="openai",
            model="gpt-4o-mini", input_tokens=1200, output_tokens=80, cache_read_tokens=1000,
            cost_usd=Decimal("0.00022800"), pii={"email": 2},
        ),
        record("1000000000000002", trace_id=trace_id, kind="tool", at=0.3, tool_name="lookup",
               status="error", error_type="Timeout"),
        record(
            "1000000000000003", trace_id=trace_id, kind="llm", at=0.5, provider="acme",
            model="house-model", input_tokens=1500, output_tokens=120, cost_usd=None,
            cost_known=False, pii={"card": 1},
        ),
    ]  # fmt: skip


def ingest(project, spans):
    return ingest_batch(project, NormalisedBatch(spans=list(spans)))


def summary(run: Run) -> dict:
    fields = [f.name for f in Run._meta.fields if f.name not in {"id", "updated_at"}]
    return {f: getattr(run, f) for f in fields}


@pytest.mark.django_db(transaction=True)
class TestSummary:
    def test_it_stores_every_span_and_summarises_the_run(self, project):
        result = ingest(project, a_run())
        assert (result.received, result.stored, result.runs) == (4, 4, 1)
        run = Run.objects.get(project=project, trace_id=TRACE)
        assert Span.objects.filter(run=run).count() == 4
        assert run.name == "invoke_agent refunds"
        assert run.status == Run.Status.OK
        assert run.outcome == "success"
        assert run.agent.name == "refunds"
        assert (run.version, run.conversation_id, run.user_id) == ("1.0.0", "conv-1", "u-7")
        assert (run.task_type, run.team) == ("refund", "payments")
        assert run.started_at == T0
        assert run.ended_at == T0 + timedelta(seconds=2)
        assert run.duration_ms == 2000
        assert (run.span_count, run.llm_calls, run.tool_calls, run.error_count) == (4, 2, 1, 1)
        # LLM spans only: the agent span's repeated usage is never added on top.
        assert (run.input_tokens, run.output_tokens, run.cache_read_tokens) == (2700, 200, 1000)
        assert run.cost_usd == Decimal("0.000228")
        assert run.cost_known is False
        assert run.pii_count == 3

    def test_a_run_without_llm_spans_takes_the_largest_spans_usage_once(self, project):
        spans = [
            record(ROOT, parent="", kind="agent", input_tokens=900, output_tokens=100),
            record("2000000000000001", kind="chain", input_tokens=800, output_tokens=90),
        ]
        ingest(project, spans)
        run = Run.objects.get(trace_id=TRACE)
        assert (run.input_tokens, run.output_tokens) == (900, 100)
        assert run.cost_usd == 0 and run.cost_known is True

    def test_the_same_batch_twice_is_stored_once_and_changes_nothing(self, project):
        ingest(project, a_run())
        before = summary(Run.objects.get(trace_id=TRACE))
        again = ingest(project, a_run())
        assert again.stored == 0
        assert Span.objects.count() == 4
        assert summary(Run.objects.get(trace_id=TRACE)) == before
        assert UnpricedModel.objects.get(model="house-model").span_count == 1

    def test_children_before_the_root_give_the_same_summary_in_the_end(
        self, project, other_project
    ):
        ingest(project, a_run())
        expected = summary(Run.objects.get(project=project))
        root, *children = a_run()
        ingest(other_project, children[1:])
        running = Run.objects.get(project=other_project)
        assert running.status == Run.Status.RUNNING
        assert running.version == "1.0.0"
        ingest(other_project, [children[0], children[1]])  # one duplicate across batches
        ingest(other_project, [root])
        final = summary(Run.objects.get(project=other_project))
        assert {k: v for k, v in final.items() if k not in {"project", "agent"}} == {
            k: v for k, v in expected.items() if k not in {"project", "agent"}
        }
        assert Span.objects.filter(project=other_project).count() == 4

    def test_shuffled_batches_of_many_runs_match_one_big_batch(self, project, other_project):
        spans = [s for n in range(20) for s in a_run(trace_id=f"{n:032x}")]
        ingest(project, spans)
        shuffled = spans * 2
        random.Random(7).shuffle(shuffled)
        for start in range(0, len(shuffled), 13):
            ingest(other_project, shuffled[start : start + 13])
        one = {r.trace_id: summary(r) for r in Run.objects.filter(project=project)}
        many = {r.trace_id: summary(r) for r in Run.objects.filter(project=other_project)}
        for fields in [*one.values(), *many.values()]:
            del fields["project"], fields["agent"]
        assert many == one

    def test_a_root_error_or_a_failure_outcome_makes_the_run_an_error(self, project):
        ingest(project, [record(ROOT, parent="", status="error")])
        assert Run.objects.get().status == Run.Status.ERROR
        ingest(project, [record(ROOT, trace_id="f" * 32, parent="", outcome="Failure")])
        run = Run.objects.get(trace_id="f" * 32)
        assert (run.status, run.outcome) == (Run.Status.ERROR, "failure")

    def test_the_roots_hints_win_over_earlier_batches(self, project):
        ingest(project, [record("3000000000000001", conversation_id="from-child")])
        assert Run.objects.get().conversation_id == "from-child"
        ingest(project, [record(ROOT, parent="", conversation_id="from-root")])
        assert Run.objects.get().conversation_id == "from-root"
        ingest(project, [record("3000000000000002", conversation_id="later-child")])
        assert Run.objects.get().conversation_id == "from-root"

    def test_a_key_of_another_project_writes_a_separate_run(self, project, other_project):
        ingest(project, a_run())
        ingest(other_project, a_run()[:1])
        assert Run.objects.filter(trace_id=TRACE).count() == 2
        assert Run.objects.get(project=project).span_count == 4
        assert Run.objects.get(project=other_project).span_count == 1

    def test_the_python_summary_matches_the_sql_one(self, project):
        spans = [s for n in range(5) for s in a_run(trace_id=f"{n:032x}")]
        ingest(project, spans[1:])  # leave one run without its root
        for run in Run.objects.filter(project=project):
            rows = list(Span.objects.filter(run=run).values())
            expected = summarise_run(rows)
            root_status = expected.pop("root_status")
            assert {k: getattr(run, k) for k in expected} == expected
            assert (root_status is None) == (run.status == Run.Status.RUNNING)


@pytest.mark.django_db(transaction=True)
class TestAgentsAndPrices:
    def test_it_creates_the_agent_and_marks_each_new_version(self, project):
        ingest(project, a_run())
        agent = Agent.objects.get(project=project, name="refunds")
        assert agent.current_version == "1.0.0"
        assert list(ReleaseMarker.objects.values_list("version", "source")) == [("1.0.0", "auto")]
        ingest(project, [record("4000000000000001", at=60, agent_version="1.1.0", team="pay")])
        agent.refresh_from_db()
        assert (agent.current_version, agent.team) == ("1.1.0", "pay")
        assert ReleaseMarker.objects.get(version="1.1.0").at == T0 + timedelta(seconds=60)
        ingest(project, [record("4000000000000002", at=61, agent_version="1.1.0")])
        assert ReleaseMarker.objects.count() == 2

    def test_it_counts_spans_of_models_without_a_price(self, project):
        ingest(project, a_run())
        ingest(project, a_run(trace_id="e" * 32))
        unpriced = UnpricedModel.objects.get(project=project)
        assert (unpriced.provider, unpriced.model, unpriced.span_count) == (
            "acme",
            "house-model",
            2,
        )


@pytest.mark.django_db(transaction=True)
def test_nul_bytes_and_overlong_values_are_stored_on_postgresql(project):
    span = record(
        ROOT, parent="", name="x" * 400, input="before\x00after",
        attributes={"k\x00": "v\x00", "list": ["\x00"]}, conversation_id="c\x00",
    )  # fmt: skip
    ingest(project, [span])
    stored = Span.objects.get()
    assert stored.input == "before\ufffdafter"
    assert stored.attributes == {"k\ufffd": "v\ufffd", "list": ["\ufffd"]}
    assert len(stored.name) == 300
    assert Run.objects.get().conversation_id == "c\ufffd"


SQLITE_SCRIPT = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from traces.models import Project, Run, Span, UnpricedModel
from tests.traces.test_ingest import a_run, ingest, TRACE
project = Project.objects.create(name="embedded")
root, *children = a_run()
ingest(project, children)
assert Run.objects.get().status == "running"
ingest(project, [root, children[0]])
ingest(project, a_run())
run = Run.objects.get(trace_id=TRACE)
assert Span.objects.count() == 4, Span.objects.count()
assert (run.status, run.name, run.span_count, run.llm_calls) == ("ok", "invoke_agent refunds", 4, 2)
assert (run.input_tokens, run.output_tokens, run.pii_count, run.cost_known) == (2700, 200, 3, False)
assert (run.conversation_id, run.outcome, run.agent.name) == ("conv-1", "success", "refunds")
assert UnpricedModel.objects.get().span_count == 1
print("sqlite-ok")
"""


def test_the_store_works_on_sqlite_in_embedded_mode(tmp_path):
    """Embedded mode: a fresh process without DATABASE_URL migrates SQLite and ingests."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(
        DJANGO_SETTINGS_MODULE="cockpit.settings",
        COCKPIT_DATA_DIR=str(tmp_path),
        PYTHONPATH=str(root),
    )
    done = subprocess.run(
        [sys.executable, "-c", SQLITE_SCRIPT], cwd=root, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sqlite-ok" in done.stdout
