"""Benchmark the dashboards: render the fleet page and a 24 h agent page N times, print p50/p95.

    python manage.py bench_dashboard --seed --agents 50 --days 30 --spans 10000000 --repeat 50

--seed writes, into a project of its own ("bench-dashboard"), what 10 million spans over 30
days for 50 agents leave behind: hour and day rollups for the whole period, minute rollups for
the last 26 hours (older minutes are never read: every window reads them from hour and day
rows), per model, task type and version as well; and the last 24 hours of runs with their spans
(the agent page reads those for its slowest and costliest runs, tools and user cohorts). The
traffic follows a daily cycle; one agent degrades after a release 20 hours ago. Pages are
rendered through the whole Django stack (middleware, session, templates) with the test client.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from cockpit import histogram
from cockpit.models import AlertEvent, Rollup, RollupDirty
from traces.models import Agent, Project, ReleaseMarker, Run, Span

PROJECT = "bench-dashboard"
SPANS_PER_RUN = 9
NAMES = ["support-triage", "refund-agent", "research-assistant", "sql-analyst", "code-reviewer"]
MODELS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4"), ("openai", "gpt-4o")]
TASKS = ["refund", "triage", "lookup", "escalation"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class Command(BaseCommand):
    help = "Render the fleet page and a 24 h agent page N times; print p50 and p95."

    def add_arguments(self, parser):
        parser.add_argument("--seed", action="store_true", help="(re)write the benchmark data")
        parser.add_argument("--agents", type=int, default=50)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--spans", type=int, default=10_000_000)
        parser.add_argument("--repeat", type=int, default=30)

    def handle(self, *args, **options):
        self.rng = random.Random(7)
        now = timezone.now()
        if options["seed"]:
            started = time.perf_counter()
            self.seed(now, options["agents"], options["days"], options["spans"])
            self.stdout.write(f"seeded in {time.perf_counter() - started:.0f} s")
        self.bench(options["repeat"])

    # --- Seeding -----------------------------------------------------------------------------

    def seed(self, now: datetime, agent_count: int, days: int, spans: int) -> None:
        project, _ = Project.objects.get_or_create(name=PROJECT)
        old = list(Agent.objects.filter(project=project).values_list("pk", flat=True))
        Rollup.objects.filter(agent_id__in=old).delete()
        RollupDirty.objects.filter(agent_id__in=old).delete()
        Span.objects.filter(project=project).delete()
        Run.objects.filter(project=project).delete()
        AlertEvent.objects.filter(project=project).delete()
        Agent.objects.filter(project=project).delete()
        names = NAMES + [f"agent-{i:02d}" for i in range(len(NAMES), agent_count)]
        agents = [
            Agent.objects.create(
                project=project,
                name=name,
                team=["care", "money", "research", "data", "platform"][i % 5],
                environment="prod",
                current_version="2.4.0" if i == 2 else "1.3.1",
                first_seen_at=now - timedelta(days=days),
                last_seen_at=now,
            )
            for i, name in enumerate(names[:agent_count])
        ]
        ReleaseMarker.objects.create(
            agent=agents[min(2, len(agents) - 1)], version="2.4.0", at=now - timedelta(hours=20)
        )
        runs_per_agent_minute = spans / SPANS_PER_RUN / agent_count / (days * 1440)
        profiles = {
            agent.pk: {
                "rate": runs_per_agent_minute * self.rng.uniform(0.3, 1.7),
                "error": self.rng.uniform(0.005, 0.06),
                "latency": self.rng.uniform(7.0, 9.0),  # log-ms
                "cost": self.rng.uniform(0.002, 0.05),
                "degraded_after": now - timedelta(hours=20) if i == 2 else None,
            }
            for i, agent in enumerate(agents)
        }
        self.seed_rollups(project, agents, profiles, now, days)
        self.seed_runs(project, agents, profiles, now)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE cockpit_rollup")
            cursor.execute("ANALYZE traces_run")
            cursor.execute("ANALYZE traces_span")
        self.objectives(project, now)

    def traffic(self, profile: dict, start: datetime, minutes: int) -> dict:
        """Counts for a bucket of `minutes` starting at `start`, with a daily cycle."""
        hour = start.hour + start.minute / 60
        cycle = 0.55 + 0.45 * math.sin((hour - 9) / 24 * 2 * math.pi)
        expected = profile["rate"] * minutes * cycle * self.rng.uniform(0.8, 1.2)
        # Round at random, so a rate below one run a minute still shows up as runs.
        runs = math.floor(expected) + (self.rng.random() < expected % 1)
        degraded = profile["degraded_after"] and start >= profile["degraded_after"]
        error = profile["error"] * (4 if degraded else 1)
        latency = profile["latency"] + (0.6 if degraded else 0)
        errors = sum(1 for _ in range(min(runs, 200)) if self.rng.random() < error)
        errors = round(errors * runs / 200) if runs > 200 else errors
        samples = [self.rng.lognormvariate(latency, 0.7) for _ in range(min(runs, 60))]
        hist = histogram.from_values(samples)
        if runs > len(samples) and samples:
            scale = runs / len(samples)
            hist = {key: max(1, round(count * scale)) for key, count in hist.items()}
        cost = Decimal(str(round(profile["cost"] * runs * self.rng.uniform(0.9, 1.1), 6)))
        return {"runs": runs, "errors": errors, "hist": hist, "cost": cost, "latency": latency}

    def seed_rollups(self, project, agents, profiles, now, days) -> None:
        batch: list[Rollup] = []

        def flush():
            with transaction.atomic():
                Rollup.objects.bulk_create(batch, batch_size=5000)
            batch.clear()

        def add(resolution: str, start: datetime, minutes: int) -> None:
            for agent in agents:
                t = self.traffic(profiles[agent.pk], start, minutes)
                if not t["runs"]:
                    continue
                batch.append(self.row(project, agent, resolution, start, "", "", t, 1.0))
                shares = ((MODELS[0][1], 0.7), (MODELS[1][1], 0.3))
                for dim_kind, values in (
                    ("model", shares),
                    ("task_type", tuple((task, 1 / len(TASKS)) for task in TASKS)),
                    ("version", ((agent.current_version, 1.0),)),
                ):
                    for value, share in values:
                        batch.append(
                            self.row(project, agent, resolution, start, dim_kind, value, t, share)
                        )
            if len(batch) >= 20_000:
                flush()

        day0 = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        for d in range(days + 1):
            add(Rollup.Resolution.DAY, day0 + timedelta(days=d), 1440)
        for h in range((days + 1) * 24):
            add(Rollup.Resolution.HOUR, day0 + timedelta(hours=h), 60)
        minute0 = (now - timedelta(hours=26)).replace(second=0, microsecond=0)
        for m in range(26 * 60 + 1):
            add(Rollup.Resolution.MINUTE, minute0 + timedelta(minutes=m), 1)
        flush()

    def row(self, project, agent, resolution, start, dim_kind, value, t, share) -> Rollup:
        runs = max(1, round(t["runs"] * share))
        errors = round(t["errors"] * share)
        return Rollup(
            resolution=resolution, bucket_start=start.astimezone(UTC), project_id=project.pk,
            agent_id=agent.pk, dim_kind=dim_kind, dim_value=value, runs=runs,
            successes=runs - errors, failures=errors, error_runs=errors,
            spans=SPANS_PER_RUN * runs, llm_calls=4 * runs, tool_calls=3 * runs,
            input_tokens=4800 * runs, output_tokens=360 * runs, cache_read_tokens=2000 * runs,
            cost_usd=(t["cost"] * Decimal(str(share))).quantize(Decimal("0.00000001")),
            duration_ms_sum=math.exp(t["latency"]) * runs,
            run_hist={str(k): max(1, round(v * share)) for k, v in t["hist"].items()},
            llm_hist={str(k - 60): max(1, round(v * share)) for k, v in t["hist"].items()},
            tool_hist={str(k - 90): max(1, round(v * share)) for k, v in t["hist"].items()},
            tool_errors_transient=errors // 2, tool_errors_permanent=errors - errors // 2,
            errors_by_type={"TimeoutError": errors} if errors else {},
        )  # fmt: skip

    def seed_runs(self, project, agents, profiles, now) -> None:
        """The last 24 hours of runs, with spans, as ingest would have stored them."""
        runs: list[Run] = []
        for agent in agents:
            profile = profiles[agent.pk]
            count = round(profile["rate"] * 1440 * 0.55)  # the daily cycle's mean
            for n in range(count):
                started = now - timedelta(seconds=self.rng.uniform(0, 86_400))
                duration = self.rng.lognormvariate(profile["latency"], 0.7)
                steps = self.rng.choice([5, 7, 9, 9, 9, 11, 15, 31])
                failed = self.rng.random() < profile["error"]
                runs.append(
                    Run(
                        project=project,
                        agent=agent,
                        trace_id=f"{agent.pk:08x}{n:024x}",
                        name=f"handle {self.rng.choice(TASKS)}",
                        version=agent.current_version,
                        user_id=f"user-{self.rng.randrange(400)}",
                        conversation_id=f"conv-{self.rng.randrange(3000)}",
                        task_type=self.rng.choice(TASKS),
                        team=agent.team,
                        status=Run.Status.ERROR if failed else Run.Status.OK,
                        started_at=started,
                        ended_at=started + timedelta(milliseconds=duration),
                        duration_ms=duration,
                        span_count=steps,
                        llm_calls=steps // 2,
                        tool_calls=steps // 2 - 1,
                        error_count=int(failed),
                        input_tokens=1200 * steps,
                        output_tokens=90 * steps,
                        cost_usd=Decimal(
                            str(
                                round(
                                    profile["cost"] * steps / 9 * self.rng.lognormvariate(0, 0.6), 6
                                )
                            )
                        ),
                    )  # fmt: skip
                )
        with transaction.atomic():
            Run.objects.bulk_create(runs, batch_size=5000)
        spans: list[Span] = []
        for run in Run.objects.filter(project=project).values_list(
            "pk", "agent_id", "trace_id", "started_at", "span_count", "status"
        ):
            pk, agent_id, trace_id, started, steps, status = run
            for i in range(min(steps, SPANS_PER_RUN)):
                kind = "agent" if i == 0 else ("llm" if i % 2 else "tool")
                provider, model = MODELS[i % 2] if kind == "llm" else ("", "")
                spans.append(
                    Span(
                        project_id=project.pk,
                        run_id=pk,
                        agent_id=agent_id,
                        trace_id=trace_id,
                        span_id=f"{i:016x}",
                        kind=kind,
                        name=f"step {i}",
                        started_at=started,
                        ended_at=started,
                        duration_ms=120.0,
                        provider=provider,
                        model=model,
                        tool_name=["lookup_order", "issue_refund", "search_kb"][i % 3]
                        if kind == "tool"
                        else "",
                        status="error" if status == "error" and i == 3 else "ok",
                        cost_usd=Decimal("0.0004") if kind == "llm" else None,
                    )  # fmt: skip
                )
            if len(spans) >= 20_000:
                Span.objects.bulk_create(spans, batch_size=5000)
                spans.clear()
        Span.objects.bulk_create(spans, batch_size=5000)

    def objectives(self, project, now) -> None:
        """The demo SLOs and budgets, evaluated once so some alerts fire."""
        from cockpit.budgets import evaluate_budgets
        from cockpit.slo import ensure_demo_objectives, evaluate_slos

        ensure_demo_objectives(project)
        evaluate_slos(now=now)
        evaluate_budgets(now=now)

    # --- Benchmark -----------------------------------------------------------------------------

    def bench(self, repeat: int) -> None:
        user, _ = User.objects.get_or_create(username="bench-dashboard", is_superuser=True)
        client = Client()
        client.force_login(user)
        agent = Agent.objects.filter(project__name=PROJECT).order_by("name").first()
        agents = Agent.objects.count()
        rows = Rollup.objects.count()
        self.stdout.write(f"{agents} agents, {rows:,} rollup rows, {Run.objects.count():,} runs")
        pages = {"fleet /": "/"}
        if agent is not None:
            pages[f"agent /agents/{agent.name}/ (24 h)"] = (
                f"/agents/{agent.name}/?window=24h&project={PROJECT}"
            )
        for label, url in pages.items():
            client.get(url)  # warm caches and the connection
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.status_code
            self.stdout.write(
                f"  {label:48s} p50 {statistics.median(times):6.1f} ms"
                f"  p95 {pct(times, 0.95):6.1f} ms  (n={repeat})"
            )
