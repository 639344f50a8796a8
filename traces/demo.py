"""A simulated fleet of AI agents that sends real OTLP/HTTP traffic to a cockpit.

    python manage.py demo_fleet --url http://127.0.0.1:8000 --key ck_… [--rate 1.0] [--once]

(the command lives in traces/management/commands/demo_fleet.py; the fleet lives here).

Each agent exports through the real OpenTelemetry SDK (one TracerProvider per agent and
version, a BatchSpanProcessor and the OTLP/HTTP exporter), exactly as a production agent would.
Span times are simulated — set explicitly, so a run that "took" 40 s is sent at once — while runs
keep arriving over wall-clock time at --rate runs per second, so the cockpit shows live traffic.

Like a production agent, each simulated agent obeys the cockpit's kill switch: it polls
GET /api/v1/agents/<name>/control and sends nothing while paused or stopped. A release is
announced at POST /api/v1/releases when it rolls out. With the demo SLOs and budgets
(cockpit.slo.ensure_demo_objectives) the fleet shows: sql-analyst breaching its latency SLO,
sales-assistant reaching its daily budget and being paused, research-assistant degrading after
its 2.4.0 release. For degradation detection (cockpit.cohorts, cockpit.clusters, cockpit.drift)
it also carries support-triage 1.9.0 failing German requests only, refund-agent's order lookup
failing again and again with different ids, and code-reviewer slowly taking more steps per run.

The fleet is a table of AgentProfile rows and one step generator (RunBuilder): to add an agent,
add a profile; to add a behaviour (approval requests, guardrails, …), add a step to
RunBuilder and a chance for it to the profiles that show it.
"""

from __future__ import annotations

import json
import logging
import random
import string
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

logger = logging.getLogger(__name__)

# --- Conventions an agent's instrumentation speaks ------------------------------------------
GENAI = "genai"  # current OTel GenAI names: gen_ai.provider.name, gen_ai.input.messages, …
GENAI_LEGACY = "genai-legacy"  # pre-1.37 names: gen_ai.system, gen_ai.usage.prompt_tokens, …
OPENINFERENCE = "openinference"  # Arize OpenInference: openinference.span.kind, llm.*, …

# Fake personal data, the kinds an agent really gets pasted into its context. The card is the
# well-known Luhn-valid test number and the IBAN the standard example one.
TEST_CARD = "4242 4242 4242 4242"
TEST_IBAN = "GB82WEST12345698765432"
CUSTOMERS = (
    ("Jane Doe", "jane.doe@example.com", "+1 415 555 0134"),
    ("Omar Haddad", "omar.haddad@example.org", "+44 20 7946 0958"),
    ("Mei Lin", "mei.lin@example.net", "(212) 555-0187"),
    ("Lukas Becker", "l.becker@example.de", "+49 30 901820"),
    ("Ana Souza", "ana.souza@example.com", "+55 11 5555 0101"),
)


@dataclass(frozen=True)
class Model:
    provider: str
    request: str
    response: str  # what the provider answers in gen_ai.response.model
    cache: bool = False  # the provider reports prompt-cache reads


GPT_4O = Model("openai", "gpt-4o", "gpt-4o-2024-08-06", cache=True)
GPT_4O_MINI = Model("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", cache=True)
CLAUDE_SONNET_4 = Model("anthropic", "claude-sonnet-4", "claude-sonnet-4-20250514", cache=True)
CLAUDE_HAIKU = Model("anthropic", "claude-3-5-haiku", "claude-3-5-haiku-20241022")
GEMINI_FLASH = Model("gcp.gemini", "gemini-2.0-flash", "gemini-2.0-flash")
# A fine-tuned model served in-house: no public price, so the cockpit shows its cost unknown.
SELF_HOSTED = Model("vllm", "acme-outreach-llama-70b", "acme-outreach-llama-70b")


@dataclass(frozen=True)
class Release:
    """A new version of an agent, rolled out after the fleet has sent `after_runs` runs."""

    version: str
    after_runs: int
    slowdown: float = 1.0  # latency factor of the new version
    extra_steps: int = 0
    # (run attribute, value, chance): runs of that one cohort fail quietly (no error, a wrong
    # answer) this often in the new version; the rest behave as before.
    cohort_failure: tuple[str, str, float] | None = None


@dataclass(frozen=True)
class AgentProfile:
    name: str
    team: str
    version: str
    convention: str
    models: tuple[Model, ...]
    tools: tuple[str, ...]
    task_types: tuple[str, ...]
    requests: tuple[str, ...]  # what users ask; {name} {email} {phone} {card} {iban} filled in
    steps: tuple[int, int] = (1, 3)  # tool-using model turns per run
    latency_ms: float = 900.0  # median model call
    weight: float = 1.0  # share of the fleet's traffic
    environment: str = "production"
    retrieval: bool = False
    conversations: bool = False  # runs continue multi-turn conversations
    gzip: bool = False
    # Chances per run (or per step) of the behaviours worth seeing in the cockpit.
    pii_chance: float = 0.0
    secret_chance: float = 0.0
    tool_error_chance: float = 0.04
    rate_limit_chance: float = 0.02
    loop_chance: float = 0.01
    cost_spike_chance: float = 0.01
    escalation_chance: float = 0.0
    # What --once forces into this agent's one run, so a single pass shows every feature.
    showcase: frozenset[str] = frozenset()
    release: Release | None = None
    # Run attributes and their values with weights, set on each run's root span (cohorts).
    cohorts: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    # (tool, error type, message, chance per call): a failure that keeps coming back, its
    # message carrying different numbers and ids each time ({n}, {shard}, {request}).
    tool_failure: tuple[str, str, str, float] | None = None
    # Extra steps per run for every 1,000 runs the fleet has sent: a slow drift.
    step_drift: float = 0.0
    # The agent's answers carry a cockpit.score.helpfulness span attribute.
    scores: bool = False


