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

import base64
import logging
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
from django.conf import settings
from django.db import DatabaseError

from traces.models import Span
from traces.pricing import Pricer
from traces.scanning import detect_pii, merge_counts, redact_secrets

logger = logging.getLogger(__name__)


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
    scores: dict | None = None  # {name: value} of cockpit.score.<name> attributes, if any


@dataclass(slots=True)
class NormalisedBatch:
    spans: list[SpanRecord]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


# --- Limits ----------------------------------------------------------------------------------

# One attribute value (content goes to input/output, which have their own cap).
ATTRIBUTE_MAX_CHARS = 4096
# Items kept per array or kvlist, events kept per span, and nesting depth of values.
ATTRIBUTE_MAX_ITEMS = 256
EVENTS_MAX = 128
VALUE_MAX_DEPTH = 8
# Reasons listed in NormalisedBatch.errors (all rejections are still counted).
ERRORS_MAX = 20
# Column widths of traces.models.Span / Run / Agent: PostgreSQL refuses longer values.
_WIDTH = {
    "name": 300,
    "operation": 50,
    "error_type": 200,
    "provider": 100,
    "model": 200,
    "tool_name": 200,
    "agent_name": 200,
    "agent_version": 100,
    "environment": 50,
    "team": 100,
    "conversation_id": 200,
    "session_id": 200,
    "user_id": 200,
    "task_type": 100,
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO_COST = Decimal(0)

# --- Conventions -----------------------------------------------------------------------------

_KINDS = frozenset(k.value for k in Span.Kind)
_OPENINFERENCE_KINDS = {
    "LLM": "llm",
    "EMBEDDING": "llm",
    "TOOL": "tool",
    "RETRIEVER": "retriever",
    "RERANKER": "retriever",
    "CHAIN": "chain",
    "AGENT": "agent",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "other",
    "PROMPT": "other",
    "UNKNOWN": "other",
}
# The gen_ai.operation.name an OpenInference span kind stands for.
_OPENINFERENCE_OPERATIONS = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "RETRIEVER": "retrieval",
    "RERANKER": "rerank",
    "CHAIN": "chain",
    "AGENT": "invoke_agent",
    "GUARDRAIL": "guardrail",
    "EVALUATOR": "evaluate",
    "PROMPT": "prompt",
}
_OPERATION_KINDS = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "llm",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
    "invoke_workflow": "agent",
    "retrieval": "retriever",
    "plan": "chain",
}
_OUTCOMES = frozenset({"success", "failure", "escalated", "abandoned"})

# Old and new names of the same thing, preferred first.
_PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
_REQUEST_MODEL_KEYS = ("gen_ai.request.model", "llm.model_name")
_INPUT_TOKEN_KEYS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
)
_OUTPUT_TOKEN_KEYS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
)
_CACHE_READ_KEYS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
)
_CACHE_WRITE_KEYS = (
    "gen_ai.usage.cache_write.input_tokens",
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
)
_REASONING_KEYS = (
    "gen_ai.usage.reasoning.output_tokens",
    "llm.token_count.completion_details.reasoning",
)
_ALL_TOKEN_KEYS = frozenset(
    _INPUT_TOKEN_KEYS + _OUTPUT_TOKEN_KEYS + _CACHE_READ_KEYS + _CACHE_WRITE_KEYS + _REASONING_KEYS
)
_TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name")

# Attributes whose value becomes span content: read uncapped, then dropped from .attributes
# so content is not stored twice.
_CONTENT_KEYS = frozenset(
    {
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        "input.value",
        "output.value",
    }
)
_OI_INPUT_PREFIX = "llm.input_messages."
_OI_OUTPUT_PREFIX = "llm.output_messages."
# Scores an agent puts on a span: cockpit.score.<name> = number, bool or string.
SCORE_PREFIX = "cockpit.score."
_KEY_PLAIN, _KEY_CONTENT, _KEY_OI_INPUT, _KEY_OI_OUTPUT, _KEY_SCORE = range(5)
_KEY_CLASSES: dict[str, int] = {}

