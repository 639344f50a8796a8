"""Turn OTLP spans into SpanRecords: one shape, whatever convention the agent's SDK speaks.

CONTRACT (shared by the receiver work and the normaliser work; keep it stable):

    normalise_request(request: ExportTraceServiceRequest, pricer: Pricer | None) -> NormalisedBatch

- Input is always a protobuf ExportTraceServiceRequest (traces/otlp.py turns JSON bodies into one).
- Each valid span becomes a SpanRecord whose fields map 1:1 onto traces.models.Span columns, plus
  the run-level hints at the bottom of the dataclass (agent name, version, conversation, …).
- A span that cannot be stored (no or malformed trace/span id, end before start, …) is not
  returned; it is counted in NormalisedBatch.rejected with a short reason in .errors, which
  the receiver turns into OTLP partial_success.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal


@dataclass(slots=True)
class SpanRecord:
    trace_id: str  # 32 lowercase hex characters
    span_id: str  # 16 lowercase hex characters
    parent_span_id: str  # "" for a root span
    name: str
    kind: str  # a traces.models.Span.Kind value
    operation: str  # gen_ai.operation.name or its OpenInference equivalent
    started_at: datetime  # aware, UTC
    ended_at: datetime
    duration_ms: float
    status: str  # unset | ok | error
    error_type: str = ""
    error_message: str = ""
    provider: str = ""
    model: str = ""
    tool_name: str = ""
    input_tokens: int = 0  # includes cache reads and writes, as in OTel
    output_tokens: int = 0  # includes reasoning tokens
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = Decimal(0)  # None: priced step whose model has no known price
    cost_known: bool = True
    attributes: dict = field(default_factory=dict)
    resource: dict = field(default_factory=dict)
    events: list = field(default_factory=list)
    input: str = ""
    output: str = ""
    input_format: str = ""  # "messages" (JSON list of messages) | "json" | "text" | ""
    output_format: str = ""
    input_truncated: bool = False
    output_truncated: bool = False
    pii: dict = field(default_factory=dict)  # {"email": 2, "phone": 1, "card": 1, "iban": 1}
    secrets_redacted: int = 0
    # Run-level hints, taken from the span's attributes, then its resource's.
    agent_name: str = ""  # gen_ai.agent.name, else service.name
    agent_version: str = ""  # service.version
    environment: str = ""  # deployment.environment(.name)
    team: str = ""  # cockpit.team
    conversation_id: str = ""  # gen_ai.conversation.id, else session.id
    session_id: str = ""
    user_id: str = ""
    task_type: str = ""  # cockpit.task.type
    outcome: str = ""  # cockpit.run.outcome
    confidence: float | None = None  # cockpit.confidence


@dataclass(slots=True)
class NormalisedBatch:
    spans: list[SpanRecord]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


def normalise_request(request, pricer=None) -> NormalisedBatch:
    raise NotImplementedError("implemented by the normaliser work")
