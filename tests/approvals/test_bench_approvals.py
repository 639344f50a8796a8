"""The approvals benchmark at toy scale, so its timing code cannot rot between runs."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from approvals.models import ApprovalRequest


@pytest.mark.django_db(transaction=True)
def test_it_reports_wake_up_latency_escalation_lateness_and_queue_time(live_server, ingest_key):
    out = StringIO()

    call_command("bench_approvals", url=live_server.url, key=ingest_key, pending=8, agents=3,
                 decisions=2, escalations=2, stdout=out)  # fmt: skip

    report = out.getvalue()
    assert "decision → waiting agent     n=2 " in report
    assert "escalation after deadline    n=2 " in report
    assert "queue page (8 pending)" in report
    assert not ApprovalRequest.objects.exists()  # it cleans up after itself


def test_it_refuses_an_unknown_key(db):
    with pytest.raises(CommandError, match="not an active ingest key"):
        call_command("bench_approvals", key="ck_nothing", stdout=StringIO())
