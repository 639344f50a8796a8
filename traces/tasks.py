"""Celery tasks of the traces app."""

import time

from celery import shared_task

from traces import search

# A task keeps passing while passes come back full, for up to this long, so a backlog after a
# burst of traffic is worked off between two beats instead of one batch per beat.
CATCH_UP_SECONDS = 5.0


@shared_task(name="traces.tasks.index_run_content", ignore_result=True)
def index_run_content() -> int:
    """Rebuild the search documents of runs changed since the watermark (traces.search)."""
    started = time.monotonic()
    indexed = read = search.index_pass()
    while read >= search.INDEX_BATCH and time.monotonic() - started < CATCH_UP_SECONDS:
        read = search.index_pass()
        indexed += read
    return indexed