PROFILES: tuple[AgentProfile, ...] = (
    AgentProfile(
        name="support-triage",
        team="support",
        version="1.8.2",
        convention=GENAI,
        models=(GPT_4O_MINI,),
        tools=("lookup_customer", "search_kb", "create_ticket"),
        task_types=("triage", "faq", "account-access"),
        requests=(
            "Hi, I'm {name} ({email}). I can't log in since yesterday, call me on {phone}.",
            "My order never arrived. Contact me at {email} please.",
            "How do I change the billing address on my account?",
            "Your app charged me twice, my number is {phone}.",
        ),
        steps=(1, 3),
        latency_ms=700,
        weight=3.0,
        conversations=True,
        pii_chance=0.5,
        showcase=frozenset({"pii"}),
        # Its 1.9.0 release (about half an hour in at 1 run/s) breaks German requests only:
        # about one run in eight, so the agent as a whole moves a few points.
        release=Release(
            version="1.9.0", after_runs=2000, cohort_failure=("app.locale", "de-DE", 0.45)
        ),
        cohorts=(
            (
                "app.locale",
                (
                    ("en-US", 0.41),
                    ("en-GB", 0.15),
                    ("fr-FR", 0.15),
                    ("es-ES", 0.17),
                    ("de-DE", 0.12),
                ),
            ),
            ("user.tier", (("free", 0.6), ("pro", 0.3), ("enterprise", 0.1))),
        ),
        scores=True,
    ),
    AgentProfile(
        name="refund-agent",
        team="payments",
        version="3.1.0",
        convention=GENAI,
        models=(CLAUDE_SONNET_4,),
        tools=("lookup_order", "check_refund_policy", "issue_refund"),
        task_types=("refund", "chargeback"),
        requests=(
            "Refund order {order} please, I paid with card {card}.",
            "I was charged for a cancelled subscription. Send the money to IBAN {iban}.",
            "The blender from order {order} arrived broken, I want my money back.",
        ),
        steps=(2, 4),
        latency_ms=1400,
        weight=1.5,
        gzip=True,
        pii_chance=0.6,
        escalation_chance=0.15,
        showcase=frozenset({"pii", "escalation"}),
        tool_failure=(
            "lookup_order",
            "OrderServiceError",
            "order A-{n} not found in shard {shard} (request {request})",
            0.08,
        ),
    ),
    AgentProfile(
        name="research-assistant",
        team="research",
        version="2.3.0",
        convention=GENAI,
        models=(GPT_4O, GPT_4O_MINI),
        tools=("web_search", "fetch_page", "summarise"),
        task_types=("market-research", "literature-review"),
        requests=(
            "Summarise this quarter's news on solid-state batteries.",
            "What are the main competitors of Acme Analytics and how do they price?",
            "Find recent papers on retrieval-augmented generation evaluation.",
        ),
        steps=(2, 5),
        latency_ms=1800,
        weight=1.0,
        retrieval=True,
        conversations=True,
        gzip=True,
        cost_spike_chance=0.03,
        showcase=frozenset({"retrieval"}),
        # The release that makes it slower: more retrieval rounds and a slower prompt chain.
        release=Release(version="2.4.0", after_runs=240, slowdown=2.2, extra_steps=2),
    ),
    AgentProfile(
        name="sql-analyst",
        team="analytics",
        version="0.9.4",
        convention=GENAI_LEGACY,
        models=(GEMINI_FLASH,),
        tools=("list_tables", "describe_table", "run_sql"),
        task_types=("reporting", "ad-hoc-query"),
        requests=(
            "Weekly active users by country for the last 8 weeks.",
            "Which products had the highest return rate in March?",
            "Revenue per plan, month over month, this year.",
        ),
        steps=(2, 4),
        latency_ms=600,
        weight=1.5,
        tool_error_chance=0.12,
        loop_chance=0.03,
        showcase=frozenset({"tool_timeout"}),
    ),
    AgentProfile(
        name="sales-assistant",
        team="sales",
        version="1.2.1",
        convention=GENAI_LEGACY,
        models=(CLAUDE_HAIKU,),
        tools=("crm_lookup", "draft_quote", "schedule_meeting"),
        task_types=("lead-qualification", "quote"),
        requests=(
            "Prepare a quote for 40 seats of the Team plan for Globex.",
            "Is Initech a good fit for the enterprise tier?",
            "Book a demo with {name} next Tuesday.",
        ),
        steps=(1, 3),
        latency_ms=500,
        weight=1.5,
        conversations=True,
        rate_limit_chance=0.08,
        showcase=frozenset({"rate_limit"}),
    ),
    AgentProfile(
        name="outbound-email",
        team="growth",
        version="0.4.0",
        convention=GENAI,
        models=(SELF_HOSTED,),
        tools=("fetch_contact", "render_template", "send_email"),
        task_types=("campaign", "follow-up"),
        requests=(
            "Write a follow-up to {name} <{email}> about the webinar.",
            "Draft the spring campaign email for dormant accounts.",
        ),
        steps=(1, 2),
        latency_ms=1100,
        weight=1.0,
        environment="staging",
        pii_chance=0.4,
        secret_chance=0.05,
        showcase=frozenset({"secret", "pii"}),
    ),
    AgentProfile(
        name="code-reviewer",
        team="platform",
        version="5.0.3",
        convention=OPENINFERENCE,
        models=(CLAUDE_SONNET_4, GPT_4O),
        tools=("get_diff", "run_linter", "post_review_comment"),
        task_types=("code-review",),
        requests=(
            "Review pull request #{pr} in acme/billing.",
            "Check PR #{pr} for security issues before merge.",
        ),
        steps=(2, 4),
        latency_ms=2000,
        weight=1.0,
        gzip=True,
        showcase=frozenset({"openinference"}),
        # It takes a little longer every hour: about 4 more steps per run an hour in.
        step_drift=1.2,
    ),
)


