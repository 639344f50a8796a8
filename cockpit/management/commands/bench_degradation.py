"""Benchmark degradation detection on the current database: a release comparison of the busiest
agent (latest version against the one before) and cohort scans, N times each; print figures.

    DATABASE_URL=postgresql://…/viewerbench python manage.py bench_degradation --repeat 3

Read-only: the session is set READ ONLY before anything runs, so it is safe against a shared
benchmark database. Databases without this app's tables (a store seeded by seed_runs before
they existed) are measured on what they have: scores and trait cohorts need the score and run
profile tables, and are left out, with a note, when those are missing.
"""

from __future__ import annotations

import statistics
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from cockpit import cohorts, regressions
from cockpit.models import RunProfile, Score
from traces.models import Agent, Run


class Command(BaseCommand):
    help = "Time a release comparison and cohort scans on this database (read-only)."

    def add_arguments(self, parser):
        parser.add_argument("--repeat", type=int, default=3)
        parser.add_argument("--agent", default="", help="Agent name (default: the busiest).")
        parser.add_argument("--a", default="", help="Version A (default: the one before B).")
        parser.add_argument("--b", default="", help="Version B (default: the latest).")
        parser.add_argument(
            "--keys",
            default="task_type,version",
            help="Cohort keys to scan fleet-wide, comma-separated (trait:<name> for traits).",
        )

    def handle(self, *args, repeat, agent, a, b, keys, **options):
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        tables = set(connection.introspection.table_names())
        has_scores = Score._meta.db_table in tables
        has_profiles = RunProfile._meta.db_table in tables
        now = timezone.now()
        total = Run.objects.count()
        self.stdout.write(f"database: {connection.settings_dict['NAME']} · {total:,} runs")
        target = self._agent(agent)
        if not a or not b:
            default_a, default_b = self._versions(target)
            a, b = a or default_a, b or default_b
        if not a or not b:
            raise CommandError(f"{target.name} has fewer than two versions to compare.")
        counts = dict(
            Run.objects.filter(agent=target, version__in=[a, b])
            .values_list("version")
            .annotate(n=Count("id"))
            .order_by()
        )
        self.stdout.write(
            f"release comparison: {target.name} {b} ({counts.get(b, 0):,} runs) against "
            f"{a} ({counts.get(a, 0):,} runs)" + ("" if has_scores else " · no score table")
        )
        timings = []
        for attempt in range(repeat):
            started = time.perf_counter()
            stages = []

            def progress(percent, stage, started=started, stages=stages):
                stages.append(f"{percent}% {stage} @{time.perf_counter() - started:.2f}s")

            result = regressions.compare_releases(
                target, a, b, now=now, include_scores=has_scores, progress=progress
            )
            timings.append(time.perf_counter() - started)
            if attempt == 0:
                for stage in stages:
                    self.stdout.write(f"  progress {stage}")
                self.stdout.write(
                    f"  sampled {result['sampled']['a']:,} + {result['sampled']['b']:,} runs; "
                    f"regressed: {', '.join(result['regressed']) or 'none'}"
                )
        self._report("release comparison", timings)
        for key in [k.strip() for k in keys.split(",") if k.strip()]:
            if key.startswith("trait:") and not has_profiles:
                self.stdout.write(f"cohort scan {key}: skipped (no run profile table)")
                continue
            timings = []
            for attempt in range(repeat):
                started = time.perf_counter()
                result = cohorts.scan(key, now=now)
                timings.append(time.perf_counter() - started)
                if attempt == 0:
                    self.stdout.write(
                        f"cohort scan {key} (fleet-wide): {result['runs']:,} runs in the "
                        f"windows, {result['agents']} agents, {result['cohorts']} cohorts "
                        f"tested, {len(result['findings'])} findings"
                    )
            self._report(f"cohort scan {key}", timings)

    def _agent(self, name: str) -> Agent:
        if name:
            agent = Agent.objects.filter(name=name).first()
            if agent is None:
                raise CommandError(f"No agent named {name!r}.")
            return agent
        busiest = Run.objects.values("agent_id").annotate(n=Count("id")).order_by("-n").first()
        if busiest is None:
            raise CommandError("No runs to benchmark.")
        return Agent.objects.get(pk=busiest["agent_id"])

    def _versions(self, agent: Agent) -> tuple[str | None, str | None]:
        """The latest version that ran, and the most recent other version before it."""
        runs = Run.objects.filter(agent=agent).exclude(version="").order_by("-started_at")
        latest = runs.values_list("version", flat=True).first()
        if latest is None:
            return None, None
        before = runs.exclude(version=latest).values_list("version", flat=True).first()
        return before, latest

    def _report(self, name: str, timings: list[float]) -> None:
        self.stdout.write(
            f"{name}: median {statistics.median(timings):.2f} s, best {min(timings):.2f} s, "
            f"worst {max(timings):.2f} s over {len(timings)} runs"
        )