# Old per-message span events and the role each stands for.
_MESSAGE_EVENTS = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
    "gen_ai.choice": "assistant",
}


def _classify_key(key: str) -> int:
    """Which kind of attribute a key names; attribute keys repeat, so the answer is cached."""
    if key in _CONTENT_KEYS:
        found = _KEY_CONTENT
    elif key.startswith(_OI_INPUT_PREFIX):
        found = _KEY_OI_INPUT
    elif key.startswith(_OI_OUTPUT_PREFIX):
        found = _KEY_OI_OUTPUT
    elif key.startswith(SCORE_PREFIX):
        # Set apart like OpenInference messages, so spans without scores pay nothing.
        found = _KEY_SCORE
    else:
        found = _KEY_PLAIN
    if len(_KEY_CLASSES) < 50_000:
        _KEY_CLASSES[key] = found
    return found


# --- Values ----------------------------------------------------------------------------------


def _json_text(value) -> str:
    """Compact JSON text. orjson is several times faster than json here, on the ingest path."""
    return orjson.dumps(value, default=str).decode()


def _clean(text: str, cap: int) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    if len(text) > cap:
        text = text[:cap] + "…"
    return text


def _value(value, cap: int, depth: int = 0):
    """An OTLP AnyValue as a plain JSON-able Python value, NULs stripped, sizes capped."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return _clean(value.string_value, cap)
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        number = value.double_value
        # JSON (and PostgreSQL jsonb) has no NaN or Infinity.
        return number if math.isfinite(number) else str(number)
    if depth >= VALUE_MAX_DEPTH:
        return "[nested too deep]"
    if which == "array_value":
        return [
            _value(item, cap, depth + 1) for item in value.array_value.values[:ATTRIBUTE_MAX_ITEMS]
        ]
    if which == "kvlist_value":
        return {
            _clean(kv.key, 256): _value(kv.value, cap, depth + 1)
            for kv in value.kvlist_value.values[:ATTRIBUTE_MAX_ITEMS]
        }
    if which == "bytes_value":
        raw = value.bytes_value[:cap]
        # Short byte strings are usually ids (hex reads best); longer ones are payloads.
        return raw.hex() if len(raw) <= 64 else base64.b64encode(raw).decode()
    return None


def _attributes(key_values, content_cap: int) -> tuple[dict, dict, dict]:
    """(plain attributes, content attributes, OpenInference message attributes)."""
    plain: dict = {}
    content: dict = {}
    indexed: dict = {}
    classes = _KEY_CLASSES
    for kv in key_values:
        key = kv.key
        key_class = classes.get(key)
        if key_class is None:
            key_class = _classify_key(key)
        if key_class == _KEY_PLAIN:
            if "\x00" in key:
                key = key.replace("\x00", "")
            value = kv.value
            # Most values are short strings: skip the general conversion for them.
            if value.WhichOneof("value") == "string_value":
                text = value.string_value
                plain[key] = (
                    text
                    if len(text) <= ATTRIBUTE_MAX_CHARS and "\x00" not in text
                    else _clean(text, ATTRIBUTE_MAX_CHARS)
                )
            else:
                plain[key] = _value(value, ATTRIBUTE_MAX_CHARS)
        elif key_class == _KEY_CONTENT:
            content[key] = _value(kv.value, content_cap)
        else:
            indexed[key] = _value(kv.value, content_cap)
    return plain, content, indexed


def _first(attributes: dict, keys: tuple[str, ...]):
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _count(value) -> int:
    """A token count from an int, float or numeric string; anything else is 0."""
    if value is None or isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    try:
        return max(int(float(value)), 0)
    except (TypeError, ValueError, OverflowError):
        return 0


def _string(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        # OpenInference tag.tags and other string arrays.
        return ",".join(str(item) for item in value)
    return str(value)


def _short(value, field_name: str) -> str:
    text = value if value.__class__ is str else _string(value)
    width = _WIDTH[field_name]
    return text[:width] if len(text) > width else text


def _as_json_text(value) -> str:
    return value if isinstance(value, str) else _json_text(value)


# --- Messages --------------------------------------------------------------------------------


def _message(role: str, content: str = "", tool_calls=None, tool_call_id: str = "") -> dict:
    return {
        "role": role,
        "content": content,
        "tool_calls": tool_calls or [],
        "tool_call_id": tool_call_id,
    }


def _parse_json(value):
    """A JSON string as a value; anything else (or unparseable text) unchanged."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except ValueError:
            return value
    return value


