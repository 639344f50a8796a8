"""The viewer benchmark at toy scale, so seeding and timing code cannot rot between runs."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from traces.management.commands.bench_viewer import BIG_RUN_TRACE
from traces.models import Run, RunSearch, Span

pytestmark = pytest.mark.django_db


def test_seed_runs_writes_runs_whose_summaries_agree_with_their_spans():
    out = StringIO()

    # Kept indexes: a test runs in one transaction, where rebuilding them would fail.
    call_command("seed_runs", runs=40, spans_per_run=6, chunk=15, keep_indexes=True, stdout=out)

    assert "Seeded 40 runs" in out.getvalue()
    runs = Run.objects.filter(project__name="viewer-bench")
    assert runs.count() == 40
    assert runs.values("agent").distinct().count() > 5
    for run in runs[:10]:
        spans = Span.objects.filter(run=run)
        assert spans.count() == run.span_count
        assert spans.filter(kind="llm").count() == run.llm_calls
        assert spans.filter(status="error").count() == run.error_count
        assert all(s.trace_id == run.trace_id for s in spans)
    assert Span.objects.exclude(input="").exists()
    # Seeded content is searchable at once: every run has its search document.
    assert RunSearch.objects.filter(run__in=runs).count() == 40


def test_bench_viewer_times_every_case_and_the_big_run_page():
    call_command("seed_runs", runs=30, spans_per_run=4, keep_indexes=True, stdout=StringIO())
    out = StringIO()

    call_command("bench_viewer", repeat=2, big_run_spans=25, stdout=out)

    report = out.getvalue()
    for case in [
        "first page",
        "search rare word (order number)",
        "sort by cost",
        "deep keyset page (middle)",
    ]:
        assert case in report
    assert "run page, 25 spans" in report
    assert Run.objects.get(trace_id=BIG_RUN_TRACE).span_count == 25


def test_bench_viewer_needs_a_seeded_project():
    with pytest.raises(CommandError, match="run seed_runs first"):
        call_command("bench_viewer", project="nothing-here", stdout=StringIO())
