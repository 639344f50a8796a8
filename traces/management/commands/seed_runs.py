"""Seed PostgreSQL with synthetic runs and spans for the viewer benchmark, fast (COPY).

    python manage.py seed_runs --runs 1000000 --spans-per-run 10

Runs and spans look like a real fleet: 50 agents of uneven traffic with a few versions each,
a main model per agent, users and conversations, outcomes, log-normal durations, token costs,
failing tool calls, PII flags, prompts, tool calls and answers as content. Run summaries
agree with their spans, as ingest would have written them. Ids are reserved from the tables'
sequences, so seeding next to live ingest is safe. On empty tables the secondary indexes are
dropped for the load and rebuilt after, which is several times faster than maintaining them.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from traces import search
from traces.models import Agent, Project, Run

AGENT_WORDS = [
    "support", "refunds", "kyc", "sales", "billing", "claims", "onboarding", "returns",
    "shipping", "fraud", "compliance", "scheduling", "research", "triage", "collections",
    "payroll", "travel", "procurement", "hr", "legal", "security", "marketing", "pricing",
    "inventory", "warranty",
]  # fmt: skip
# (provider, model, $ per M input tokens, $ per M output tokens)
MODELS = [
    ("openai", "gpt-4o-mini", 0.15, 0.60),
    ("openai", "gpt-4o", 2.50, 10.00),
    ("anthropic", "claude-sonnet-4-0", 3.00, 15.00),
    ("anthropic", "claude-3-5-haiku-latest", 0.80, 4.00),
    ("google", "gemini-2.5-flash", 0.30, 2.50),
    ("openai", "o3", 2.00, 8.00),
    ("mistral", "mistral-large-latest", 2.00, 6.00),
]
MODEL_WEIGHTS = [35, 20, 18, 12, 8, 5, 2]
TOOLS = [
    "lookup_order", "search_kb", "issue_refund", "send_email", "get_customer", "update_ticket",
    "check_inventory", "create_invoice", "verify_identity", "schedule_callback",
]  # fmt: skip
TASK_TYPES = [
    "refund", "order-status", "account-change", "complaint", "kyc-check", "invoice", "return",
    "shipping-delay", "cancellation", "upgrade", "fraud-review", "faq",
]  # fmt: skip
OUTCOMES = [("success", 78), ("failure", 6), ("escalated", 5), ("abandoned", 2), ("", 9)]
PRODUCTS = ["headphones", "laptop", "blender", "running shoes", "desk lamp", "coffee grinder",
            "backpack", "monitor", "keyboard", "phone case", "air purifier", "kettle"]  # fmt: skip
REQUESTS = [
    "Where is my order {n}? The {p} was due on Monday and tracking has not moved.",
    "Please refund the duplicate charge for the {p}, order {n}.",
    "I want to return the {p} from order {n}, it stopped working after two days.",
    "Can you change the delivery address of order {n} before it ships?",
    "My invoice {n} lists the {p} twice, please correct it.",
    "Is the {p} back in stock? I have been waiting since order {n} was cancelled.",
    "I was charged for the {p} but never received it, order {n}. I will file a chargeback.",
    "Why was my account locked after I bought the {p}? Reference {n}.",
    "Please cancel my subscription and confirm by email, customer number {n}.",
    "The warranty claim for my {p} (order {n}) was rejected, I want to appeal.",
]
ANSWERS = [
    "I found order {n}: the {p} left our warehouse yesterday and should arrive within two days.",
    "I have issued a refund for the {p} on order {n}; it will show on your card in 3-5 days.",
    "A return label for the {p} is on its way to your inbox. Order {n} is marked for return.",
    "I escalated order {n} to a specialist who will contact you within 24 hours.",
    "The duplicate line for the {p} is removed; a corrected invoice {n} is attached.",
    "Your account is unlocked. The purchase of the {p} ({n}) was flagged by mistake.",
]
SYSTEM_PROMPT = (
    "You are a careful customer-support agent for an online shop. Use the tools to look up "
    "orders and customers before answering. Never promise refunds above the policy limit. "
    "Escalate to a human when the customer is angry or the amount is above 500 dollars."
)
PII_SNIPPETS = ["my email is jane.doe@example.com", "call me on +44 20 7946 0958",
                "card 4242 4242 4242 4242"]  # fmt: skip
ERRORS = [("TimeoutError", "upstream did not answer within 10 s"),
          ("HTTPError", "502 Bad Gateway from orders-api"),
          ("ValidationError", "amount must be positive")]  # fmt: skip

RUN_COLUMNS = (
    "id", "project_id", "trace_id", "agent_id", "name", "version", "conversation_id",
    "session_id", "user_id", "task_type", "team", "outcome", "status", "started_at",
    "ended_at", "duration_ms", "span_count", "llm_calls", "tool_calls", "error_count",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
    "cost_known", "pii_count", "updated_at",
)  # fmt: skip
SPAN_COLUMNS = (
    "project_id", "run_id", "agent_id", "trace_id", "span_id", "parent_span_id", "kind", "name",
    "operation", "started_at", "ended_at", "duration_ms", "status", "error_type",
    "error_message", "provider", "model", "tool_name", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "reasoning_tokens", "cost_usd", "cost_known",
    "attributes", "resource", "events", "input", "output", "input_format", "output_format",
    "input_truncated", "output_truncated", "pii", "secrets_redacted", "ingested_at",
)  # fmt: skip
MS = timedelta(milliseconds=1)


@dataclass
class Fleet:
    """What runs are drawn from: agents with their versions, model, team; users; texts."""

    project: Project
    agents: list[Agent]
    agent_weights: list[float]
    agent_model: dict[int, int]
    versions: dict[int, list[str]]
    texts: dict[str, list[str]] = field(default_factory=dict)


def make_fleet(project: Project, rng: random.Random, agent_count: int = 50) -> Fleet:
    agents = []
    for i in range(agent_count):
        name = f"{AGENT_WORDS[i % len(AGENT_WORDS)]}-agent"
        if i >= len(AGENT_WORDS):
            name = f"{AGENT_WORDS[i % len(AGENT_WORDS)]}-assistant"
        agent, _ = Agent.objects.get_or_create(
            project=project, name=name, defaults={"team": AGENT_WORDS[(i * 7) % 10]}
        )
        agents.append(agent)
    versions = {
        a.pk: [f"1.{i}.{rng.randint(0, 9)}" for i in range(rng.randint(2, 4))] for a in agents
    }
    for agent in agents:
        Agent.objects.filter(pk=agent.pk).update(current_version=versions[agent.pk][-1])
    fleet = Fleet(
        project=project,
        agents=agents,
        # Uneven traffic, as in a real fleet: a few busy agents, a long tail.
        agent_weights=[1 / (i + 1) ** 0.8 for i in range(agent_count)],
        agent_model={a.pk: rng.choices(range(len(MODELS)), MODEL_WEIGHTS)[0] for a in agents},
        versions=versions,
    )
    fleet.texts = _text_pools(rng)
    return fleet


def _text_pools(rng: random.Random, size: int = 4000) -> dict[str, list[str]]:
    """Pools of prompts, answers and tool payloads to draw from: generating text per span
    would cost more than writing it."""

    def fill(template: str) -> str:
        return template.format(n=rng.randint(10000, 99999), p=rng.choice(PRODUCTS))

    requests = [fill(rng.choice(REQUESTS)) for _ in range(size)]
    answers = [fill(rng.choice(ANSWERS)) for _ in range(size)]
    return {
        "request": requests,
        "answer": answers,
        "llm_input": [
            json.dumps(
                [
                    {"role": "system", "content": SYSTEM_PROMPT},
                    {"role": "user", "content": requests[i]},
                ]
            )
            for i in range(size)
        ],
        "llm_output": [json.dumps([{"role": "assistant", "content": a}]) for a in answers],
        "tool_input": [
            json.dumps({"order_id": rng.randint(10000, 99999), "include": ["items", "payments"]})
            for _ in range(size)
        ],
        "tool_output": [
            json.dumps(
                {
                    "status": rng.choice(["shipped", "delivered", "pending", "cancelled"]),
                    "items": [{"name": rng.choice(PRODUCTS), "qty": rng.randint(1, 3)}],
                    "total": round(rng.uniform(5, 900), 2),
                }
            )
            for _ in range(size)
        ],
    }


@dataclass
class Totals:
    runs: int = 0
    spans: int = 0


class RunWriter:
    """Builds run and span rows for COPY. One instance per seeding command."""

    def __init__(self, fleet: Fleet, rng: random.Random, spans_per_run: int, now: datetime):
        self.fleet = fleet
        self.rng = rng
        self.spans_per_run = spans_per_run
        self.now = now
        self.resource_json = {
            a.pk: json.dumps({"service.name": a.name, "deployment.environment.name": "prod"})
            for a in fleet.agents
        }
        self.span_seq = 0

    def run_rows(self, run_id: int, started_at: datetime, span_total: int | None = None):
        """(run row, [span rows]) of one run."""
        rng, fleet, texts = self.rng, self.fleet, self.fleet.texts
        agent = rng.choices(fleet.agents, fleet.agent_weights)[0]
        versions = fleet.versions[agent.pk]
        # Newer runs run newer versions: the version follows the run's age.
        age = min(max((self.now - started_at) / timedelta(days=30), 0), 0.999)
        version = versions[int((1 - age) * len(versions))]
        model_index = fleet.agent_model[agent.pk]
        if rng.random() < 0.1:
            model_index = rng.choices(range(len(MODELS)), MODEL_WEIGHTS)[0]
        provider, model, in_price, out_price = MODELS[model_index]
        outcome = rng.choices([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])[0]
        failing = outcome == "failure" or rng.random() < 0.04
        has_pii = rng.random() < 0.04
        running = rng.random() < 0.003
        user_n = int(rng.paretovariate(1.2)) % 20000 if rng.random() < 0.85 else None
        user_id = f"user-{user_n:05d}" if user_n is not None else ""
        conversation_id = (
            f"conv-{user_n:05d}-{started_at:%m%d}"
            if user_n is not None and rng.random() < 0.5
            else ""
        )
        task_type = rng.choice(TASK_TYPES)
        duration_ms = min(rng.lognormvariate(math.log(3000), 0.9), 600_000)
        n_spans = span_total or rng.randint(max(2, self.spans_per_run - 6), self.spans_per_run + 6)
        trace_id = f"{run_id:016x}{rng.getrandbits(64):016x}"
        text_i = rng.randrange(len(texts["request"]))
        request = texts["request"][text_i]
        if has_pii:
            request = f"{request} {rng.choice(PII_SNIPPETS)}"
        root_id = f"{rng.getrandbits(64):016x}"
        pid, aid = fleet.project.pk, agent.pk
        resource = self.resource_json[aid]
        ended_at = started_at + duration_ms * MS
        spans = []
        counts = {"llm": 0, "tool": 0, "error": 0, "in": 0, "out": 0, "cache": 0, "pii": 0}
        cost = Decimal(0)
        name = f"{task_type} for {user_id or 'anonymous'}"
        root_status = "error" if failing and outcome == "failure" else "ok"
        if not running:
            spans.append(
                [pid, run_id, aid, trace_id, root_id, "", "agent", f"invoke_agent {agent.name}",
                 "invoke_agent", started_at, ended_at, duration_ms, root_status, "", "", "", "",
                 "", 0, 0, 0, 0, 0, None, True, "{}", resource, "[]", request,
                 texts["answer"][text_i], "text", "text", False, False,
                 '{"email": 1}' if has_pii else "{}", 0, self.now]
            )  # fmt: skip
            counts["pii"] += 1 if has_pii else 0
            counts["error"] += root_status == "error"
        step = duration_ms / max(n_spans - 1, 1)
        failing_step = rng.randrange(1, n_spans) if failing and n_spans > 1 else -1
        for i in range(1, n_spans):
            at = started_at + (i - 1) * step * MS
            ms = step * rng.uniform(0.5, 0.95)
            span_id = f"{rng.getrandbits(64):016x}"
            j = rng.randrange(len(texts["request"]))
            if i % 2 == 1:  # an LLM call, then a tool call, in turn
                tokens_in = rng.randint(400, 4000)
                tokens_out = rng.randint(20, 600)
                cached = tokens_in // 2 if rng.random() < 0.3 else 0
                span_cost = (
                    Decimal(tokens_in * in_price + tokens_out * out_price) / 1_000_000
                ).quantize(Decimal("0.00000001"))
                cost += span_cost
                counts["llm"] += 1
                counts["in"] += tokens_in
                counts["out"] += tokens_out
                counts["cache"] += cached
                spans.append(
                    [pid, run_id, aid, trace_id, span_id, root_id, "llm", f"chat {model}", "chat",
                     at, at + ms * MS, ms, "ok", "", "", provider, model, "", tokens_in,
                     tokens_out, cached, 0, 0, span_cost, True,
                     '{"gen_ai.request.temperature": 0.2}', resource, "[]",
                     texts["llm_input"][j], texts["llm_output"][j], "messages", "messages",
                     False, False, "{}", 0, self.now]
                )  # fmt: skip
            else:
                tool = TOOLS[j % len(TOOLS)]
                error = ERRORS[j % len(ERRORS)] if i == failing_step else None
                counts["tool"] += 1
                spans.append(
                    [pid, run_id, aid, trace_id, span_id, root_id, "tool",
                     f"execute_tool {tool}", "execute_tool", at, at + ms * MS, ms,
                     "error" if error else "ok", error[0] if error else "",
                     error[1] if error else "", "", "", tool, 0, 0, 0, 0, 0, None, True, "{}",
                     resource, "[]", texts["tool_input"][j],
                     "" if error else texts["tool_output"][j], "json", "json", False, False,
                     "{}", 0, self.now]
                )  # fmt: skip
            if i == failing_step and i % 2 == 1:
                spans[-1][12] = "error"
                spans[-1][13], spans[-1][14] = ERRORS[0]
            counts["error"] += spans[-1][12] == "error"
        status = "running" if running else ("error" if root_status == "error" else "ok")
        run = (
            run_id, pid, trace_id, aid, name, version, conversation_id, "", user_id, task_type,
            agent.team, outcome, status, started_at, ended_at, duration_ms, len(spans),
            counts["llm"], counts["tool"], counts["error"], counts["in"], counts["out"],
            counts["cache"], 0, cost, True, counts["pii"], ended_at,
        )  # fmt: skip
        return run, spans


def reserve_ids(cursor, table: str, count: int) -> int:
    """The first of `count` consecutive ids taken from the table's sequence."""
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    sequence = cursor.fetchone()[0]
    cursor.execute("SELECT nextval(%s)", [sequence])
    first = cursor.fetchone()[0]
    cursor.execute("SELECT setval(%s, %s)", [sequence, first + count - 1])
    return first


