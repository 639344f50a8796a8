"""The one Celery app. Beat's schedule lives here; deadlines live in the database."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cockpit.settings")

app = Celery("cockpit")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.beat_schedule = {
    # Rollups (cockpit.tasks). The fold runs every second so a new run reaches the fleet tiles
    # within about two seconds (it rereads only the current 10-second slice of each agent, so a
    # pass costs a fraction of a core at 5,000 spans/s; see bench_rollups); a pass that finds another one running returns at once, and
    # "expires" drops a queued pass that a busy worker could only start late.
    "fold-rollups": {
        "task": "cockpit.tasks.fold_rollups",
        "schedule": 1.0,
        "options": {"expires": 5},
    },
    "build-coarse-rollups": {
        "task": "cockpit.tasks.build_coarse_rollups",
        "schedule": 30.0,
        "options": {"expires": 60},
    },
    # The fold's slices are worth keeping only while late spans are likely (SLICE_KEEP).
    "prune-rollup-slices": {
        "task": "cockpit.tasks.prune_rollup_slices",
        "schedule": 600.0,
        "options": {"expires": 600},
    },
    "expire-spans": {"task": "cockpit.tasks.expire_spans", "schedule": 3600.0},
    # Approvals (approvals.tasks): deadlines live on the requests, so a pass every 2 seconds
    # escalates within a few seconds of a deadline; the auditor watches the sweeper.
    "sweep-approvals": {
        "task": "approvals.tasks.sweep_approvals",
        "schedule": 2.0,
        "options": {"expires": 10},
    },
    "audit-approvals": {
        "task": "approvals.tasks.audit_approvals",
        "schedule": 30.0,
        "options": {"expires": 60},
    },
    # Run content search documents (traces.search): until a pass covers a run, searches read
    # its spans directly, so the schedule bounds that extra work rather than what is found.
    "index-run-content": {
        "task": "traces.tasks.index_run_content",
        "schedule": 2.0,
        "options": {"expires": 10},
    },
}

# SLO burn rates and budgets, every minute (cockpit.alerting; it also registers the webhook
# delivery task). Each pass is idempotent, so an overlapping or doubled run changes nothing.
app.autodiscover_tasks(["cockpit"], related_name="alerting")
app.conf.beat_schedule["evaluate-alerts"] = {
    "task": "cockpit.alerting.evaluate_alerts",
    "schedule": 60.0,
}

# Degradation detection (cockpit.degradation_tasks): run profiles a few seconds behind ingest,
# score rollups every minute, release checks every 5 minutes, cohort scans and drift every 15.
app.autodiscover_tasks(["cockpit"], related_name="degradation_tasks")
app.conf.beat_schedule |= {
    "profile-runs": {
        "task": "cockpit.degradation_tasks.profile_runs",
        "schedule": 5.0,
        "options": {"expires": 30},
    },
    "roll-up-scores": {"task": "cockpit.degradation_tasks.roll_up_scores", "schedule": 60.0},
    "check-releases": {"task": "cockpit.degradation_tasks.check_releases", "schedule": 300.0},
    "scan-cohorts": {"task": "cockpit.degradation_tasks.scan_cohorts", "schedule": 900.0},
    "evaluate-drift": {"task": "cockpit.degradation_tasks.evaluate_drift", "schedule": 900.0},
}
