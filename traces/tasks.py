"""Celery tasks of the traces app."""

from celery import shared_task

from traces import search


@shared_task(name="traces.tasks.index_run_content", ignore_result=True)
def index_run_content() -> int:
    """Rebuild the search documents of runs changed since the watermark (traces.search)."""
    return search.index_pass()
