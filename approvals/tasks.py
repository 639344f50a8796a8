"""Celery tasks of the approval engine: the sweeper every few seconds and its auditor.

Each is one idempotent pass (approvals.engine): a doubled, late or overlapping run acts once per
level, so beat may fire them freely and a dead worker loses nothing.
"""

from celery import shared_task

from approvals import engine


@shared_task(name="approvals.tasks.sweep_approvals", ignore_result=True)
def sweep_approvals() -> dict:
    """Remind, escalate or expire the pending requests whose next step is due."""
    return engine.sweep()


@shared_task(name="approvals.tasks.audit_approvals", ignore_result=True)
def audit_approvals() -> int:
    """Alert while requests sit past their deadline unprocessed (the sweeper is not running)."""
    return engine.audit()
