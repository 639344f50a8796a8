"""The agent-facing approval API: create, long-poll (in-process and across processes), cancel,
callbacks."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from approvals import engine
from approvals.models import ApprovalRequest
from cockpit import webhooks
from cockpit.models import WebhookDelivery
from tests.approvals.builders import chain, make_reviewer, policy

ROOT = Path(__file__).resolve().parents[2]
URL = "/api/v1/approvals"


@pytest.fixture
def refunds(db):
    return policy(chain())


def body(**fields):
    return {
        "idempotency_key": "refund-A-1001",
        "agent": "refund-bot",
        "action": "refund",
        "arguments": {"order": "A-1001", "amount": 4000},
        "summary": "Refund order A-1001",
        "rationale": "Charged twice.",
        "risk": "high",
        "amount": "4000.00",
        "currency": "USD",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        **fields,
    }


def post(client, key, payload, path=URL):
    return client.post(
        path, json.dumps(payload), content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip


def poll(client, key, pk, wait=0):
    return client.get(f"{URL}/{pk}", {"wait": wait}, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.django_db
class TestCreate:
    def test_it_creates_a_pending_request_and_a_replay_returns_it_with_200(
        self, client, ingest_key, refunds
    ):
        created = post(client, ingest_key, body())
        replay = post(client, ingest_key, body())

        assert created.status_code == 201 and replay.status_code == 200
        first = created.json()
        assert first["status"] == "pending" and first["level"] == 1
        assert replay.json()["id"] == first["id"]
        assert set(first) >= {"id", "status", "level", "level_due_at", "expires_at",
                              "arguments_sha256"}  # fmt: skip
        assert ApprovalRequest.objects.count() == 1

    def test_the_same_key_with_other_arguments_is_a_409(self, client, ingest_key, refunds):
        post(client, ingest_key, body())

        response = post(client, ingest_key, body(arguments={"order": "A-1001", "amount": 9}))

        assert response.status_code == 409
        assert "idempotency_key" in response.json()

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("arguments", ["not", "an", "object"]),
            ("idempotency_key", ""),
            ("agent", None),
            ("risk", "apocalyptic"),
            ("amount", "-5"),
            ("currency", "dollars"),
            ("trace_id", "xyz"),
            ("callback_url", "ftp://example.com/x"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(self, client, ingest_key, refunds, field, value):
        response = post(client, ingest_key, body(**{field: value}))

        assert response.status_code == 400
        assert field in response.json()
        assert not ApprovalRequest.objects.exists()

    def test_a_paused_agent_is_told_at_once_why(self, client, ingest_key, project, refunds):
        from tests.factories import make_agent

        make_agent(project, "refund-bot", state="stopped", state_reason="runaway costs")

        response = post(client, ingest_key, body())

        assert response.status_code == 201
        assert response.json()["status"] == "rejected"
        assert response.json()["comment"] == "The agent is stopped: runaway costs"

    def test_it_needs_a_project_key(self, client, people, refunds):
        assert post(client, "ck_wrong", body()).status_code == 401
        client.force_login(people["admin"])
        response = client.post(URL, json.dumps(body()), content_type="application/json")
        assert response.status_code == 403


@pytest.mark.django_db
class TestStatus:
    def test_it_answers_at_once_without_wait_and_with_the_effective_arguments(
        self, client, ingest_key, refunds
    ):
        pk = post(client, ingest_key, body()).json()["id"]
        pending = poll(client, ingest_key, pk).json()
        assert pending["status"] == "pending" and pending["decided_by"] is None

        request = ApprovalRequest.objects.get(pk=pk)
        engine.do_decide(pk, make_reviewer("lena", 1), "approve_edited",
                         edited_arguments={"order": "A-1001", "amount": 2500},
                         seen_sha256=request.arguments_sha256)  # fmt: skip
        decided = poll(client, ingest_key, pk).json()

        assert decided["status"] == "approved" and decided["decided_by"] == "lena"
        assert decided["arguments"] == {"order": "A-1001", "amount": 2500}
        assert decided["edited"] is True
        assert decided["arguments_sha256"] != request.arguments_sha256

    def test_a_pending_request_returns_at_the_timeout_still_pending(
        self, client, ingest_key, refunds
    ):
        pk = post(client, ingest_key, body()).json()["id"]
        started = time.monotonic()

        response = poll(client, ingest_key, pk, wait=0.3)

        assert response.json()["status"] == "pending"
        assert 0.3 <= time.monotonic() - started < 5

    @pytest.mark.parametrize("wait", ["61", "-1", "soon"])
    def test_wait_beyond_a_minute_or_not_a_number_is_a_400(self, client, ingest_key, wait):
        response = poll(client, ingest_key, 1, wait=wait)

        assert response.status_code == 400 and "wait" in response.json()

    def test_another_projects_request_is_a_404_and_no_key_a_401(
        self, client, ingest_key, other_key, refunds
    ):
        pk = post(client, ingest_key, body()).json()["id"]

        assert poll(client, other_key, pk).status_code == 404
        assert client.get(f"{URL}/{pk}").status_code == 401
        assert client.post(f"{URL}/{pk}").status_code == 405


@pytest.mark.django_db
class TestCancel:
    def test_the_agent_cancels_its_pending_request_once(self, client, ingest_key, refunds):
        pk = post(client, ingest_key, body()).json()["id"]

        first = post(client, ingest_key, {}, path=f"{URL}/{pk}/cancel")
        second = post(client, ingest_key, {}, path=f"{URL}/{pk}/cancel")

        assert first.status_code == 200 and first.json()["status"] == "cancelled"
        assert second.status_code == 409

    def test_another_project_cannot_cancel_it(self, client, ingest_key, other_key, refunds):
        pk = post(client, ingest_key, body()).json()["id"]

        assert post(client, other_key, {}, path=f"{URL}/{pk}/cancel").status_code == 404
        assert ApprovalRequest.objects.get(pk=pk).status == "pending"


@pytest.mark.django_db
def test_a_callback_url_gets_the_decision_signed_with_the_requests_secret(
    client, ingest_key, refunds, django_capture_on_commit_callbacks
):
    created = post(client, ingest_key, body(callback_url="https://agent.example.com/cb")).json()
    assert len(created["callback_secret"]) == 32
    request = ApprovalRequest.objects.get(pk=created["id"])

    with (
        mock.patch.object(webhooks.deliver_webhook, "delay"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        engine.do_decide(request.pk, make_reviewer("lena", 1), "reject",
                         comment="Not eligible", seen_sha256=request.arguments_sha256)  # fmt: skip

    delivery = WebhookDelivery.objects.get(topic=f"approval:{request.pk}:rejected")
    with mock.patch("cockpit.webhooks.post_json", side_effect=[503, 200]) as post_json:
        with (
            mock.patch.object(webhooks.deliver_webhook, "retry", side_effect=RuntimeError),
            pytest.raises(RuntimeError),
        ):
            webhooks.deliver_webhook.run(delivery.pk)  # 503: retried with backoff
        assert webhooks.deliver_webhook.run(delivery.pk) == "delivered"
    url, sent, headers, _ = post_json.call_args.args
    assert url == "https://agent.example.com/cb"
    assert json.loads(sent)["approval"]["status"] == "rejected"
    signature = webhooks.sign(created["callback_secret"], headers[webhooks.TIMESTAMP_HEADER], sent)
    assert headers[webhooks.SIGNATURE_HEADER] == signature


# --- Long-poll wake-ups (real commits, so other threads and processes see the rows) ---------


def long_poll_in_thread(key, pk, wait=20) -> tuple[threading.Thread, dict]:
    result = {}

    def run():
        started = time.monotonic()
        try:
            response = poll(Client(), key, pk, wait=wait)
            result.update(response.json(), elapsed=time.monotonic() - started)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_the_moment_a_decision_lands_in_this_process(ingest_key, refunds):
    pk = post(Client(), ingest_key, body()).json()["id"]
    request = ApprovalRequest.objects.get(pk=pk)
    thread, result = long_poll_in_thread(ingest_key, pk)
    time.sleep(0.5)

    engine.do_decide(pk, make_reviewer("lena", 1), "approve", seen_sha256=request.arguments_sha256)
    thread.join(timeout=15)

    assert result["status"] == "approved"
    assert result["elapsed"] < 5  # woken, not timed out at 20 s


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_wakes_on_a_decision_made_by_another_process(ingest_key, refunds):
    pk = post(Client(), ingest_key, body()).json()["id"]
    request = ApprovalRequest.objects.get(pk=pk)
    make_reviewer("lena", 1)
    thread, result = long_poll_in_thread(ingest_key, pk)
    time.sleep(0.5)

    database = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql://{database['USER']}@{database['HOST']}:{database['PORT']}"
        f"/{database['NAME']}",
        "COCKPIT_CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    }
    script = (
        "from django.contrib.auth.models import User; from approvals import engine; "
        f"engine.do_decide({pk}, User.objects.get(username='lena'), 'approve', "
        f"seen_sha256='{request.arguments_sha256}')"
    )
    decided = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    thread.join(timeout=15)

    assert decided.returncode == 0, decided.stderr
    assert result["status"] == "approved" and result["decided_by"] == "lena"
    assert result["elapsed"] < 15
