"""Benchmark the rollups: one fold pass per second of 5,000 spans/s traffic, and dashboard reads.

Fold: every simulated second stores RATE spans (about 9 per run, through traces.ingest) into
the current minute for --agents agents, then runs one fold pass and measures its wall time and
CPU: this process's plus the PostgreSQL backend's (read from /proc, so the database must run
on this machine). The fold rebuilds whole (10-second slice, agent) buckets, then their minutes
from their slices: the later in a slice, the more runs each pass rereads.

Live fold (--live): real time. A child process (this command with --ingest-for) ingests RATE
spans/s in tenth-of-a-second batches of runs starting now, printing each batch's commit time;
this process runs a fold pass every second, as beat does (at once when a pass overran), and
measures each pass's CPU (this thread's plus its backend's) and the tile latency: from a
batch's commit to the rollups_folded signal of the first pass that began after it.

Reads: seeds rollup rows directly for --agents agents over --days days (day rows, hour rows,
and minute rows with model and version dimensions for the last --minute-days days: dashboards
read minutes only for the last hours, so older minutes only make the table and its indexes
bigger), then times the fleet window (1 h and 24 h, all agents) and an agent page's reads
(24 h series in 15-minute steps, tokens by model, percentiles).
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.utils import timezone

from cockpit import histogram, rollups
from cockpit.models import FoldedRun, Rollup, RollupDirty, RollupWatermark
from traces.ingest import ingest_batch
from traces.models import Agent, Project, Run
from traces.normalise import NormalisedBatch, SpanRecord

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu() -> float:
    """CPU seconds used so far by this connection's PostgreSQL backend."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Command(BaseCommand):
    help = "Benchmark rollup folding and dashboard reads (PostgreSQL)."

    def add_arguments(self, parser):
        parser.add_argument("--agents", type=int, default=50)
        parser.add_argument("--rate", type=int, default=5000, help="spans per second")
        parser.add_argument("--seconds", type=int, default=60, help="simulated seconds")
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--minute-days", type=int, default=2)
        parser.add_argument("--skip-fold", action="store_true")
        parser.add_argument("--skip-reads", action="store_true")
        parser.add_argument("--reuse", action="store_true", help="reuse seeded rollups")
        parser.add_argument("--repeat", type=int, default=40)
        parser.add_argument("--live", action="store_true", help="real-time fold and latency")
        parser.add_argument("--ingest-for", type=float, help="(internal: the live ingest child)")

    def handle(self, *args, **options):
        self.rng = random.Random(1)
        # Fresh trace ids on every run (the same ones again would be duplicates, folded free).
        self.salt = random.SystemRandom().getrandbits(128)
        self.project, _ = Project.objects.get_or_create(name="bench-rollups")
        self.agents = [
            Agent.objects.get_or_create(project=self.project, name=f"bench-agent-{i:02d}")[0]
            for i in range(options["agents"])
        ]
        if options["ingest_for"]:
            self.ingest_live(options)
            return
        if options["live"]:
            self.bench_live(options)
        elif not options["skip_fold"]:
            self.bench_fold(options)
        if not options["skip_reads"]:
            self.bench_reads(options)

    # --- Fold ----------------------------------------------------------------------------
    def bench_fold(self, options):
        runs_per_second = options["rate"] // 9
        # Start the watermark now, so the passes fold only the simulated traffic.
        RollupWatermark.objects.update_or_create(
            name=rollups.FOLD_WATERMARK, defaults={"position": timezone.now()}
        )
        minute = timezone.now().replace(second=0, microsecond=0)
        walls, cpus, ingest_walls = [], [], []
        for second in range(options["seconds"]):
            at = minute + timedelta(seconds=second % 60)
            spans = [
                s
                for _ in range(runs_per_second)
                for s in self.run_spans(self.rng.choice(self.agents).name, at)
            ]
            started = time.perf_counter()
            for i in range(0, len(spans), 900):
                ingest_batch(self.project, NormalisedBatch(spans=spans[i : i + 900]))
            ingest_walls.append(time.perf_counter() - started)
            cpu0, db0, wall0 = time.process_time(), backend_cpu(), time.perf_counter()
            rollups.fold_pass(broadcast=False)
            walls.append(time.perf_counter() - wall0)
            cpus.append(time.process_time() - cpu0 + backend_cpu() - db0)
        self.stdout.write(
            f"fold: {options['seconds']} passes, one per simulated second of "
            f"{runs_per_second * 9} spans ({runs_per_second} runs) over {len(self.agents)} agents"
        )
        self.stdout.write(
            f"  pass wall  mean {statistics.mean(walls) * 1000:.0f} ms, p95 "
            f"{pct(walls, 0.95) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms"
        )
        self.stdout.write(
            f"  pass CPU   mean {statistics.mean(cpus):.3f} s (worker + database), p95 "
            f"{pct(cpus, 0.95):.3f} s  → {statistics.mean(cpus):.2f} of one core at 1 pass/s"
        )
        self.stdout.write(f"  (ingest of each second's spans, in-process: mean "
                          f"{statistics.mean(ingest_walls):.2f} s)")  # fmt: skip

    # --- Live fold -----------------------------------------------------------------------
    def ingest_live(self, options):
        """The child: RATE spans/s for --ingest-for seconds; one commit time per line."""
        tick = 0.1
        runs_per_tick = max(1, round(options["rate"] / 9 * tick))
        started = time.time()
        for i in range(int(options["ingest_for"] / tick)):
            at = timezone.now().replace(microsecond=0)
            spans = [
                s
                for _ in range(runs_per_tick)
                for s in self.run_spans(self.rng.choice(self.agents).name, at)
            ]
            delay = started + i * tick - time.time()
            if delay > 0:
                time.sleep(delay)
            ingest_batch(self.project, NormalisedBatch(spans=spans))
            self.stdout.write(f"{time.time():.6f}")
            self.stdout.flush()

    def bench_live(self, options):
        RollupWatermark.objects.update_or_create(
            name=rollups.FOLD_WATERMARK, defaults={"position": timezone.now()}
        )
        seconds = options["seconds"]
        child = subprocess.Popen(  # noqa: S603 - this interpreter running this command
            [sys.executable, sys.argv[0], "bench_rollups", "--ingest-for", str(seconds),
             "--rate", str(options["rate"]), "--agents", str(options["agents"])],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        passes = []  # (began, signalled, cpu seconds)
        signalled = []
        rollups.rollups_folded.connect(
            lambda sender, **kw: signalled.append(time.time()), weak=False
        )
        next_pass = time.time()
        while child.poll() is None:
            time.sleep(max(0.0, next_pass - time.time()))
            began = time.time()
            cpu0, db0 = time.thread_time(), backend_cpu()
            signalled.clear()
            rollups.fold_pass()
            cpu = time.thread_time() - cpu0 + backend_cpu() - db0
            passes.append((began, signalled[0] if signalled else time.time(), cpu))
            next_pass = began + 1.0
        rollups.fold_pass()  # the last batches
        passes.append((time.time(), time.time(), 0.0))
        commits = [float(line) for line in child.stdout.read().split()]
        latencies = []
        for committed in commits:
            done = next(end for began, end, _ in passes if began >= committed)
            latencies.append(done - committed)
        cpus = [cpu for _, _, cpu in passes[:-1]]
        wall = passes[-2][0] - passes[0][0] + 1.0
        self.stdout.write(
            f"live fold: {seconds} s of {options['rate']} spans/s over {len(self.agents)} agents "
            f"({len(commits)} ingest commits), {len(cpus)} passes"
        )
        self.stdout.write(
            f"  pass CPU   mean {statistics.mean(cpus):.3f} s (worker + database), p95 "
            f"{pct(cpus, 0.95):.3f} s  → {sum(cpus) / wall:.2f} of one core"
        )
        self.stdout.write(
            f"  tile latency (commit → pass committed + rollups_folded) p50 "
            f"{pct(latencies, 0.5):.2f} s, p95 {pct(latencies, 0.95):.2f} s, "
            f"max {max(latencies):.2f} s"
        )

    def run_spans(self, agent: str, second: datetime) -> list[SpanRecord]:
        rng = self.rng
        trace_id = f"{rng.getrandbits(128) ^ self.salt:032x}"
        root = f"{rng.getrandbits(64):016x}"
        start = second + timedelta(milliseconds=rng.uniform(0, 999))
        duration = rng.lognormvariate(7.5, 0.8)
        spans = [self.span(trace_id, root, "", "agent", start, duration, agent)]
        for step in range(8):
            kind = "llm" if step % 2 == 0 else "tool"
            at = start + timedelta(milliseconds=duration * step / 9)
            spans.append(
                self.span(
                    trace_id,
                    f"{rng.getrandbits(64):016x}",
                    root,
                    kind,
                    at,
                    rng.lognormvariate(6, 1),
                    agent,
                )  # fmt: skip
            )
        return spans

    def span(self, trace_id, span_id, parent, kind, start, ms, agent) -> SpanRecord:
        llm = kind == "llm"
        failing = self.rng.random() < 0.03
        return SpanRecord(
            trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=kind, kind=kind,
            operation="", started_at=start, ended_at=start + timedelta(milliseconds=ms),
            duration_ms=ms, status="error" if failing else "ok",
            error_type=self.rng.choice(["TimeoutError", "ValueError"]) if failing else "",
            provider="openai" if llm else "", model="gpt-4o-mini" if llm else "",
            input_tokens=1200 if llm else 0, output_tokens=90 if llm else 0,
            cost_usd=Decimal("0.00023") if llm else Decimal(0), agent_name=agent,
            agent_version="1.0", team="bench", task_type="triage", environment="prod",
        )  # fmt: skip

    # --- Reads ---------------------------------------------------------------------------
    def bench_reads(self, options):
        now = timezone.now()
        if not options["reuse"]:
            self.seed_rollups(now, options["days"], options["minute_days"])
        total = Rollup.objects.count()
        ids = [a.pk for a in self.agents]
        agent = ids[0]
        reads = {
            "fleet window 1 h (all agents)": lambda: rollups.agent_window(
                ids, now - timedelta(hours=1), now
            ),
            "fleet window 24 h (all agents)": lambda: rollups.agent_window(
                ids, now - timedelta(hours=24), now
            ),
            "fleet totals 30 d": lambda: rollups.fleet_totals(now - timedelta(days=30), now),
            "agent 24 h series, 15 min steps": lambda: rollups.series(
                agent, now - timedelta(hours=24), now, timedelta(minutes=15)
            ),
            "agent 24 h tokens by model, 15 min": lambda: rollups.breakdown_series(
                agent, "model", now - timedelta(hours=24), now, timedelta(minutes=15)
            ),
            "agent 30 d series, daily": lambda: rollups.series(
                agent, now - timedelta(days=30), now, timedelta(days=1)
            ),
        }
        self.stdout.write(f"reads: {total:,} rollup rows, {len(ids)} agents")
        for name, read in reads.items():
            read()  # warm the cache
            times = []
            for _ in range(options["repeat"]):
                started = time.perf_counter()
                read()
                times.append((time.perf_counter() - started) * 1000)
            self.stdout.write(
                f"  {name:38s} p50 {pct(times, 0.5):6.1f} ms  p95 {pct(times, 0.95):6.1f} ms"
            )

    def seed_rollups(self, now, days, minute_days):
        """Rows as the fold and coarse passes would leave them, written directly."""
        ids = [a.pk for a in self.agents]
        Rollup.objects.filter(agent_id__in=ids).delete()
        RollupDirty.objects.filter(agent_id__in=ids).delete()
        FoldedRun.objects.filter(agent_id__in=ids).delete()
        Run.objects.filter(project=self.project).delete()
        day0 = (now - timedelta(days=days)).replace(hour=0, minute=0, second=0, microsecond=0)
        batch: list[Rollup] = []

        def add(resolution, start, scale):
            for agent_id in ids:
                for dim_kind, values in (("", [""]), ("model", ["gpt-4o-mini", "claude-x"]),
                                         ("version", ["1.0"])):  # fmt: skip
                    if resolution != "1m" and dim_kind == "version":
                        continue
                    for value in values:
                        batch.append(self.row(resolution, start, agent_id, dim_kind, value, scale))
            if len(batch) >= 20_000:
                flush()

        def flush():
            with transaction.atomic():
                Rollup.objects.bulk_create(batch, batch_size=5000)
            batch.clear()

        for d in range(days + 1):
            add("1d", day0 + timedelta(days=d), 1440)
        for h in range((days + 1) * 24):
            add("1h", day0 + timedelta(hours=h), 60)
        minute0 = (now - timedelta(days=minute_days)).replace(second=0, microsecond=0)
        for m in range(minute_days * 1440 + 1):
            add("1m", minute0 + timedelta(minutes=m), 1)
        flush()
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE cockpit_rollup")

    def row(self, resolution, start, agent_id, dim_kind, value, scale) -> Rollup:
        rng = self.rng
        runs = 5 * scale
        hist = {}
        for _ in range(40):
            index = histogram.bucket_of(rng.lognormvariate(7.5, 0.8))
            hist[str(index)] = hist.get(str(index), 0) + runs // 40 + 1
        return Rollup(
            resolution=resolution, bucket_start=start.astimezone(UTC), project_id=self.project.pk,
            agent_id=agent_id, dim_kind=dim_kind, dim_value=value, runs=runs,
            successes=runs - scale, failures=scale, error_runs=scale, spans=9 * runs,
            llm_calls=4 * runs, tool_calls=4 * runs, input_tokens=4800 * runs,
            output_tokens=360 * runs, cost_usd=Decimal("0.00092") * runs,
            duration_ms_sum=1800.0 * runs, run_hist=hist, llm_hist=hist, tool_hist=hist,
            errors_by_type={"TimeoutError": scale},
        )  # fmt: skip