def _text_of(content) -> str:
    """Message content (a string, OpenAI-style parts, or anything) as display text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                text = part.get("content", part.get("text"))
                if isinstance(text, str):
                    texts.append(text)
        if texts:
            return "\n".join(texts)
    return _json_text(content)


def _tool_call(call: dict) -> dict:
    """A tool call in GenAI part shape or OpenAI shape ({"function": {...}})."""
    function = call.get("function")
    if isinstance(function, dict):
        name, arguments = function.get("name"), function.get("arguments")
    else:
        name, arguments = call.get("name"), call.get("arguments")
    if arguments is None:
        arguments = ""
    return {
        "name": _string(name),
        "arguments": _as_json_text(arguments),
        "id": _string(call.get("id")),
    }


def _normalise_message(raw, default_role: str = "") -> dict:
    """One message in any of the shapes agents send, as the one normalised shape."""
    if not isinstance(raw, dict):
        return _message(default_role, _text_of(raw))
    role = _string(raw.get("role")) or default_role
    parts = raw.get("parts")
    if isinstance(parts, list):
        texts, tool_calls, tool_call_id = [], [], ""
        for part in parts:
            if not isinstance(part, dict):
                continue
            part_type = part.get("type")
            if part_type == "text":
                texts.append(_string(part.get("content")))
            elif part_type == "tool_call":
                tool_calls.append(_tool_call(part))
            elif part_type == "tool_call_response":
                tool_call_id = _string(part.get("id"))
                response = part.get("response", part.get("result"))
                texts.append(_text_of(response))
        return _message(role, "\n".join(texts), tool_calls, tool_call_id)
    calls = raw.get("tool_calls")
    tool_calls = (
        [_tool_call(c) for c in calls if isinstance(c, dict)] if isinstance(calls, list) else []
    )
    tool_call_id = _string(raw.get("tool_call_id") or (raw.get("id") if role == "tool" else ""))
    return _message(role, _text_of(raw.get("content")), tool_calls, tool_call_id)


def _messages(value, default_role: str) -> list[dict]:
    """gen_ai.input/output.messages as a JSON string or a structured value."""
    value = _parse_json(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [_message(default_role, _text_of(value))] if value else []
    return [_normalise_message(item, default_role) for item in value]


def _system_instructions(value) -> list[dict]:
    """gen_ai.system_instructions: a list of parts (or plain text) without a role."""
    value = _parse_json(value)
    if isinstance(value, list):
        texts = [_text_of([part]) for part in value]
        return [_message("system", "\n".join(texts))]
    return [_message("system", _text_of(value))] if value else []


def _event_message(name: str, attributes: dict) -> dict:
    """An old per-message span event (gen_ai.user.message, gen_ai.choice, …) as a message."""
    role = _MESSAGE_EVENTS[name]
    body = attributes.get("message") if name == "gen_ai.choice" else None
    if body is None:
        body = attributes.get("body", attributes.get("gen_ai.event.content"))
    body = _parse_json(body)
    if isinstance(body, dict):
        merged = {**attributes, **body}
        merged.pop("message", None)
        return _normalise_message(merged, role)
    return _normalise_message({**attributes, "content": attributes.get("content", body)}, role)


def _openinference_messages(indexed: dict, prefix: str) -> list[dict]:
    """llm.input_messages.<i>.message.role|content|tool_calls.<k>.tool_call.… as messages."""
    by_index: dict[int, dict] = {}
    for key, value in indexed.items():
        if not key.startswith(prefix):
            continue
        index, _, rest = key[len(prefix) :].partition(".")
        if not index.isdigit():
            continue
        message = by_index.setdefault(int(index), {"calls": {}, "contents": {}})
        if rest == "message.role":
            message["role"] = _string(value)
        elif rest == "message.content":
            message["content"] = _string(value)
        elif rest == "message.tool_call_id":
            message["tool_call_id"] = _string(value)
        elif rest.startswith("message.tool_calls."):
            call_index, _, field_name = rest[len("message.tool_calls.") :].partition(".")
            call = message["calls"].setdefault(call_index, {})
            if field_name == "tool_call.function.name":
                call["name"] = _string(value)
            elif field_name == "tool_call.function.arguments":
                call["arguments"] = _as_json_text(value)
            elif field_name == "tool_call.id":
                call["id"] = _string(value)
        elif rest.startswith("message.contents.") and rest.endswith("message_content.text"):
            message["contents"][rest] = _string(value)
    messages = []
    for index in sorted(by_index):
        found = by_index[index]
        content = found.get("content")
        if content is None:
            content = "\n".join(found["contents"][key] for key in sorted(found["contents"]))
        calls = [
            {"name": c.get("name", ""), "arguments": c.get("arguments", ""), "id": c.get("id", "")}
            for _, c in sorted(found["calls"].items(), key=lambda item: _sort_index(item[0]))
        ]
        messages.append(
            _message(found.get("role", ""), content, calls, found.get("tool_call_id", ""))
        )
    return messages


def _sort_index(text: str) -> int:
    return int(text) if text.isdigit() else 0


# --- Content ---------------------------------------------------------------------------------


def _raw_format(value, mime_type) -> tuple[str, str]:
    """(text, "json" | "text") for input.value / tool arguments and their kin."""
    if not isinstance(value, str):
        return _json_text(value), "json"
    if mime_type == "application/json":
        return value, "json"
    if value[:1] in ("{", "[") and _parse_json(value) is not value:
        return value, "json"
    return value, "text"


_CLEAN_VALUES: set[str] = set()


class _Scan:
    """Redaction and PII counts gathered over one span."""

    __slots__ = ("pii", "secrets")

    def __init__(self):
        self.pii: dict = {}
        self.secrets = 0

    def redact(self, text: str) -> str:
        text, count = redact_secrets(text)
        self.secrets += count
        return text

    def content(self, text: str, limit: int) -> tuple[str, bool]:
        """Redact, cut to limit, count PII in what is kept."""
        if not text:
            return "", False
        # Cut first with some slack so a megabyte body is not scanned in full, but a secret
        # straddling the final cut is still seen whole and redacted.
        if len(text) > limit + 512:
            text = text[: limit + 512]
        text = self.redact(text)
        truncated = len(text) > limit
        if truncated:
            text = text[:limit]
        merge_counts(self.pii, detect_pii(text))
        return text, truncated

    def attribute(self, value: str) -> str:
        # Attribute values repeat across spans (model, tool, host names), so short ones found
        # clean are remembered and not scanned again.
        if value in _CLEAN_VALUES:
            return value
        redacted, count = redact_secrets(value)
        if count:
            self.secrets += count
            return redacted
        if len(value) <= 200:
            if len(_CLEAN_VALUES) >= 20_000:
                _CLEAN_VALUES.clear()
            _CLEAN_VALUES.add(value)
        return value

    def values(self, attributes: dict) -> None:
        """Redact every string (nested too) in an attribute dict, in place."""
        for key, value in attributes.items():
            if isinstance(value, str):
                if len(value) >= 8:
                    attributes[key] = self.attribute(value)
            elif isinstance(value, dict):
                self.values(value)
            elif isinstance(value, list):
                self._list(value)

    def _list(self, values: list) -> None:
        for position, value in enumerate(values):
            if isinstance(value, str):
                if len(value) >= 8:
                    values[position] = self.attribute(value)
            elif isinstance(value, dict):
                self.values(value)
            elif isinstance(value, list):
                self._list(value)


# --- Spans -----------------------------------------------------------------------------------


def _datetime(unix_nano: int) -> datetime:
    # timedelta keeps microsecond precision, unlike a float of seconds.
    return _EPOCH + timedelta(microseconds=unix_nano // 1000)


def _invalid(span) -> str | None:
    """Why a span cannot be stored, or None."""
    if len(span.trace_id) != 16:
        return f"trace id must be 16 bytes, got {len(span.trace_id)}"
    if not any(span.trace_id):
        return "trace id is all zeros"
    if len(span.span_id) != 8:
        return f"span id must be 8 bytes, got {len(span.span_id)}"
    if not any(span.span_id):
        return "span id is all zeros"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent span id must be 8 bytes, got {len(span.parent_span_id)}"
    if not span.start_time_unix_nano:
        return "start time is missing"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end time is before start time"
    return None


def _kind(attributes: dict, openinference_kind: str, operation: str, tool_name, model) -> str:
    explicit = attributes.get("cockpit.span.kind")
    if isinstance(explicit, str) and explicit.lower() in _KINDS:
        return explicit.lower()
    if openinference_kind in _OPENINFERENCE_KINDS:
        return _OPENINFERENCE_KINDS[openinference_kind]
    if operation in _OPERATION_KINDS:
        return _OPERATION_KINDS[operation]
    if tool_name:
        return "tool"
    if model:
        return "llm"
    return "other"


_HINT_KEYS = {
    "agent_name": ("gen_ai.agent.name", "service.name"),
    "agent_version": ("service.version",),
    "environment": ("deployment.environment.name", "deployment.environment"),
    "team": ("cockpit.team",),
    "conversation_id": ("gen_ai.conversation.id", "session.id"),
    "session_id": ("session.id",),
    "user_id": ("user.id", "enduser.id"),
    "task_type": ("cockpit.task.type",),
}


def _hints(attributes: dict) -> dict:
    """Run-level hints found in one attribute dict (missing ones left out)."""
    found = {}
    for field_name, keys in _HINT_KEYS.items():
        value = _first(attributes, keys)
        if value is not None:
            found[field_name] = _short(value, field_name)
    outcome = attributes.get("cockpit.run.outcome")
    if isinstance(outcome, str) and outcome.lower() in _OUTCOMES:
        found["outcome"] = outcome.lower()
    confidence = attributes.get("cockpit.confidence")
    if confidence is not None and not isinstance(confidence, bool):
        try:
            number = float(confidence)
        except (TypeError, ValueError):
            number = None
        if number is not None and math.isfinite(number):
            found["confidence"] = number
    return found


_ALL_HINT_KEYS = frozenset(
    {key for keys in _HINT_KEYS.values() for key in keys}
    | {"cockpit.run.outcome", "cockpit.confidence"}
)


def _span_hints(attributes: dict, resource_hints: dict) -> dict:
    # Span attributes win over resource attributes, key by key.
    if attributes.keys().isdisjoint(_ALL_HINT_KEYS):
        return resource_hints
    span_hints = _hints(attributes)
    if not span_hints:
        return resource_hints
    return {**resource_hints, **span_hints}


def _normalise_span(span, resource: dict, resource_hints: dict, pricer, content_max: int):
    attributes, content, indexed = _attributes(span.attributes, content_max + 1024)
    scores = _scores(indexed, attributes) if indexed else None
    scan = _Scan()
    started_at = _datetime(span.start_time_unix_nano)
    ended_at = _datetime(span.end_time_unix_nano)
    start_ns = span.start_time_unix_nano

    # Events: old per-message events become content; the rest are kept.
    events = []
    event_messages = []
    exception = None
    for event in span.events:
        name = _clean(event.name, 256)
        event_attributes, event_content, event_indexed = _attributes(event.attributes, content_max)
        event_attributes.update(event_content)
        event_attributes.update(event_indexed)
        if name in _MESSAGE_EVENTS:
            event_messages.append(_event_message(name, event_attributes))
            continue
        if name == "exception" and exception is None:
            exception = event_attributes
        if len(events) < EVENTS_MAX:
            scan.values(event_attributes)
            events.append(
                {
                    "name": name,
                    "offset_ms": (event.time_unix_nano - start_ns) / 1e6
                    if event.time_unix_nano
                    else 0.0,
                    "attributes": event_attributes,
                }
            )

    openinference_kind = _string(attributes.get("openinference.span.kind")).upper()
    operation = _string(attributes.get("gen_ai.operation.name"))
    if not operation:
        operation = _OPENINFERENCE_OPERATIONS.get(openinference_kind, "")
    tool_name = _first(attributes, _TOOL_NAME_KEYS)
    request_model = _first(attributes, _REQUEST_MODEL_KEYS)
    response_model = attributes.get("gen_ai.response.model")
    model = response_model or request_model
    kind = _kind(attributes, openinference_kind, operation, tool_name, model)
    provider = _string(_first(attributes, _PROVIDER_KEYS))

    input_tokens = output_tokens = cache_read = cache_write = reasoning = 0
    if not attributes.keys().isdisjoint(_ALL_TOKEN_KEYS):
        input_tokens = _count(_first(attributes, _INPUT_TOKEN_KEYS))
        output_tokens = _count(_first(attributes, _OUTPUT_TOKEN_KEYS))
        cache_read = _count(_first(attributes, _CACHE_READ_KEYS))
        cache_write = _count(_first(attributes, _CACHE_WRITE_KEYS))
        reasoning = _count(_first(attributes, _REASONING_KEYS))
    if cache_read + cache_write > input_tokens:
        # Some SDKs report input without the cached part (Anthropic's API does); OTel's
        # input_tokens includes it, so add it back rather than price a negative remainder.
        input_tokens += cache_read + cache_write

    # Content.
    input_messages = []
    if "gen_ai.system_instructions" in content:
        input_messages += _system_instructions(content["gen_ai.system_instructions"])
    if "gen_ai.input.messages" in content:
        input_messages += _messages(content["gen_ai.input.messages"], "user")
    output_messages = []
    if "gen_ai.output.messages" in content:
        output_messages = _messages(content["gen_ai.output.messages"], "assistant")
    if event_messages and not (input_messages or output_messages):
        input_messages = [m for m in event_messages if m["role"] != "assistant"]
        output_messages = [m for m in event_messages if m["role"] == "assistant"]
        # An assistant message before the last user turn is history, i.e. input.
        if event_messages[-1]["role"] != "assistant":
            input_messages, output_messages = event_messages, []
    if indexed:
        if not input_messages:
            input_messages = _openinference_messages(indexed, _OI_INPUT_PREFIX)
        if not output_messages:
            output_messages = _openinference_messages(indexed, _OI_OUTPUT_PREFIX)

    input_text, input_format = _content(
        input_messages,
        content,
        ("input.value", "gen_ai.tool.call.arguments"),
        attributes.get("input.mime_type"),
    )
    output_text, output_format = _content(
        output_messages,
        content,
        ("output.value", "gen_ai.tool.call.result"),
        attributes.get("output.mime_type"),
    )
    input_text, input_truncated = scan.content(input_text, content_max)
    output_text, output_truncated = scan.content(output_text, content_max)

    # Status and errors.
    code = span.status.code
    status = "error" if code == 2 else "ok" if code == 1 else "unset"
    error_type = _string(attributes.get("error.type"))
    error_message = span.status.message
    if exception is not None:
        error_type = error_type or _string(exception.get("exception.type"))
        error_message = error_message or _string(exception.get("exception.message"))
    if error_message:
        error_message = scan.redact(_clean(error_message, content_max))

    scan.values(attributes)

    # Cost: inference spans only. Agent and chain spans often repeat their children's usage.
    cost: Decimal | None = _ZERO_COST
    if kind == "llm" and (input_tokens or output_tokens):
        cost = pricer.price(
            provider,
            _string(model),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            at=started_at,
        )

    record = SpanRecord(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex() if any(span.parent_span_id) else "",
        name=_short(_clean(span.name, _WIDTH["name"]), "name"),
        kind=kind,
        operation=_short(operation, "operation"),
        started_at=started_at,
        ended_at=ended_at,
        duration_ms=(span.end_time_unix_nano - start_ns) / 1e6,
        status=status,
        error_type=_short(error_type, "error_type"),
        error_message=error_message,
        provider=_short(provider, "provider"),
        model=_short(model, "model"),
        tool_name=_short(tool_name, "tool_name"),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        cost_known=cost is not None,
        attributes=attributes,
        resource=resource,
        events=events,
        input=input_text,
        output=output_text,
        input_format=input_format if input_text else "",
        output_format=output_format if output_text else "",
        input_truncated=input_truncated,
        output_truncated=output_truncated,
        pii=scan.pii,
        secrets_redacted=scan.secrets,
        scores=scores,
    )
    for field_name, value in _span_hints(attributes, resource_hints).items():
        setattr(record, field_name, value)
    return record


def _scores(indexed: dict, attributes: dict) -> dict | None:
    """{name: value} of the cockpit.score.<name> keys in `indexed`, which move back to the
    span's attributes (they are shown there too); None when there are none."""
    scores = None
    for key in [key for key in indexed if key.startswith(SCORE_PREFIX)]:
        value = attributes[key] = indexed.pop(key)
        if scores is None:
            scores = {}
        scores[key[len(SCORE_PREFIX) :]] = value
    return scores