# --- Simulated spans -------------------------------------------------------------------------


@dataclass
class SimSpan:
    """A span with times relative to the run's start, emitted later through the SDK."""

    name: str
    start_ms: float
    duration_ms: float
    attributes: dict
    kind: str = "internal"  # internal | client
    error_type: str = ""
    error_message: str = ""
    events: list[tuple[str, dict]] = field(default_factory=list)
    children: list[SimSpan] = field(default_factory=list)

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms


def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _text_message(role: str, text: str) -> dict:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


class RunBuilder:
    """Builds one run of one agent as a tree of SimSpans: the step generator.

    Steps advance a cursor (ms since the run started); each step appends its span to the root.
    """

    def __init__(
        self,
        profile: AgentProfile,
        rng: random.Random,
        *,
        version: str,
        slowdown: float = 1.0,
        forced: frozenset[str] = frozenset(),
    ):
        self.profile = profile
        self.rng = rng
        self.version = version
        self.slowdown = slowdown
        self.forced = forced
        self.cursor = rng.uniform(5, 40)
        self.steps: list[SimSpan] = []
        self.context_tokens = rng.randint(600, 1800)  # system prompt + tool definitions
        self.messages: list[dict] = []
        self.cost_spike = self.chance("cost_spike", profile.cost_spike_chance)

    # -- helpers --
    def chance(self, feature: str, probability: float) -> bool:
        return feature in self.forced or self.rng.random() < probability

    def latency(self, median_ms: float) -> float:
        return median_ms * self.slowdown * self.rng.lognormvariate(0, 0.35)

    def advance(self, duration_ms: float) -> float:
        start = self.cursor
        self.cursor += duration_ms + self.rng.uniform(2, 30)
        return start

    @property
    def legacy(self) -> bool:
        return self.profile.convention == GENAI_LEGACY

    @property
    def openinference(self) -> bool:
        return self.profile.convention == OPENINFERENCE

    # -- steps --
    def model_call(
        self, model: Model, answer: str, *, tool_call: tuple[str, dict] | None = None
    ) -> SimSpan:
        """One chat completion; rate limits are retried by the client as separate spans."""
        output_tokens = self.rng.randint(40, 450)
        input_tokens = prompt_tokens = self.context_tokens + self.rng.randint(50, 400)
        if self.cost_spike:
            # A runaway prompt: the agent stuffed a whole document set into the context.
            input_tokens *= self.rng.randint(12, 25)
        cache_read = (
            int(input_tokens * self.rng.uniform(0.4, 0.8))
            if model.cache and self.rng.random() < 0.6
            else 0
        )
        if self.chance("rate_limit", self.profile.rate_limit_chance):
            self.forced = self.forced - {"rate_limit"}
            duration = self.rng.uniform(80, 300)
            self.steps.append(
                self._model_span(
                    model,
                    self.advance(duration),
                    duration,
                    input_tokens=0,
                    output_tokens=0,
                    cache_read=0,
                    answer="",
                    tool_call=None,
                    error=("RateLimitError", "429 Too Many Requests: rate limit reached"),
                )
            )
            self.advance(self.rng.uniform(500, 2500))  # client backoff before the retry
        duration = self.latency(self.profile.latency_ms) * (0.6 + output_tokens / 400)
        span = self._model_span(
            model,
            self.advance(duration),
            duration,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read=cache_read,
            answer=answer,
            tool_call=tool_call,
        )
        self.steps.append(span)
        # The stuffed documents are not carried into the next call: a spike must not compound
        # call after call into more tokens than a numeric column can price.
        self.context_tokens = prompt_tokens + output_tokens
        if tool_call is None:
            self.messages.append(_text_message("assistant", answer))
        return span

    def _model_span(
        self,
        model: Model,
        start: float,
        duration: float,
        *,
        input_tokens: int,
        output_tokens: int,
        cache_read: int,
        answer: str,
        tool_call: tuple[str, dict] | None,
        error: tuple[str, str] | None = None,
    ) -> SimSpan:
        if tool_call:
            name, arguments = tool_call
            call_id = "call_" + "".join(self.rng.choices(string.ascii_letters, k=12))
            output = {
                "role": "assistant",
                "parts": [
                    {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}
                ],
                "finish_reason": "tool_call",
            }
        else:
            output = {**_text_message("assistant", answer), "finish_reason": "stop"}
        span = SimSpan(
            name=f"chat {model.request}", start_ms=start, duration_ms=duration, attributes={}
        )
        span.kind = "client"
        if error:
            span.error_type, span.error_message = error
        if self.openinference:
            attrs = {
                "openinference.span.kind": "LLM",
                "llm.model_name": model.response,
                "llm.provider": model.provider,
                "llm.system": model.provider,
                "llm.invocation_parameters": _json({"temperature": 0.2, "max_tokens": 2048}),
                "input.value": _json({"messages": self.messages}),
                "input.mime_type": "application/json",
            }
            for i, message in enumerate(self.messages):
                attrs[f"llm.input_messages.{i}.message.role"] = message["role"]
                attrs[f"llm.input_messages.{i}.message.content"] = message["parts"][0].get(
                    "content", ""
                )
            if not error:
                attrs.update(
                    {
                        "llm.token_count.prompt": input_tokens,
                        "llm.token_count.completion": output_tokens,
                        "llm.token_count.total": input_tokens + output_tokens,
                        "llm.output_messages.0.message.role": "assistant",
                        "output.mime_type": "text/plain",
                    }
                )
                if cache_read:
                    attrs["llm.token_count.prompt_details.cache_read"] = cache_read
                if tool_call:
                    prefix = "llm.output_messages.0.message.tool_calls.0.tool_call.function"
                    attrs[f"{prefix}.name"] = tool_call[0]
                    attrs[f"{prefix}.arguments"] = _json(tool_call[1])
                    attrs["output.value"] = _json({"tool_call": tool_call[0]})
                else:
                    attrs["llm.output_messages.0.message.content"] = answer
                    attrs["output.value"] = answer
        elif self.legacy:
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": model.provider,
                "gen_ai.request.model": model.request,
                "gen_ai.request.temperature": 0.3,
            }
            # The old conventions carried content as one event per message.
            for message in self.messages:
                span.events.append(
                    (
                        f"gen_ai.{message['role']}.message",
                        {
                            "gen_ai.system": model.provider,
                            "content": message["parts"][0].get("content", ""),
                        },
                    )
                )
            if not error:
                attrs.update(
                    {
                        "gen_ai.response.model": model.response,
                        "gen_ai.usage.prompt_tokens": input_tokens,
                        "gen_ai.usage.completion_tokens": output_tokens,
                        "gen_ai.response.finish_reasons": [output["finish_reason"]],
                    }
                )
                span.events.append(
                    (
                        "gen_ai.choice",
                        {
                            "gen_ai.system": model.provider,
                            "index": 0,
                            "finish_reason": output["finish_reason"],
                            "message": _json(output),
                        },
                    )
                )
        else:
            attrs = {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": model.provider,
                "gen_ai.request.model": model.request,
                "gen_ai.request.temperature": 0.2,
                "gen_ai.system_instructions": _json(
                    [{"type": "text", "content": f"You are {self.profile.name}. Be concise."}]
                ),
                "gen_ai.input.messages": _json(self.messages),
            }
            if not error:
                attrs.update(
                    {
                        "gen_ai.response.model": model.response,
                        "gen_ai.response.id": "resp_"
                        + uuid.UUID(int=self.rng.getrandbits(128)).hex,
                        "gen_ai.response.finish_reasons": [output["finish_reason"]],
                        "gen_ai.usage.input_tokens": input_tokens,
                        "gen_ai.usage.output_tokens": output_tokens,
                        "gen_ai.output.messages": _json([output]),
                    }
                )
                if cache_read:
                    attrs["gen_ai.usage.cache_read.input_tokens"] = cache_read
        if error:
            attrs["error.type"] = error[0]
            if not self.openinference:
                attrs["http.response.status_code"] = 429
        span.attributes = attrs
        return span

    def tool_call(
        self,
        name: str,
        arguments: dict,
        result,
        *,
        error: tuple[str, str] | None = None,
        duration_ms: float | None = None,
    ) -> SimSpan:
        duration = duration_ms if duration_ms is not None else self.rng.uniform(40, 900)
        call_id = "call_" + "".join(self.rng.choices(string.ascii_letters, k=12))
        span = SimSpan(
            name=f"execute_tool {name}",
            start_ms=self.advance(duration),
            duration_ms=duration,
            attributes={},
        )
        if self.openinference:
            span.attributes = {
                "openinference.span.kind": "TOOL",
                "tool.name": name,
                "tool.call.id": call_id,
                "input.value": _json(arguments),
                "input.mime_type": "application/json",
            }
            if not error:
                span.attributes["output.value"] = _json(result)
                span.attributes["output.mime_type"] = "application/json"
        else:
            span.attributes = {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": name,
                "gen_ai.tool.type": "function",
                "gen_ai.tool.call.id": call_id,
                "gen_ai.tool.call.arguments": _json(arguments),
            }
            if not error:
                span.attributes["gen_ai.tool.call.result"] = _json(result)
        if error:
            span.error_type, span.error_message = error
            span.attributes["error.type"] = error[0]
        else:
            self.messages.append(
                {
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": call_id, "response": result}],
                }
            )
        self.steps.append(span)
        return span

    def retrieval(self, query: str) -> SimSpan:
        duration = self.latency(180)
        documents = [
            {
                "id": f"doc-{self.rng.randint(1000, 9999)}",
                "score": round(self.rng.uniform(0.6, 0.97), 3),
            }
            for _ in range(self.rng.randint(3, 6))
        ]
        span = SimSpan(
            name="retrieval kb-main",
            start_ms=self.advance(duration),
            duration_ms=duration,
            attributes={
                "gen_ai.operation.name": "retrieval",
                "gen_ai.data_source.id": "kb-main",
                "gen_ai.retrieval.query.text": query,
                "gen_ai.retrieval.documents": _json(documents),
            },
        )
        if self.openinference:
            span.attributes = {
                "openinference.span.kind": "RETRIEVER",
                "input.value": query,
                **{
                    f"retrieval.documents.{i}.document.id": d["id"] for i, d in enumerate(documents)
                },
                **{
                    f"retrieval.documents.{i}.document.score": d["score"]
                    for i, d in enumerate(documents)
                },
            }
        self.context_tokens += 300 * len(documents)
        self.steps.append(span)
        return span


