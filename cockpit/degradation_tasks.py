"""Celery tasks of degradation detection. Beat's entries for them live in cockpit/celery.py.

Each periodic task is one idempotent pass: profiling runs, rolling scores up, checking recent
releases, scanning cohorts and measuring drift can all run twice, late or on two workers
without harm (alerts open once per key; rows are rewritten whole).

run_analysis computes one long analysis a page asked for (a release comparison, a cohort scan)
and writes its progress and result to the Analysis row the page polls.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from cockpit import cohorts, drift, regressions, run_profiles, scores
from cockpit.models import Analysis

logger = logging.getLogger(__name__)

# A page asking the same question within this long gets the same analysis (and its result).
REUSE_FOR = timedelta(minutes=5)

RUNNERS = {
    Analysis.Kind.RELEASE_COMPARISON: regressions.run_comparison,
    Analysis.Kind.COHORT_SCAN: cohorts.run_scan,
}


@shared_task(name="cockpit.degradation_tasks.profile_runs", ignore_result=True, expires=30)
def profile_runs() -> int:
    """Profile runs changed since the watermark (cockpit.run_profiles)."""
    return run_profiles.profile_pass()


@shared_task(name="cockpit.degradation_tasks.roll_up_scores", ignore_result=True, expires=120)
def roll_up_scores() -> int:
    """Link scores to runs that arrived, and rebuild the daily score rollups that changed."""
    return scores.rollup_pass()


@shared_task(name="cockpit.degradation_tasks.check_releases", ignore_result=True, expires=600)
def check_releases() -> dict:
    """Compare recent releases with the version before them; alert on regressions."""
    return regressions.check_releases()


@shared_task(name="cockpit.degradation_tasks.scan_cohorts", ignore_result=True, expires=1800)
def scan_cohorts() -> dict:
    """Scan every cohort key for degrading cohorts; alert on them."""
    return cohorts.scan_all()


@shared_task(name="cockpit.degradation_tasks.evaluate_drift", ignore_result=True, expires=1800)
def evaluate_drift() -> dict:
    """Measure every agent's behaviour drift; alert past the threshold."""
    return drift.evaluate_drift()


@shared_task(name="cockpit.degradation_tasks.run_analysis", ignore_result=True)
def run_analysis(analysis_id: int) -> str:
    """Compute one analysis; claimed with a conditional update, so it runs once."""
    claimed = Analysis.objects.filter(pk=analysis_id, status=Analysis.Status.QUEUED).update(
        status=Analysis.Status.RUNNING, progress=1, stage="Starting"
    )
    if not claimed:
        return "taken"
    analysis = Analysis.objects.get(pk=analysis_id)
    try:
        result = RUNNERS[analysis.kind](analysis)
    except Exception as error:  # noqa: BLE001 - the page must learn it failed, not poll forever
        logger.exception("analysis %s failed", analysis_id)
        Analysis.objects.filter(pk=analysis_id).update(
            status=Analysis.Status.FAILED,
            error=f"{type(error).__name__}: {error}"[:500],
            finished_at=timezone.now(),
        )
        return "failed"
    Analysis.objects.filter(pk=analysis_id).update(
        status=Analysis.Status.DONE,
        progress=100,
        stage="Done",
        result=result,
        finished_at=timezone.now(),
    )
    return "done"


def start_analysis(kind: str, key: str, params: dict, *, fresh: bool = False) -> Analysis:
    """The analysis answering (kind, key): a recent one, or a new one queued on commit."""
    now = timezone.now()
    recent = (
        Analysis.objects.filter(kind=kind, key=key, created_at__gte=now - REUSE_FOR)
        .exclude(status=Analysis.Status.FAILED)
        .order_by("-created_at")
        .first()
    )
    if recent is not None and not fresh:
        return recent
    analysis = Analysis.objects.create(kind=kind, key=key[:300], params=params, created_at=now)
    transaction.on_commit(lambda: run_analysis.delay(analysis.pk))
    return analysis