def _content(
    messages: list, content: dict, raw_keys: tuple[str, str], mime_type
) -> tuple[str, str]:
    if messages:
        return _json_text(messages), "messages"
    for key in raw_keys:
        value = content.get(key)
        if value is not None and value != "":
            return _raw_format(value, mime_type if key.endswith(".value") else None)
    return "", ""


_default_pricer: Pricer | None = None


def _pricer(pricer):
    global _default_pricer
    if pricer is not None:
        return pricer
    if _default_pricer is None:
        _default_pricer = Pricer()
    return _default_pricer


def normalise_request(request, pricer=None) -> NormalisedBatch:
    """Every span of an ExportTraceServiceRequest as a SpanRecord; bad spans counted, not raised.

    SpanRecords of one resource share one .resource dict: treat it as read-only.
    """
    pricer = _pricer(pricer)
    content_max = settings.COCKPIT_CONTENT_MAX_CHARS
    batch = NormalisedBatch(spans=[])
    for resource_spans in request.resource_spans:
        resource, resource_content, resource_indexed = _attributes(
            resource_spans.resource.attributes, ATTRIBUTE_MAX_CHARS
        )
        resource.update(resource_content)
        resource.update(resource_indexed)
        _Scan().values(resource)
        resource_hints = _hints(resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                reason = _invalid(span)
                if reason is None:
                    try:
                        batch.spans.append(
                            _normalise_span(span, resource, resource_hints, pricer, content_max)
                        )
                        continue
                    except DatabaseError:
                        # Loading a project's prices failed: the receiver answers 503 and the
                        # client retries, rather than losing spans as "rejected".
                        raise
                    except Exception as error:
                        # One odd span must not fail the whole batch: reject it and say so.
                        logger.warning("could not normalise a span", exc_info=True)
                        reason = f"could not be read ({type(error).__name__})"
                batch.rejected += 1
                if len(batch.errors) < ERRORS_MAX:
                    name = _clean(span.name, 60)
                    trace = span.trace_id.hex()[:8] or "?"
                    batch.errors.append(f"span {name!r} in trace {trace}…: {reason}")
    return batch