# Indexes that are not constraints; dropped for a load into empty tables and rebuilt after.
SECONDARY_INDEXES_SQL = """
    SELECT i.indexname, i.indexdef FROM pg_indexes i
    WHERE i.tablename IN ('traces_run', 'traces_span') AND i.schemaname = current_schema()
      AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)
"""


def write_runs(cursor, writer: RunWriter, run_ids_and_starts) -> Totals:
    runs, spans = [], []
    for run_id, started_at in run_ids_and_starts:
        run, run_spans = writer.run_rows(run_id, started_at)
        runs.append(run)
        spans.extend(run_spans)
    copy_rows(cursor, "traces_run", RUN_COLUMNS, runs)
    copy_rows(cursor, "traces_span", SPAN_COLUMNS, spans)
    return Totals(runs=len(runs), spans=len(spans))


def copy_rows(cursor, table: str, columns, rows) -> None:
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def seed_big_run(project: Project, spans: int, *, trace_id: str, seed: int = 7) -> Run:
    """One run of `spans` spans (a deep agent loop), for the run page benchmark."""
    rng = random.Random(seed)
    fleet = make_fleet(project, rng)
    now = timezone.now()
    writer = RunWriter(fleet, rng, spans, now)
    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor
        Run.objects.filter(project=project, trace_id=trace_id).delete()
        run_id = reserve_ids(cursor, "traces_run", 1)
        run, rows = writer.run_rows(run_id, now - timedelta(hours=1), span_total=spans)
        run = (*run[:2], trace_id, *run[3:])
        for row in rows:
            row[3] = trace_id
        # Nest the steps: every tenth span opens a sub-agent the next ones hang under.
        parent = rows[0][4]
        for i, row in enumerate(rows[1:], start=1):
            row[5] = parent
            if i % 10 == 0:
                parent = row[4]
        copy_rows(cursor, "traces_run", RUN_COLUMNS, [run])
        copy_rows(cursor, "traces_span", SPAN_COLUMNS, rows)
    return Run.objects.get(pk=run_id)


