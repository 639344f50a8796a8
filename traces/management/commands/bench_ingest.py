"""Measure OTLP ingest against a running server, then check that what was acknowledged is stored.

    python manage.py bench_ingest --url http://127.0.0.1:8765 --key ck_… --duration 30 \\
        --server-pid $(pgrep -of 'uvicorn cockpit.asgi')

Batches are protobuf-encoded before the clock starts, so the generator is never measured.
Each trace id starts with a tag of this bench run, which is how the check finds its spans.
Only loopback servers are accepted: this is a load generator.
"""

import http.client
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from traces.models import IngestKey, Run
from traces.models import Span as StoredSpan

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
AGENTS = ["support-triage", "refunds", "kyc-review", "sales-outreach", "incident-scribe"]
MODELS = [
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("anthropic", "claude-sonnet-4-0"),
]
TOOLS = ["lookup_order", "search_kb", "issue_refund", "send_email", "get_customer"]
QUESTIONS = [
    "Where is my order 4417? It was due on Monday.",
    "Please refund the duplicate charge on my card ending 4242.",
    "Can you update my email to jane.doe@example.com?",
    "The export keeps failing with a timeout, what should I do?",
]
TEMPLATES = 400  # distinct traces to draw batches from
MS = 1_000_000


def attributes(values: dict) -> list[KeyValue]:
    out = []
    for key, value in values.items():
        if isinstance(value, int):
            out.append(KeyValue(key=key, value=AnyValue(int_value=value)))
        else:
            out.append(KeyValue(key=key, value=AnyValue(string_value=str(value))))
    return out


def span(trace_id, span_id, parent, name, start_ns, ms, values, error=False) -> Span:
    item = Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_INTERNAL if parent else Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + ms * MS,
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_OK),
    )
    item.attributes.extend(attributes(values))
    return item


def trace_template(rng: random.Random, trace_id: bytes) -> bytes:
    """One multi-step agent run (9 spans) as a serialised one-trace export request."""
    agent = rng.choice(AGENTS)
    start = time.time_ns() - rng.randint(60, 3600) * 1_000_000_000
    root = rng.randbytes(8)
    question = rng.choice(QUESTIONS)
    spans = [
        span(
            trace_id,
            root,
            b"",
            f"invoke_agent {agent}",
            start,
            4200,
            {
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": agent,
                "gen_ai.conversation.id": f"conv-{rng.randint(1, 5000)}",
                "user.id": f"user-{rng.randint(1, 900)}",
                "cockpit.task.type": rng.choice(["refund", "lookup", "triage"]),
            },
        )
    ]
    at = start + 50 * MS
    for step in range(4):
        provider, model = rng.choice(MODELS)
        spans.append(
            span(
                trace_id,
                rng.randbytes(8),
                root,
                f"chat {model}",
                at,
                rng.randint(300, 900),
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": provider,
                    "gen_ai.request.model": model,
                    "gen_ai.response.model": model,
                    "gen_ai.usage.input_tokens": rng.randint(400, 6000),
                    "gen_ai.usage.output_tokens": rng.randint(20, 600),
                    "gen_ai.usage.cache_read.input_tokens": rng.choice([0, 0, 256, 1024]),
                    "gen_ai.input.messages": json.dumps(
                        [{"role": "user", "parts": [{"type": "text", "content": question}]}]
                    ),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": "On it."}]}]
                    ),
                },
            )
        )
        at += 950 * MS
        if step == 3:
            break
        tool = rng.choice(TOOLS)
        spans.append(
            span(
                trace_id,
                rng.randbytes(8),
                root,
                f"execute_tool {tool}",
                at,
                rng.randint(20, 200),
                {
                    "gen_ai.operation.name": "execute_tool",
                    "gen_ai.tool.name": tool,
                    "gen_ai.tool.call.id": f"call_{rng.randbytes(6).hex()}",
                    "gen_ai.tool.call.arguments": json.dumps({"order_id": rng.randint(1, 99999)}),
                    "gen_ai.tool.call.result": json.dumps({"status": "shipped", "eta": "2d"}),
                },
                error=rng.random() < 0.03,
            )
        )
        at += 210 * MS
    spans.append(
        span(
            trace_id,
            rng.randbytes(8),
            root,
            "retrieval kb",
            start + 20 * MS,
            25,
            {"gen_ai.operation.name": "retrieval", "gen_ai.data_source.id": "kb-main"},
        )
    )
    request = ExportTraceServiceRequest()
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(
        attributes(
            {
                "service.name": agent,
                "service.version": "2.4.1",
                "deployment.environment.name": "production",
            }
        )
    )
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "bench"
    scope_spans.spans.extend(spans)
    request.resource_spans.append(resource_spans)
    return request.SerializeToString()


