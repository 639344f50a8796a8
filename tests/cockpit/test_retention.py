import random
from datetime import timedelta

from django.utils import timezone

from cockpit import rollups
from cockpit.models import Rollup, RollupSlice
from tests.cockpit.rollup_traffic import T0, ingest, traffic
from traces.models import Run, Span


def test_old_spans_are_deleted_in_batches_while_runs_and_rollups_stay(project, settings):
    settings.COCKPIT_SPAN_RETENTION_DAYS = 7
    rng = random.Random(1)
    ingest(project, traffic(rng, agents=("refunds",), runs=30, start=T0 - timedelta(days=10)))
    ingest(project, traffic(rng, agents=("refunds",), runs=30, start=T0))
    rollups.fold_pass()
    rollups.coarse_pass()
    rows_before = Rollup.objects.count()
    old_spans = Span.objects.filter(run__started_at__lt=T0 - timedelta(days=7)).count()
    young_spans = Span.objects.count() - old_spans

    assert rollups.delete_expired_spans(now=T0 + timedelta(hours=1), batch_size=7) == old_spans

    assert Span.objects.count() == young_spans
    assert Run.objects.count() == 60
    assert Rollup.objects.count() == rows_before
    assert rollups.delete_expired_spans(now=T0 + timedelta(hours=1)) == 0


def test_a_run_touched_after_its_spans_expired_leaves_its_rollups_as_they_were(project, settings):
    ingest(project, traffic(random.Random(2), agents=("refunds",), runs=10, start=T0))
    rollups.fold_pass()
    settings.COCKPIT_SPAN_RETENTION_DAYS = 1
    before = sorted(Rollup.objects.values_list("bucket_start", "dim_kind", "runs", "llm_calls"))
    assert rollups.delete_expired_spans() > 0
    Run.objects.update(updated_at=timezone.now())  # say a late span arrived for each
    rollups.fold_pass()
    assert (
        sorted(Rollup.objects.values_list("bucket_start", "dim_kind", "runs", "llm_calls"))
        == before
    )


def test_pruning_drops_only_the_fold_slices_of_minutes_past_slice_keep(project):
    rng = random.Random(3)
    ingest(project, traffic(rng, agents=("refunds",), runs=20, minutes=2, start=T0))
    ingest(
        project,
        traffic(rng, agents=("refunds",), runs=20, minutes=2, start=T0 + timedelta(hours=2)),
    )
    rollups.fold_pass()
    minutes_before = Rollup.objects.filter(resolution="1m").count()
    young = RollupSlice.objects.filter(bucket_start__gte=T0 + timedelta(hours=2)).count()

    assert rollups.prune_slices(now=T0 + timedelta(hours=2) + rollups.SLICE_KEEP) > 0

    assert RollupSlice.objects.count() == young > 0
    assert Rollup.objects.filter(resolution="1m").count() == minutes_before