@dataclass
class Conversation:
    id: str
    user_id: str
    session_id: str
    turns_left: int


@dataclass
class SentRun:
    agent: str
    version: str
    trace_id: str
    outcome: str
    spans: int


class AgentControls:
    """What each agent's control endpoint says, re-read at most every `ttl` seconds.

    An agent that cannot reach the endpoint keeps running (the demo fails open; a real agent
    handling money might rather fail closed). Unknown agents (404: no span seen yet) are active.
    """

    def __init__(self, base_url: str, key: str, *, ttl: float = 5.0, timeout: float = 3.0):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.ttl = ttl
        self.timeout = timeout
        self._states: dict[str, tuple[float, str]] = {}

    def state(self, agent: str) -> str:
        now = time.monotonic()
        cached = self._states.get(agent)
        if cached and now - cached[0] < self.ttl:
            return cached[1]
        state = self.fetch(agent)
        if state != (cached or (0, "active"))[1]:
            logger.info("demo fleet: %s is now %s", agent, state)
        self._states[agent] = (now, state)
        return state

    def may_run(self, agent: str) -> bool:
        return self.state(agent) == "active"

    def fetch(self, agent: str) -> str:
        url = f"{self.base_url}/api/v1/agents/{urllib.parse.quote(agent, safe='')}/control"
        try:
            status, body = http_json("GET", url, self.key, timeout=self.timeout)
        except OSError:
            return "active"
        return body.get("state", "active") if status == 200 else "active"

    def announce_release(self, agent: str, version: str, notes: str = "") -> int | None:
        """POST the release the way a deploy script would; returns the status, None if down."""
        try:
            status, _ = http_json(
                "POST",
                f"{self.base_url}/api/v1/releases",
                self.key,
                {"agent": agent, "version": version, "notes": notes},
                timeout=self.timeout,
            )
        except OSError:
            return None
        return status


