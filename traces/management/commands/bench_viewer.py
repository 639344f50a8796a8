"""Time the trace viewer's pages server-side on a seeded database: p50 and p95 per case.

    python manage.py seed_runs --runs 1000000 --spans-per-run 10
    python manage.py bench_viewer --repeat 30

Each page is rendered through the whole Django stack (middleware, session, role check,
template) by the test client, logged in as a viewer, and must answer 200. Cases cover the
runs list (first page, each kind of filter, sorts, a deep keyset page) and a run page of
--big-run-spans spans, seeded on first use.
"""

from __future__ import annotations

import re
import statistics
import time
from datetime import timedelta
from urllib.parse import urlencode

from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.urls import reverse

from cockpit.roles import VIEWER
from traces.forms import encode_cursor
from traces.management.commands.seed_runs import seed_big_run
from traces.models import Project, Run, Span

BIG_RUN_TRACE = "b16b16b16b16b16b16b16b16b16b16b1"
LIST_TARGET_MS = 150
RUN_PAGE_TARGET_MS = 300


def percentile(sorted_values: list[float], fraction: float) -> float:
    position = (len(sorted_values) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def list_cases(project: Project) -> list[tuple[str, dict]]:
    """(name, query) of each runs-list case, with values drawn from the data."""
    runs = Run.objects.filter(project=project)
    busiest = runs.order_by("-started_at").values_list("agent__name", flat=True).first()
    quiet_agent = (
        project.agents.order_by("-first_seen_at", "-id").values_list("name", flat=True).first()
    )
    user = runs.exclude(user_id="").order_by("-started_at").values_list("user_id", flat=True)[:1]
    cases = [
        ("first page", {}),
        ("agent (busiest)", {"agent": busiest}),
        ("agent (quietest)", {"agent": quiet_agent}),
        ("status error + last 24 h", {"status": "error", "period": "24h"}),
        ("status running", {"status": "running"}),
        ("custom time range", _custom_range(runs)),
        ("min cost $0.05", {"min_cost": "0.05"}),
        ("min duration 30 s", {"min_duration": "30"}),
        ("has error", {"has_error": "on"}),
        ("has PII", {"has_pii": "on"}),
        ("outcome escalated", {"outcome": "escalated"}),
        ("model o3", {"model": "o3"}),
        ("user", {"user": user[0] if user else "user-00001"}),
        ("search common word", {"q": "refund"}),
        ("search less common word", {"q": "chargeback"}),
        ("search rare word (order number)", {"q": _order_number(runs)}),
        ("search phrase + agent", {"q": '"warranty claim"', "agent": busiest}),
        ("sort by cost", {"sort": "-cost"}),
        ("sort by duration asc", {"sort": "duration"}),
        ("has error, sort by cost", {"has_error": "on", "sort": "-cost"}),
    ]
    # A deep page: the cursor of the run half-way down the newest-first order.
    total = runs.count()
    middle = runs.order_by("-started_at", "-id")[total // 2 : total // 2 + 1].first()
    if middle is not None:
        cases.append(("deep keyset page (middle)", {"cursor": encode_cursor(middle)}))
        deep_cost = runs.order_by("-cost_usd", "-id")[total // 2 : total // 2 + 1].first()
        cases.append(
            (
                "deep keyset page, by cost",
                {"sort": "-cost", "cursor": encode_cursor(deep_cost, "-cost")},
            )
        )
    return cases


def _order_number(runs) -> str:
    """A number quoted in the newest run's request: in a handful of runs only."""
    request = (
        Span.objects.filter(run__in=runs.order_by("-started_at")[:1], parent_span_id="")
        .values_list("input", flat=True)
        .first()
    )
    numbers = re.findall(r"\d{5}", request or "")
    return numbers[0] if numbers else "48213"


def _custom_range(runs) -> dict:
    newest = runs.order_by("-started_at").values_list("started_at", flat=True).first()
    if newest is None:
        return {}
    since = (newest - timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    return {
        "since": since.strftime("%Y-%m-%dT%H:%M"),
        "until": since.replace(hour=12).strftime("%Y-%m-%dT%H:%M"),
    }


class Command(BaseCommand):
    help = "Time the runs list and a large run page server-side; print p50/p95 per case."

    def add_arguments(self, parser):
        parser.add_argument("--project", default="viewer-bench")
        parser.add_argument("--repeat", type=int, default=20)
        parser.add_argument("--big-run-spans", type=int, default=2000)

    def handle(self, *args, project, repeat, big_run_spans, **options):
        project_row = Project.objects.filter(name=project).first()
        if project_row is None:
            raise CommandError(f"No project {project}: run seed_runs first.")
        client = Client(HTTP_HOST="localhost")
        client.force_login(self._viewer())
        big_run = Run.objects.filter(project=project_row, trace_id=BIG_RUN_TRACE).first()
        if big_run is None or big_run.span_count != big_run_spans:
            self.stdout.write(f"Seeding a run of {big_run_spans} spans…")
            big_run = seed_big_run(project_row, big_run_spans, trace_id=BIG_RUN_TRACE)
        total = Run.objects.count()
        self.stdout.write(
            f"{total:,} runs in the database ({connection.vendor}); {repeat} renders per case."
        )
        self.stdout.write(f"{'case':<34} {'rows':>5} {'p50 ms':>8} {'p95 ms':>8}  target")
        failures = 0
        url = reverse("run-list")
        for name, query in list_cases(project_row):
            target = f"{url}?{urlencode(query)}" if query else url
            failures += self._measure(client, name, target, repeat, LIST_TARGET_MS)
        run_url = reverse("run-detail", args=[BIG_RUN_TRACE]) + f"?project={project}"
        failures += self._measure(
            client, f"run page, {big_run_spans} spans", run_url, repeat, RUN_PAGE_TARGET_MS
        )
        if failures:
            self.stdout.write(self.style.WARNING(f"{failures} case(s) over target."))
        else:
            self.stdout.write(self.style.SUCCESS("Every case within target."))

    def _viewer(self) -> User:
        user, _ = User.objects.get_or_create(username="bench-viewer")
        user.groups.add(Group.objects.get_or_create(name=VIEWER)[0])
        return user

    def _measure(self, client, name: str, url: str, repeat: int, target_ms: float) -> int:
        response = client.get(url)  # warm up: plans cached, pages in memory
        if response.status_code != 200:
            raise CommandError(f"{name}: {url} answered {response.status_code}")
        rows = response.content.count(b"<tr") - 1
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            client.get(url)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        p50, p95 = statistics.median(timings), percentile(timings, 0.95)
        over = p95 > target_ms
        self.stdout.write(
            f"{name:<34} {rows:>5} {p50:>8.1f} {p95:>8.1f}  "
            f"{'OVER' if over else 'ok'} (≤ {target_ms} ms p95)"
        )
        return int(over)