class Command(BaseCommand):
    help = "Seed PostgreSQL with synthetic runs and spans (COPY) for the viewer benchmark."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=20_000)
        parser.add_argument("--spans-per-run", type=int, default=10, help="on average")
        parser.add_argument("--project", default="viewer-bench")
        parser.add_argument("--days", type=int, default=30, help="runs start over this many days")
        parser.add_argument("--chunk", type=int, default=20_000, help="runs per transaction")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--keep-indexes",
            action="store_true",
            help="never drop indexes for the load, even into empty tables",
        )

    def handle(
        self, *args, runs, spans_per_run, project, days, chunk, seed, keep_indexes, **options
    ):
        if connection.vendor != "postgresql":
            raise CommandError("seed_runs writes with COPY: set DATABASE_URL to PostgreSQL.")
        if runs < 1 or spans_per_run < 2:
            raise CommandError("--runs must be at least 1 and --spans-per-run at least 2.")
        rng = random.Random(seed)
        project_row, _ = Project.objects.get_or_create(name=project)
        fleet = make_fleet(project_row, rng)
        now = timezone.now().replace(microsecond=0)
        writer = RunWriter(fleet, rng, spans_per_run, now)
        first = now - timedelta(days=days)
        spacing = timedelta(days=days) / runs
        started = time.monotonic()
        dropped = [] if keep_indexes else self._drop_indexes_if_empty()
        totals = Totals()
        with connection.cursor() as django_cursor:
            cursor = django_cursor.cursor  # psycopg's own cursor, for COPY
            first_id = reserve_ids(cursor, "traces_run", runs)
            for offset in range(0, runs, chunk):
                batch = range(offset, min(offset + chunk, runs))
                with transaction.atomic():
                    done = write_runs(
                        cursor,
                        writer,
                        (
                            (first_id + i, first + spacing * i + rng.random() * spacing)
                            for i in batch
                        ),
                    )
                totals.runs += done.runs
                totals.spans += done.spans
                elapsed = time.monotonic() - started
                self.stdout.write(
                    f"{totals.runs:>10,} runs {totals.spans:>12,} spans  {elapsed:7.1f} s  "
                    f"{totals.spans / elapsed:,.0f} spans/s"
                )
            if dropped:
                self._rebuild_indexes(cursor, dropped, started)
            self.stdout.write("Analysing the tables…")
            cursor.execute("ANALYZE traces_run")
            cursor.execute("ANALYZE traces_span")
        self._index_content(started)
        elapsed = time.monotonic() - started
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {totals.runs:,} runs and {totals.spans:,} spans into project "
                f"{project} in {elapsed:.1f} s."
            )
        )

    def _index_content(self, started) -> None:
        """Search documents for the new runs, as the indexer task would write them."""
        self.stdout.write("Indexing run content for search…")
        indexed = 0
        while True:
            read = search.index_pass()
            indexed += read
            if read < search.INDEX_BATCH:
                break
            if indexed % (50 * search.INDEX_BATCH) == 0:
                self.stdout.write(
                    f"{indexed:>10,} runs indexed  {time.monotonic() - started:7.1f} s"
                )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE traces_runsearch")
        self.stdout.write(f"Content indexed at {time.monotonic() - started:.1f} s.")

    def _drop_indexes_if_empty(self) -> list[tuple[str, str]]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT EXISTS (SELECT 1 FROM traces_span)")
            if cursor.fetchone()[0]:
                return []
            cursor.execute(SECONDARY_INDEXES_SQL)
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        self.stdout.write(f"Empty tables: {len(indexes)} indexes dropped for the load.")
        return indexes

    def _rebuild_indexes(self, cursor, indexes, started) -> None:
        cursor.execute("SET maintenance_work_mem = '1GB'")
        for name, definition in indexes:
            self.stdout.write(f"Building {name}…")
            cursor.execute(definition)
        self.stdout.write(f"Indexes rebuilt at {time.monotonic() - started:.1f} s.")
