"""Celery tasks of the rollups: fold new runs every second, build hours and days, prune the
fold's slices, expire spans.

Each task is one idempotent pass (cockpit.rollups): a doubled, late or overlapping run does no
harm, so beat can fire them freely and a dead worker loses nothing.
"""

from celery import shared_task

from cockpit import rollups


@shared_task(name="cockpit.tasks.fold_rollups", ignore_result=True)
def fold_rollups() -> int:
    """Fold runs changed since the watermark into minute rollups; returns agents folded."""
    return len(rollups.fold_pass())


@shared_task(name="cockpit.tasks.build_coarse_rollups", ignore_result=True)
def build_coarse_rollups() -> int:
    """Rewrite dirty hour rows from minutes and dirty day rows from hours."""
    return rollups.coarse_pass()


@shared_task(name="cockpit.tasks.prune_rollup_slices", ignore_result=True)
def prune_rollup_slices() -> int:
    """Delete the fold's 10-second slice rows of minutes past SLICE_KEEP; minute rows stay."""
    return rollups.prune_slices()


@shared_task(name="cockpit.tasks.expire_spans", ignore_result=True)
def expire_spans() -> int:
    """Delete raw spans past COCKPIT_SPAN_RETENTION_DAYS; runs and rollups stay."""
    return rollups.delete_expired_spans()