@dataclass
class Batches:
    """The pre-encoded bodies, handed out one at a time to the client threads."""

    bodies: list[bytes]
    spans_per_batch: int
    next_index: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bytes | None:
        with self.lock:
            if self.next_index >= len(self.bodies):
                return None
            self.next_index += 1
            return self.bodies[self.next_index - 1]


def build_batches(tag: bytes, count: int, traces_per_batch: int) -> Batches:
    """Serialised requests are concatenations of one-trace requests (protobuf merges them);
    each copy of a template gets a fresh trace id that starts with this run's tag."""
    rng = random.Random(int.from_bytes(tag, "big"))
    templates = []
    for _ in range(TEMPLATES):
        placeholder = rng.randbytes(16)
        templates.append((placeholder, trace_template(rng, placeholder)))
    bodies = []
    for _ in range(count):
        parts = []
        for placeholder, body in rng.choices(templates, k=traces_per_batch):
            parts.append(body.replace(placeholder, tag + os.urandom(16 - len(tag))))
        bodies.append(b"".join(parts))
    return Batches(bodies=bodies, spans_per_batch=9 * traces_per_batch)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    acknowledged: int = 0
    requests: int = 0
    retried: int = 0
    failed: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client_loop(
    host, port, key, batches: Batches, tally: Tally, deadline: float, keep_alive: bool
) -> None:
    """Send batches until none are left or the deadline passes.

    Without keep_alive each batch goes on a new connection, so every request is accepted by
    whichever server worker is free, as behind a load balancer. With it, each client stays on
    the worker that accepted its first connection, and 4 clients may land 3:1 on 2 workers.
    """
    connection = http.client.HTTPConnection(host, port, timeout=60)
    headers = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {key}"}
    if not keep_alive:
        headers["Connection"] = "close"
    body = batches.take()
    while body is not None and time.monotonic() < deadline:
        started = time.perf_counter()
        try:
            connection.request("POST", "/v1/traces", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            if not keep_alive:
                connection.close()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            with tally.lock:
                tally.failed[type(error).__name__] = tally.failed.get(type(error).__name__, 0) + 1
            time.sleep(0.5)
            continue
        elapsed = time.perf_counter() - started
        if response.status in (429, 503):
            with tally.lock:
                tally.retried += 1
            time.sleep(float(response.getheader("Retry-After", "1")) / 10)
            continue  # the same body again: retries are what real exporters do
        with tally.lock:
            tally.requests += 1
            tally.latencies.append(elapsed)
            if response.status == 200:
                rejected = ExportTraceServiceResponse.FromString(payload).partial_success
                tally.acknowledged += batches.spans_per_batch - rejected.rejected_spans
            else:
                tally.failed[response.status] = tally.failed.get(response.status, 0) + 1
        body = batches.take()
    connection.close()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in children:
            pids += process_tree(int(child))
    return pids


def watch_rss(pid: int, peaks: dict, stop: threading.Event) -> None:
    while not stop.is_set():
        for member in process_tree(pid):
            peaks[member] = max(peaks.get(member, 0), rss_kib(member))
        stop.wait(0.5)


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


class Command(BaseCommand):
    help = "Send realistic OTLP batches from concurrent clients and report ingest throughput."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--key", required=True, help="An ingest key of the target project.")
        parser.add_argument("--clients", type=int, default=4)
        parser.add_argument("--traces-per-batch", type=int, default=100)
        parser.add_argument("--batches", type=int, default=1000, help="Batches prepared (max).")
        parser.add_argument("--duration", type=float, default=30.0, help="Seconds, at most.")
        parser.add_argument("--server-pid", type=int, help="Report this process tree's RSS.")
        parser.add_argument(
            "--keep-alive",
            action="store_true",
            help="Reuse each client's connection (default: a new connection per batch).",
        )

    def handle(self, *args, url, key, clients, traces_per_batch, batches, duration, **options):
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK:
            raise CommandError(
                "--url must be an http:// loopback address, e.g. http://127.0.0.1:8000"
            )
        ingest_key = IngestKey.authenticate(key)
        if ingest_key is None:
            raise CommandError("--key is not an active ingest key in this database.")
        if min(clients, traces_per_batch, batches) < 1 or duration <= 0:
            raise CommandError(
                "--clients, --traces-per-batch, --batches and --duration must be > 0."
            )

        tag = os.urandom(4)
        self.stderr.write(f"Encoding {batches} batches of {traces_per_batch} traces…")
        prepared = build_batches(tag, batches, traces_per_batch)
        size = sum(map(len, prepared.bodies)) / len(prepared.bodies)
        self.stderr.write(f"  {size / 1024:.0f} KiB per batch; tag {tag.hex()}")

        peaks: dict[int, int] = {}
        stop = threading.Event()
        if options["server_pid"]:
            threading.Thread(
                target=watch_rss, args=(options["server_pid"], peaks, stop), daemon=True
            ).start()
        tally = Tally()
        started = time.monotonic()
        threads = [
            threading.Thread(
                target=client_loop,
                args=(
                    parts.hostname,
                    parts.port or 80,
                    key,
                    prepared,
                    tally,
                    started + duration,
                    options["keep_alive"],
                ),
            )
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        stop.set()
        self.report(tally, elapsed, peaks, options["server_pid"])
        self.verify(ingest_key.project, tag, tally)

    def report(self, tally: Tally, elapsed: float, peaks: dict, server_pid) -> None:
        latencies = sorted(tally.latencies)
        self.stdout.write(f"elapsed          {elapsed:.1f} s")
        self.stdout.write(f"requests         {tally.requests} ({tally.requests / elapsed:.1f}/s)")
        self.stdout.write(
            f"spans acked      {tally.acknowledged} ({tally.acknowledged / elapsed:,.0f} spans/s)"
        )
        self.stdout.write(
            f"latency          p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms"
        )
        self.stdout.write(f"503/429 retried  {tally.retried}; failures {tally.failed or 'none'}")
        if server_pid:
            per_process = ", ".join(
                f"{pid}: {kib / 1024:.0f} MiB" for pid, kib in sorted(peaks.items())
            )
            self.stdout.write(
                f"server peak RSS  {per_process} (sum {sum(peaks.values()) / 1024:.0f} MiB)"
            )

    def verify(self, project, tag: bytes, tally: Tally) -> None:
        bench_spans = StoredSpan.objects.filter(project=project, trace_id__startswith=tag.hex())
        stored = bench_spans.count()
        runs = Run.objects.filter(project=project, trace_id__startswith=tag.hex())
        summarised = sum(runs.values_list("span_count", flat=True))
        verdict = "OK" if stored == tally.acknowledged == summarised else "MISMATCH"
        self.stdout.write(
            f"stored spans     {stored} (acknowledged {tally.acknowledged}, "
            f"run summaries count {summarised}) {verdict}"
        )
        if verdict != "OK":
            raise CommandError("Stored spans do not match acknowledged spans.")
