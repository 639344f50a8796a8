"""Builders of OTLP ExportTraceServiceRequest messages for tests.

req = export_request(
    {"service.name": "refunds", "service.version": "1.2.0"},
    [make_span(trace_id=T, span_id=S, name="chat gpt-4o", attributes={"gen_ai.system": "openai"})],
)
body = req.SerializeToString()
"""

import os
import time

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

NS = 1_000_000_000


def new_trace_id() -> str:
    return os.urandom(16).hex()


def new_span_id() -> str:
    return os.urandom(8).hex()


def any_value(value) -> AnyValue:
    """A Python value as an OTLP AnyValue (lists become arrays, dicts kvlists)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        out = AnyValue()
        out.array_value.values.extend(any_value(v) for v in value)
        return out
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(key_values(value))
        return out
    return AnyValue(string_value=str(value))


def key_values(attributes: dict) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def make_span(
    *,
    trace_id: str,
    span_id: str | None = None,
    parent_span_id: str = "",
    name: str = "step",
    start_ns: int | None = None,
    duration_ms: float = 100.0,
    attributes: dict | None = None,
    events: list[tuple[str, dict]] | None = None,
    status_code: int = 0,
    status_message: str = "",
    kind: int = Span.SPAN_KIND_INTERNAL,
) -> Span:
    start_ns = start_ns if start_ns is not None else time.time_ns() - 5 * NS
    span = Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex(span_id or new_span_id()),
        parent_span_id=bytes.fromhex(parent_span_id) if parent_span_id else b"",
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + int(duration_ms * 1_000_000),
        status=Status(code=status_code, message=status_message),
    )
    span.attributes.extend(key_values(attributes or {}))
    for event_name, event_attributes in events or []:
        event = span.events.add(name=event_name, time_unix_nano=start_ns)
        event.attributes.extend(key_values(event_attributes))
    return span


def export_request(
    resource_attributes: dict, spans: list[Span], scope: str = "tests"
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = ResourceSpans()
    resource_spans.resource.attributes.extend(key_values(resource_attributes))
    scope_spans = ScopeSpans()
    scope_spans.scope.name = scope
    scope_spans.spans.extend(spans)
    resource_spans.scope_spans.append(scope_spans)
    request.resource_spans.append(resource_spans)
    return request


def agent_trace(
    agent: str = "support-triage",
    *,
    trace_id: str | None = None,
    version: str = "1.0.0",
    model: str = "gpt-4o-mini",
    provider: str = "openai",
    start_ns: int | None = None,
) -> ExportTraceServiceRequest:
    """A small realistic run: agent root → chat → tool → chat, in the new GenAI names."""
    trace_id = trace_id or new_trace_id()
    start_ns = start_ns if start_ns is not None else time.time_ns() - 10 * NS
    root = new_span_id()
    step = 200 * 1_000_000
    spans = [
        make_span(
            trace_id=trace_id,
            span_id=root,
            name=f"invoke_agent {agent}",
            start_ns=start_ns,
            duration_ms=900,
            attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": agent},
        ),
        make_span(
            trace_id=trace_id,
            parent_span_id=root,
            name=f"chat {model}",
            start_ns=start_ns + step,
            duration_ms=150,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 80,
            },
        ),
        make_span(
            trace_id=trace_id,
            parent_span_id=root,
            name="execute_tool lookup_order",
            start_ns=start_ns + 2 * step,
            duration_ms=120,
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.arguments": '{"order_id": 42}',
            },
        ),
        make_span(
            trace_id=trace_id,
            parent_span_id=root,
            name=f"chat {model}",
            start_ns=start_ns + 3 * step,
            duration_ms=150,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 1500,
                "gen_ai.usage.output_tokens": 120,
            },
        ),
    ]
    return export_request({"service.name": agent, "service.version": version}, spans)