def http_json(method: str, url: str, key: str, body=None, *, timeout: float) -> tuple[int, dict]:
    """One JSON request to the cockpit with the project key: (status, decoded body or {})."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the cockpit URL the operator gave
        url,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {}
    return status, decoded if isinstance(decoded, dict) else {}


class DemoFleet:
    """Turns agent profiles into runs and exports them, one TracerProvider per agent version."""

    def __init__(
        self,
        url: str,
        key: str,
        *,
        seed: int | None = None,
        profiles: tuple[AgentProfile, ...] = PROFILES,
        export_timeout: float = 5.0,
        controls: AgentControls | None = None,
        ask_approvals: bool = True,
    ):
        self.endpoint = url.rstrip("/") + "/v1/traces"
        # Obeying the kill switch: pass a stub in tests; None builds the real client.
        self.controls = controls if controls is not None else AgentControls(url, key)
        self.announced: set[tuple[str, str]] = set()
        self.runs_held = 0  # runs not sent because their agent was paused or stopped
        self.key = key
        self.rng = random.Random(seed)
        self.profiles = profiles
        self.export_timeout = export_timeout
        self.runs_sent = 0
        self.spans_exported = 0
        self.export_failures = 0
        self.conversations: dict[str, list[Conversation]] = {}
        self._providers: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()
        self._ids = _SeededIds(self.rng)
        # Approval requests waiting on a reviewer, per agent (approvals.demo).
        self.approvals_waiting: dict[str, int] = {}
        # The refund and outbound-email agents ask before risky actions (approvals.demo).
        self.asks_for_approval = ask_approvals

    # -- OpenTelemetry plumbing --
    def _tracer(self, profile: AgentProfile, version: str):

        with self._lock:
            provider = self._providers.get((profile.name, version))
            if provider is None:
                resource = Resource.create(
                    {
                        "service.name": profile.name,
                        "service.version": version,
                        "service.namespace": "acme-agents",
                        "deployment.environment.name": profile.environment,
                        "telemetry.sdk.language": "python",
                    }
                )
                provider = TracerProvider(
                    resource=resource,
                    id_generator=self._ids,
                    shutdown_on_exit=False,
                )
                exporter = OTLPSpanExporter(
                    endpoint=self.endpoint,
                    headers={"Authorization": f"Bearer {self.key}"},
                    timeout=self.export_timeout,
                    compression=Compression.Gzip if profile.gzip else Compression.NoCompression,
                )
                provider.add_span_processor(
                    BatchSpanProcessor(_Counting(exporter, self), schedule_delay_millis=500)
                )
                self._providers[(profile.name, version)] = provider
                if version != profile.version:
                    logger.info("demo fleet: %s %s is released", profile.name, version)
        return provider.get_tracer("cockpit.demo_fleet", "1.0")

    def flush(self, timeout_s: float = 10.0) -> bool:
        return all(p.force_flush(int(timeout_s * 1000)) for p in list(self._providers.values()))

    def close(self, *, flush: bool = True) -> None:
        """Shut every provider down; without flush, spans still queued are dropped at once."""
        for provider in list(self._providers.values()):
            if not flush:
                for processor in provider._active_span_processor._span_processors:
                    # An exporter that is shut down refuses batches instead of retrying them
                    # against a server that may be going away.
                    processor.span_exporter.shutdown()
            provider.shutdown()
        self._providers.clear()

    # -- the fleet --
    def version_of(self, profile: AgentProfile) -> tuple[str, float, int]:
        release = profile.release
        if release and self.runs_sent >= release.after_runs:
            return release.version, release.slowdown, release.extra_steps
        return profile.version, 1.0, 0

    def pick_profile(self) -> AgentProfile:
        return self.rng.choices(self.profiles, weights=[p.weight for p in self.profiles])[0]

    def send_once(self) -> list[SentRun]:
        """One run per agent, each showing that agent's signature behaviour."""
        return [self.send_run(profile, showcase=True) for profile in self.profiles]

    def run(
        self,
        *,
        rate: float,
        duration: float | None = None,
        stop: threading.Event | None = None,
        report_every: float = 30.0,
    ) -> int:
        """Send runs at `rate` per second (Poisson arrivals) until `duration` or `stop`."""
        stop = stop or threading.Event()
        started = time.monotonic()
        last_report = started
        sent_at_report = self.runs_sent
        while not stop.is_set():
            if duration is not None and time.monotonic() - started >= duration:
                break
            try:
                sent = self.run_if_allowed(self.pick_profile())
            except Exception:  # noqa: BLE001 - a demo agent failing must not stop the fleet
                logger.exception("demo fleet: a simulated run failed")
            else:
                if sent is not None and self.runs_sent == 1:
                    logger.info("demo fleet: first run sent (%s %s)", sent.agent, sent.trace_id)
            now = time.monotonic()
            if now - last_report >= report_every:
                logger.info(
                    "demo fleet: %d runs sent in the last %.0f s (%d in all)",
                    self.runs_sent - sent_at_report,
                    now - last_report,
                    self.runs_sent,
                )
                last_report, sent_at_report = now, self.runs_sent
            stop.wait(min(self.rng.expovariate(rate), 10 / rate))
        return self.runs_sent

    def run_if_allowed(self, profile: AgentProfile) -> SentRun | None:
        """Send a run unless the cockpit has paused or stopped the agent (then None)."""
        if not self.controls.may_run(profile.name):
            self.runs_held += 1
            return None
        return self.send_run(profile)

    def send_run(self, profile: AgentProfile, *, showcase: bool = False) -> SentRun:
        version, root = self.simulate(profile, showcase=showcase)
        trace_id = self._emit(profile, version, root)
        self.runs_sent += 1
        if self.asks_for_approval and not showcase:
            from approvals import demo as approvals_demo  # the approvals app builds on this one

            approvals_demo.maybe_ask(self, profile, version)
        return SentRun(
            agent=profile.name,
            version=version,
            trace_id=trace_id,
            outcome=root.attributes.get("cockpit.run.outcome", ""),
            spans=1 + len(root.children),
        )

    def simulate(self, profile: AgentProfile, *, showcase: bool = False) -> tuple[str, SimSpan]:
        """One run of the agent as the fleet would send it next: (version, root span)."""
        version, slowdown, extra_steps = self.version_of(profile)
        if version != profile.version and (profile.name, version) not in self.announced:
            # Deployed: tell the cockpit, as a deploy pipeline would, before the first run.
            self.announced.add((profile.name, version))
            self.controls.announce_release(
                profile.name, version, notes=f"Rolled out after {self.runs_sent} fleet runs."
            )
        builder = RunBuilder(
            profile,
            self.rng,
            version=version,
            slowdown=slowdown,
            forced=profile.showcase if showcase else frozenset(),
        )
        traits = {
            key: self.rng.choices([v for v, _ in values], [w for _, w in values])[0]
            for key, values in profile.cohorts
        }
        failing = profile.release.cohort_failure if profile.release else None
        quiet_failure = 0.0
        if failing and version == profile.release.version and traits.get(failing[0]) == failing[1]:
            quiet_failure = failing[2]
        root = simulate_run(
            builder,
            self._conversation(profile),
            extra_steps=extra_steps + int(self.runs_sent * profile.step_drift / 1000),
            traits=traits,
            quiet_failure=quiet_failure,
        )
        return version, root

    def _conversation(self, profile: AgentProfile) -> Conversation:
        open_ones = self.conversations.setdefault(profile.name, [])
        if profile.conversations and open_ones and self.rng.random() < 0.6:
            conversation = self.rng.choice(open_ones)
        else:
            conversation = Conversation(
                id=f"conv-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:16]}",
                user_id=f"user-{self.rng.randint(1000, 9999)}",
                session_id=f"sess-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:12]}",
                turns_left=self.rng.randint(2, 6) if profile.conversations else 1,
            )
            if profile.conversations:
                open_ones.append(conversation)
        conversation.turns_left -= 1
        if conversation.turns_left <= 0 and conversation in open_ones:
            open_ones.remove(conversation)
        return conversation

    def emit_with_trace_id(self, profile, version: str, root: SimSpan, trace_id: int) -> str:
        """Emit a run under a trace id chosen in advance (one an approval request named)."""
        self._ids.preset.trace_id = trace_id
        try:
            sent = self._emit(profile, version, root)
        finally:
            self._ids.preset.trace_id = None
        with self._lock:
            self.runs_sent += 1
        return sent

    def _emit(self, profile: AgentProfile, version: str, root: SimSpan) -> str:
        # The run just finished: it started its simulated duration ago.
        origin_ns = time.time_ns() - int(root.end_ms * 1_000_000) - self.rng.randint(0, 10**8)
        return emit_run(self._tracer(profile, version), root, origin_ns)


