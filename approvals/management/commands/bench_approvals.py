"""Benchmark the approval engine against a running server.

    python manage.py bench_approvals --url http://127.0.0.1:8000 --key ck_…

With 1,000 pending requests and 200 agents long-polling the server, it decides requests (as a
reviewer, from this process: the wake-up crosses processes through Redis) and reports how long
each decision took to reach its waiting agent; it runs the sweeper as beat would (every 2 s)
over requests whose L1 deadline falls during the run and reports how late each escalation
came; and it renders the reviewer queue in-process and reports its time.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.utils import timezone

from approvals import engine
from approvals.health import percentile
from approvals.models import (
    ApprovalEvent,
    ApprovalRequest,
    EscalationChain,
    EscalationLevel,
    Policy,
)
from cockpit.roles import ADMIN
from traces.models import IngestKey

BENCH = "bench-approvals"
SWEEP_EVERY = 2.0


def api(host, port, key, method, path, body=None, timeout=90) -> tuple[int, dict]:
    connection_ = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection_.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = connection_.getresponse()
    payload = json.loads(response.read() or b"{}")
    connection_.close()
    return response.status, payload


class Command(BaseCommand):
    help = "Decision-to-agent latency, escalation lateness and queue render time."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--key", required=True, help="An ingest key of the target project.")
        parser.add_argument("--pending", type=int, default=1000)
        parser.add_argument("--agents", type=int, default=200)
        parser.add_argument("--decisions", type=int, default=200)
        parser.add_argument("--escalations", type=int, default=100)

    def handle(self, *args, url, key, pending, agents, decisions, escalations, **options):
        parts = urlsplit(url)
        ingest_key = IngestKey.authenticate(key)
        if ingest_key is None:
            raise CommandError("--key is not an active ingest key in this database.")
        if not pending >= agents >= decisions or escalations > pending - agents:
            raise CommandError("Need pending ≥ agents ≥ decisions and room for escalations.")
        host, port = parts.hostname, parts.port or 80
        project = ingest_key.project
        reviewer = self._setup(project)

        self.stdout.write(f"Creating {pending} pending requests for {agents} agents…")
        started = time.monotonic()
        ids = []
        for n in range(pending):
            status, body = api(host, port, key, "POST", "/api/v1/approvals", {
                "idempotency_key": f"{BENCH}-{time.time_ns()}-{n}",
                "agent": f"{BENCH}-agent-{n % agents:03d}",
                "action": "refund" if n >= agents + escalations else "bench_refund",
                "arguments": {"order": f"B-{n}", "amount": 100 + n},
            })  # fmt: skip
            if status != 201:
                raise CommandError(f"Creating a request answered {status}: {body}")
            ids.append(body["id"])
        self.stdout.write(f"  {pending / (time.monotonic() - started):.0f} requests/s created")

        # The first `agents` requests are the ones agents wait on; the next `escalations` have
        # an L1 deadline spread over the coming seconds.
        waited, to_escalate = ids[:agents], ids[agents : agents + escalations]
        now = timezone.now()
        due_at = {}
        for offset, pk in enumerate(to_escalate):
            due_at[pk] = now + timedelta(seconds=5 + 15 * offset / max(1, len(to_escalate)))
            ApprovalRequest.objects.filter(pk=pk).update(
                level_due_at=due_at[pk], next_action_at=due_at[pk], remind_at=None
            )

        self._time_queue(reviewer)
        received: dict[int, float] = {}
        stop = threading.Event()
        pollers = [
            threading.Thread(
                target=self._poll, args=(host, port, key, pk, received, stop), daemon=True
            )
            for pk in waited
        ]
        for thread in pollers:
            thread.start()
        time.sleep(3)  # every agent is waiting now

        sweeper = threading.Thread(target=self._sweep, args=(stop,), daemon=True)
        sweeper.start()
        decided_at: dict[int, float] = {}
        for pk in waited[:decisions]:
            request = ApprovalRequest.objects.get(pk=pk)
            engine.do_decide(pk, reviewer, "approve", seen_sha256=request.arguments_sha256)
            decided_at[pk] = time.monotonic()  # after commit: the wake-up is on its way
            time.sleep(0.02)
        deadline = time.monotonic() + 25
        while time.monotonic() < deadline and (
            len(received) < decisions
            or ApprovalRequest.objects.filter(pk__in=to_escalate, level=1).exists()
        ):
            time.sleep(0.5)
        stop.set()
        sweeper.join()

        latencies = [received[pk] - decided_at[pk] for pk in decided_at if pk in received]
        missing = len(decided_at) - len(latencies)
        self.report("decision → waiting agent", latencies, missing)
        late = self._escalation_lateness(due_at)
        self.report("escalation after deadline", late, len(to_escalate) - len(late))
        self._cleanup(project)

    def _setup(self, project) -> User:
        reviewer, _ = User.objects.get_or_create(username=f"{BENCH}-reviewer")
        reviewer.groups.add(Group.objects.get_or_create(name=ADMIN)[0])
        chain, _ = EscalationChain.objects.get_or_create(name=BENCH)
        for number in (1, 2):
            EscalationLevel.objects.get_or_create(
                chain=chain, number=number, defaults={"time_budget": timedelta(minutes=30),
                                                      "remind_at_fraction": 0})  # fmt: skip
        Policy.objects.get_or_create(
            name=BENCH, defaults={"project": project, "chain": chain, "priority": -1,
                                  "agent_name": "", "action": ""},
        )  # fmt: skip
        return reviewer

    def _poll(self, host, port, key, pk, received, stop: threading.Event) -> None:
        """An agent waiting on its request, as the API asks: long-poll again until decided."""
        while not stop.is_set():
            try:
                status, body = api(host, port, key, "GET", f"/api/v1/approvals/{pk}?wait=60")
            except (OSError, ValueError):  # the server went away or answered something else
                stop.wait(0.5)
                continue
            if body.get("status") != "pending":
                received[pk] = time.monotonic()
                return

    def _sweep(self, stop: threading.Event) -> None:
        while not stop.is_set():
            engine.sweep()
            stop.wait(SWEEP_EVERY)
        connection.close()

    def _escalation_lateness(self, due_at: dict) -> list[float]:
        """Seconds from each L1 deadline to its escalation event."""
        escalated = ApprovalEvent.objects.filter(
            request_id__in=list(due_at), kind=ApprovalEvent.Kind.ESCALATED
        ).values_list("request_id", "at")
        return [(at - due_at[pk]).total_seconds() for pk, at in escalated]

    def _time_queue(self, reviewer) -> None:
        import cockpit.asgi  # noqa: F401 - start up as the server does (views loaded, heap frozen)

        client = Client()
        client.force_login(reviewer)
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            response = client.get("/approvals/")
            timings.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise CommandError(f"The queue answered {response.status_code}.")
        pending = ApprovalRequest.objects.pending().count()
        self.stdout.write(
            f"queue page ({pending} pending)   p50 {percentile(timings, 0.5):.0f} ms, "
            f"p95 {percentile(timings, 0.95):.0f} ms"
        )

    def report(self, label: str, seconds: list[float], missing: int) -> None:
        if not seconds:
            self.stdout.write(f"{label:28} no samples ({missing} missing)")
            return
        self.stdout.write(
            f"{label:28} n={len(seconds)} p50 {percentile(seconds, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(seconds, 0.99) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms"
            + (f"; {missing} missing" if missing else "")
        )

    def _cleanup(self, project) -> None:
        ApprovalRequest.objects.filter(agent__name__startswith=BENCH).delete()
