"""The demo fleet's refund and outbound-email agents ask for approval, wait, and act on it."""

import json
import random
import threading
import time

import pytest

from approvals import demo as approvals_demo
from approvals import engine
from approvals.models import ApprovalRequest
from traces.demo import PROFILES, DemoFleet
from traces.models import Run, Span

REFUNDS = next(p for p in PROFILES if p.name == "refund-agent")


def wait_for(condition, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_request_names_the_action_its_exact_arguments_and_why():
    request = approvals_demo.request_for(REFUNDS, random.Random(3), "ab" * 16)

    assert request["action"] == "issue_refund" and request["trace_id"] == "ab" * 16
    assert request["amount"] == str(request["arguments"]["amount"])
    assert request["rationale"] and request["idempotency_key"].startswith("demo-")


def test_only_the_asking_agents_ask_and_never_more_than_a_few_at_once():
    fleet = DemoFleet("http://127.0.0.1:9", "ck_unused", seed=1)
    fleet.rng = random.Random(0)
    fleet.approvals_waiting = {"refund-agent": approvals_demo.MAX_WAITING}
    triage = next(p for p in PROFILES if p.name == "support-triage")

    assert all(approvals_demo.maybe_ask(fleet, triage, "v1") is None for _ in range(50))
    assert all(approvals_demo.maybe_ask(fleet, REFUNDS, "v1") is None for _ in range(50))


@pytest.mark.django_db(transaction=True)
def test_the_agent_waits_on_the_long_poll_and_acts_with_the_edited_arguments(
    live_server, project, ingest_key, people
):
    fleet = DemoFleet(live_server.url, ingest_key, seed=5)
    flow = threading.Thread(
        target=approvals_demo._ask_wait_act,
        args=(fleet, REFUNDS, REFUNDS.version, random.Random(9)),
    )
    flow.start()
    request = wait_for(lambda: ApprovalRequest.objects.filter(agent__name="refund-agent").first())
    time.sleep(0.5)  # the agent is on the long-poll now
    edited = {**request.arguments, "amount": 100}

    engine.do_decide(request.pk, people["admin"], "approve_edited", edited_arguments=edited,
                     seen_sha256=request.arguments_sha256)  # fmt: skip
    flow.join(timeout=20)
    fleet.close()

    run = wait_for(lambda: Run.objects.filter(trace_id=request.trace_id).first())
    spans = Span.objects.filter(run=run)
    approval = spans.get(kind="approval")
    assert json.loads(approval.output)["status"] == "approved"
    refund = spans.get(kind="tool", tool_name="issue_refund")
    assert json.loads(refund.input)["amount"] == 100
    assert run.outcome == "success"