def emit_run(tracer, root: SimSpan, origin_ns: int) -> str:
    """Export a simulated run as real spans placed from origin_ns; returns its trace id."""

    def emit(sim: SimSpan, context) -> str:
        span = tracer.start_span(
            sim.name,
            context=context,
            kind=SpanKind.CLIENT if sim.kind == "client" else SpanKind.INTERNAL,
            attributes=sim.attributes,
            start_time=origin_ns + int(sim.start_ms * 1_000_000),
        )
        for name, attributes in sim.events:
            span.add_event(name, attributes, timestamp=origin_ns + int(sim.start_ms * 1e6))
        child_context = trace.set_span_in_context(span)
        for child in sim.children:
            emit(child, child_context)
        # Like most instrumentations, leave the status unset unless the step failed.
        if sim.error_type:
            span.set_status(Status(StatusCode.ERROR, sim.error_message or sim.error_type))
        span.end(end_time=origin_ns + int(sim.end_ms * 1_000_000))
        return format(span.get_span_context().trace_id, "032x")

    return emit(root, None)


class _Counting(SpanExporter):
    """Wraps an exporter to count what reached the cockpit and what did not."""

    def __init__(self, exporter: SpanExporter, fleet: DemoFleet):
        self.exporter = exporter
        self.fleet = fleet
        self.closed = False

    def export(self, spans):
        if self.closed:
            return SpanExportResult.FAILURE
        result = self.exporter.export(spans)
        if result is SpanExportResult.SUCCESS:
            self.fleet.spans_exported += len(spans)
        else:
            self.fleet.export_failures += 1
        return result

    def shutdown(self):
        if not self.closed:
            self.closed = True
            self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _SeededIds(IdGenerator):
    """Trace and span ids drawn from the fleet's random generator, so --seed repeats a run."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        # A trace id set in advance for the next root span started on this thread.
        self.preset = threading.local()

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        preset = getattr(self.preset, "trace_id", None)
        if preset:
            self.preset.trace_id = None
            return preset
        return self.rng.getrandbits(128) or 1


def _fill(template: str, rng: random.Random) -> str:
    name, email, phone = rng.choice(CUSTOMERS)
    return template.format(
        name=name,
        email=email,
        phone=phone,
        card=TEST_CARD,
        iban=TEST_IBAN,
        order=f"A-{rng.randint(10000, 99999)}",
        pr=rng.randint(100, 4000),
    )


def _fake_secret(rng: random.Random) -> str:
    return "sk-proj-" + "".join(rng.choices(string.ascii_letters + string.digits, k=40))


def simulate_run(
    builder: RunBuilder,
    conversation: Conversation,
    *,
    extra_steps: int = 0,
    traits: dict | None = None,
    quiet_failure: float = 0.0,
) -> SimSpan:
    """Generate one run of builder.profile: the root span with its steps as children.

    traits are set on the root span (cohort attributes); quiet_failure is the chance that the
    run fails without any error — a wrong answer, the failure that raises nothing."""
    profile, rng = builder.profile, builder.rng
    model = rng.choice(profile.models)
    wants_pii = builder.chance("pii", profile.pii_chance)
    templates = [t for t in profile.requests if ("{" in t) == wants_pii] or list(profile.requests)
    request = _fill(rng.choice(templates), rng)
    if builder.chance("secret", profile.secret_chance):
        request += f"\nUse this for the mail API: OPENAI_API_KEY={_fake_secret(rng)}"
    builder.messages.append(_text_message("user", request))

    outcome = "success"
    failure: tuple[str, str] | None = None
    if profile.retrieval and builder.chance("retrieval", 0.9):
        builder.retrieval(request[:200])
    turns = rng.randint(*profile.steps) + extra_steps
    looping = builder.chance("loop", profile.loop_chance)
    for turn in range(turns):
        tool = profile.tools[min(turn, len(profile.tools) - 1)] if not looping else profile.tools[0]
        arguments = _tool_arguments(tool, rng, request)
        builder.model_call(model, "", tool_call=(tool, arguments))
        if looping:
            # The agent keeps calling the same tool with the same arguments: a loop.
            for _ in range(rng.randint(5, 8)):
                builder.tool_call(tool, arguments, {"rows": []})
                builder.model_call(model, "", tool_call=(tool, arguments))
            outcome = "abandoned"
            failure = ("LoopDetected", f"{tool} called with the same arguments repeatedly")
            break
        recurring = profile.tool_failure
        if recurring and tool == recurring[0] and rng.random() < recurring[3]:
            message = recurring[2].format(
                n=rng.randint(10000, 99999),
                shard=rng.randint(1, 32),
                request=f"{rng.getrandbits(32):08x}",
            )
            builder.tool_call(tool, arguments, None, error=(recurring[1], message))
            outcome, failure = "failure", (recurring[1], message)
            break
        if builder.chance("tool_timeout", profile.tool_error_chance):
            builder.forced = builder.forced - {"tool_timeout"}
            builder.tool_call(
                tool,
                arguments,
                None,
                error=("TimeoutError", f"{tool} timed out after 30 s"),
                duration_ms=30_000,
            )
            if rng.random() < 0.5:
                outcome = "failure"
                failure = ("TimeoutError", f"{tool} kept timing out; gave up")
                break
            # Retry: the same call once more, which works this time.
        builder.tool_call(tool, arguments, _tool_result(tool, rng))
    if failure is None and builder.chance("escalation", profile.escalation_chance):
        builder.tool_call(
            "escalate_to_human",
            {"reason": "refund above the automatic limit", "amount": rng.randint(500, 5000)},
            {"ticket": f"ESC-{rng.randint(100, 999)}"},
        )
        outcome = "escalated"
    if failure is None and outcome == "success" and quiet_failure and rng.random() < quiet_failure:
        outcome = "failure"
    answer = {
        "success": "Done. Here is what I found and did.",
        "escalated": "I've passed this to a colleague who will follow up shortly.",
    }.get(outcome, "Sorry, I couldn't complete this request.")
    if failure is None:
        builder.model_call(model, answer)

    root_attributes = _root_attributes(builder, model, conversation, outcome, request, answer)
    root = SimSpan(
        name=f"invoke_agent {profile.name}",
        start_ms=0.0,
        duration_ms=builder.cursor + rng.uniform(5, 50),
        attributes=root_attributes,
        children=builder.steps,
    )
    if failure:
        root.error_type, root.error_message = failure
        root.attributes["error.type"] = failure[0]
    root.attributes.update(traits or {})
    if profile.scores:
        helpful = outcome in ("success", "escalated")
        root.attributes["cockpit.score.helpfulness"] = round(
            rng.uniform(0.7, 1.0) if helpful else rng.uniform(0.05, 0.4), 2
        )
    return root


def _root_attributes(builder, model, conversation, outcome, request, answer) -> dict:
    profile = builder.profile
    cockpit = {
        "cockpit.run.outcome": outcome,
        "cockpit.task.type": builder.rng.choice(profile.task_types),
        "cockpit.team": profile.team,
        "cockpit.confidence": round(builder.rng.uniform(0.55, 0.99), 2),
        "user.id": conversation.user_id,
        "session.id": conversation.session_id,
    }
    if builder.openinference:
        return {
            "openinference.span.kind": "AGENT",
            "agent.name": profile.name,
            "input.value": request,
            "input.mime_type": "text/plain",
            "output.value": answer,
            "output.mime_type": "text/plain",
            "metadata": _json({"repo": "acme/billing", "conversation": conversation.id}),
            "tag.tags": ["demo", profile.team],
            **cockpit,
        }
    attributes = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": profile.name,
        "gen_ai.agent.id": f"agt-{profile.name}",
        "gen_ai.conversation.id": conversation.id,
        **cockpit,
    }
    if builder.legacy:
        attributes["gen_ai.system"] = model.provider
    else:
        attributes["gen_ai.provider.name"] = model.provider
        attributes["gen_ai.input.messages"] = _json([_text_message("user", request)])
        attributes["gen_ai.output.messages"] = _json([_text_message("assistant", answer)])
    return attributes


def _tool_arguments(tool: str, rng: random.Random, request: str) -> dict:
    if tool == "run_sql":
        return {
            "sql": rng.choice(
                [
                    "SELECT country, count(*) FROM active_users GROUP BY 1",
                    "SELECT product_id, avg(returned) FROM orders GROUP BY 1 ORDER BY 2 DESC LIMIT 10",
                ]
            )
        }
    if tool in {"lookup_order", "issue_refund", "check_refund_policy"}:
        return {"order_id": f"A-{rng.randint(10000, 99999)}", "amount": rng.randint(15, 900)}
    if tool in {"web_search", "search_kb"}:
        return {"query": request[:120]}
    if tool in {"send_email", "render_template"}:
        return {"to": rng.choice(CUSTOMERS)[1], "template": "follow-up-v3"}
    return {"input": request[:80]}


def _tool_result(tool: str, rng: random.Random):
    if tool == "run_sql":
        return {"rows": rng.randint(1, 400), "elapsed_ms": rng.randint(20, 4000)}
    if tool == "issue_refund":
        return {"status": "refunded", "refund_id": f"re_{rng.getrandbits(40):x}"}
    if tool in {"web_search", "search_kb"}:
        return {"results": rng.randint(3, 10)}
    return {"ok": True}
