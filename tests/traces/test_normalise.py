"""OTLP spans in every convention agents speak, turned into SpanRecords."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price

from tests.traces.payloads import (
    NS,
    agent_trace,
    export_request,
    make_span,
    new_span_id,
    new_trace_id,
)
from traces.normalise import normalise_request

START_NS = 1_780_000_000 * NS  # 2026-05-28, a fixed moment so prices are reproducible


def one(attributes=None, resource=None, **span_kwargs):
    """Normalise a single span and return its record."""
    span_kwargs.setdefault("trace_id", new_trace_id())
    span_kwargs.setdefault("start_ns", START_NS)
    request = export_request(
        resource or {"service.name": "svc"}, [make_span(attributes=attributes or {}, **span_kwargs)]
    )
    batch = normalise_request(request)
    assert batch.rejected == 0, batch.errors
    return batch.spans[0]


def test_it_reads_ids_times_and_status():
    trace_id, span_id, parent = new_trace_id(), new_span_id(), new_span_id()
    record = one(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name="step",
        duration_ms=250.5,
        status_code=1,
    )
    assert (record.trace_id, record.span_id, record.parent_span_id) == (trace_id, span_id, parent)
    assert record.started_at == datetime.fromtimestamp(1_780_000_000, UTC)
    assert record.started_at.tzinfo is not None
    assert record.duration_ms == pytest.approx(250.5)
    assert record.status == "ok"


def test_it_reads_the_shared_agent_trace():
    batch = normalise_request(agent_trace("refunds", version="2.0.0"))
    kinds = [s.kind for s in batch.spans]
    assert kinds == ["agent", "llm", "tool", "llm"]
    assert {s.agent_name for s in batch.spans} == {"refunds"}
    assert {s.agent_version for s in batch.spans} == {"2.0.0"}
    assert batch.spans[0].parent_span_id == ""


def test_it_reads_old_and_new_genai_token_names():
    old = one(
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 100,
            "gen_ai.usage.completion_tokens": 20,
            "gen_ai.usage.cache_read_input_tokens": 40,
            "gen_ai.usage.cache_creation.input_tokens": 10,
        }
    )
    new = one(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 40,
            "gen_ai.usage.cache_write.input_tokens": 10,
            "gen_ai.usage.reasoning.output_tokens": 5,
        }
    )
    for record in (old, new):
        assert record.kind == "llm"
        assert record.provider == "openai"
        assert (record.input_tokens, record.output_tokens) == (100, 20)
        assert (record.cache_read_tokens, record.cache_write_tokens) == (40, 10)
    assert new.reasoning_tokens == 5


def test_it_prices_llm_spans_with_genai_prices_preferring_the_response_model():
    record = one(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.response.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 12_000,
            "gen_ai.usage.output_tokens": 700,
            "gen_ai.usage.cache_read.input_tokens": 8_000,
            "gen_ai.usage.cache_write.input_tokens": 1_000,
        }
    )
    usage = Usage(
        input_tokens=12_000, output_tokens=700, cache_read_tokens=8_000, cache_write_tokens=1_000
    )
    expected = calc_price(
        usage,
        model_ref="claude-sonnet-4-5",
        provider_id="anthropic",
        genai_request_timestamp=record.started_at,
    ).total_price
    assert record.model == "claude-sonnet-4-5"
    assert record.cost_usd == expected
    assert record.cost_known is True


def test_an_unknown_model_is_priced_as_unknown_not_free():
    record = one(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-from-the-future",
            "gen_ai.usage.input_tokens": 10,
        }
    )
    assert record.cost_usd is None
    assert record.cost_known is False


def test_agent_spans_are_never_priced_even_with_summed_usage():
    record = one(
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 50_000,
            "gen_ai.usage.output_tokens": 5_000,
        }
    )
    assert record.kind == "agent"
    assert record.input_tokens == 50_000
    assert (record.cost_usd, record.cost_known) == (Decimal(0), True)


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ({"cockpit.span.kind": "approval", "openinference.span.kind": "LLM"}, "approval"),
        ({"cockpit.span.kind": "bogus", "openinference.span.kind": "TOOL"}, "tool"),
        ({"openinference.span.kind": "RERANKER", "gen_ai.operation.name": "chat"}, "retriever"),
        ({"openinference.span.kind": "EMBEDDING"}, "llm"),
        ({"openinference.span.kind": "EVALUATOR"}, "other"),
        ({"gen_ai.operation.name": "create_agent", "gen_ai.request.model": "x"}, "agent"),
        ({"gen_ai.operation.name": "plan"}, "chain"),
        ({"gen_ai.operation.name": "retrieval"}, "retriever"),
        ({"gen_ai.tool.name": "search", "gen_ai.request.model": "x"}, "tool"),
        ({"llm.model_name": "gpt-4o"}, "llm"),
        ({"http.method": "GET"}, "other"),
    ],
)
def test_kind_follows_the_precedence(attributes, kind):
    assert one(attributes).kind == kind


def test_it_reads_new_genai_messages_as_structured_values():
    record = one(
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system_instructions": [{"type": "text", "content": "Be brief."}],
            "gen_ai.input.messages": [
                {"role": "user", "parts": [{"type": "text", "content": "Weather in Oslo?"}]},
                {
                    "role": "assistant",
                    "parts": [
                        {
                            "type": "tool_call",
                            "id": "c1",
                            "name": "weather",
                            "arguments": {"city": "Oslo"},
                        }
                    ],
                },
                {
                    "role": "tool",
                    "parts": [{"type": "tool_call_response", "id": "c1", "response": "4°C"}],
                },
            ],
            "gen_ai.output.messages": [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "4°C."}],
                    "finish_reason": "stop",
                }
            ],
        }
    )
    assert record.input_format == "messages"
    assert json.loads(record.input) == [
        {"role": "system", "content": "Be brief.", "tool_calls": [], "tool_call_id": ""},
        {"role": "user", "content": "Weather in Oslo?", "tool_calls": [], "tool_call_id": ""},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"name": "weather", "arguments": '{"city":"Oslo"}', "id": "c1"}],
            "tool_call_id": "",
        },
        {"role": "tool", "content": "4°C", "tool_calls": [], "tool_call_id": "c1"},
    ]
    assert json.loads(record.output)[0]["content"] == "4°C."
    # Content is stored once, in input/output, not again in the attributes.
    assert "gen_ai.input.messages" not in record.attributes
    assert "gen_ai.output.messages" not in record.attributes


def test_it_reads_new_genai_messages_as_json_strings():
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    record = one({"gen_ai.input.messages": json.dumps(messages), "gen_ai.request.model": "m"})
    assert json.loads(record.input) == [
        {"role": "user", "content": "hi", "tool_calls": [], "tool_call_id": ""}
    ]


def test_it_reads_old_per_message_events():
    record = one(
        {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o"},
        events=[
            ("gen_ai.system.message", {"content": "Be brief."}),
            ("gen_ai.user.message", {"content": "Refund order 7"}),
            (
                "gen_ai.choice",
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c9",
                                "type": "function",
                                "function": {"name": "refund", "arguments": '{"order": 7}'},
                            }
                        ],
                    },
                },
            ),
        ],
    )
    inputs = json.loads(record.input)
    assert [m["role"] for m in inputs] == ["system", "user"]
    assert inputs[1]["content"] == "Refund order 7"
    output = json.loads(record.output)
    assert output[0]["tool_calls"] == [{"name": "refund", "arguments": '{"order": 7}', "id": "c9"}]
    assert record.events == []


def test_it_reads_openinference_spans():
    record = one(
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.provider": "openai",
            "llm.token_count.prompt": 300,
            "llm.token_count.completion": 40,
            "llm.token_count.prompt_details.cache_read": 100,
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "Be brief.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "Find order 7",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "find",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{"id": 7}',
            "input.value": '{"messages": []}',
            "input.mime_type": "application/json",
            "session.id": "sess-1",
            "user.id": "user-1",
            "metadata": '{"tier": "gold"}',
            "tag.tags": ["beta"],
        }
    )
    assert record.kind == "llm"
    assert record.operation == "chat"
    assert (record.provider, record.model) == ("openai", "gpt-4o-mini")
    assert (record.input_tokens, record.output_tokens, record.cache_read_tokens) == (300, 40, 100)
    assert [m["content"] for m in json.loads(record.input)] == ["Be brief.", "Find order 7"]
    assert json.loads(record.output)[0]["tool_calls"][0]["name"] == "find"
    assert record.cost_known and record.cost_usd > 0
    assert (record.session_id, record.conversation_id, record.user_id) == (
        "sess-1",
        "sess-1",
        "user-1",
    )
    assert not any(key.startswith("llm.input_messages") for key in record.attributes)
    assert record.attributes["metadata"] == '{"tier": "gold"}'


def test_it_reads_tool_spans_in_both_conventions():
    genai = one(
        {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_1",
            "gen_ai.tool.call.arguments": '{"order_id": 42}',
            "gen_ai.tool.call.result": "shipped",
        }
    )
    assert (genai.kind, genai.tool_name) == ("tool", "lookup_order")
    assert (genai.input, genai.input_format) == ('{"order_id": 42}', "json")
    assert (genai.output, genai.output_format) == ("shipped", "text")
    openinference = one(
        {
            "openinference.span.kind": "TOOL",
            "tool.name": "search",
            "tool.parameters": '{"type": "object"}',
            "input.value": "cats",
            "output.value": '["a", "b"]',
        }
    )
    assert (openinference.kind, openinference.tool_name) == ("tool", "search")
    assert (openinference.input_format, openinference.output_format) == ("text", "json")


@pytest.mark.parametrize(
    ("span_kwargs", "reason"),
    [
        ({"trace_id": "00" * 16}, "trace id is all zeros"),
        ({"span_id": "00" * 8}, "span id is all zeros"),
        ({"duration_ms": -5}, "end time is before start time"),
        ({"start_ns": 0}, "start time is missing"),
    ],
)
def test_it_rejects_unstorable_spans_with_a_reason(span_kwargs, reason):
    span_kwargs.setdefault("trace_id", new_trace_id())
    span_kwargs.setdefault("start_ns", START_NS)
    good = make_span(trace_id=new_trace_id(), start_ns=START_NS)
    request = export_request({}, [good, make_span(name="chat", **span_kwargs)])
    batch = normalise_request(request)
    assert [s.span_id for s in batch.spans] == [good.span_id.hex()]
    assert batch.rejected == 1
    assert batch.errors[0].startswith("span 'chat' in trace ")
    assert batch.errors[0].endswith(reason)


def test_it_rejects_spans_without_ids():
    span = make_span(trace_id=new_trace_id(), start_ns=START_NS)
    span.trace_id = b""
    span.span_id = b"\x01" * 4
    batch = normalise_request(export_request({}, [span]))
    assert (batch.spans, batch.rejected) == ([], 1)
    assert "trace id must be 16 bytes, got 0" in batch.errors[0]


def test_it_strips_nul_characters_everywhere():
    record = one(
        {"note\x00": "a\x00b", "nested": {"k": ["x\x00y"]}, "input.value": "in\x00put"},
        resource={"service.name": "sv\x00c"},
        name="na\x00me",
        status_code=2,
        status_message="bad\x00",
    )
    assert record.attributes["note"] == "ab"
    assert record.attributes["nested"] == {"k": ["xy"]}
    assert (record.input, record.name, record.error_message) == ("input", "name", "bad")
    assert record.resource["service.name"] == "svc"
    assert record.agent_name == "svc"


def test_it_flattens_every_any_value_type():
    record = one(
        {
            "s": "x",
            "b": True,
            "i": 7,
            "d": 1.5,
            "raw": b"\x01\xff",
            "arr": [1, "a"],
            "kv": {"n": {"m": 2}},
        }
    )
    assert record.attributes == {
        "s": "x",
        "b": True,
        "i": 7,
        "d": 1.5,
        "raw": "01ff",
        "arr": [1, "a"],
        "kv": {"n": {"m": 2}},
    }


def test_it_caps_attribute_values_so_a_span_cannot_store_megabytes():
    record = one({"blob": "x" * 1_000_000})
    assert len(record.attributes["blob"]) < 10_000


def test_it_cuts_long_content_and_flags_it(settings):
    settings.COCKPIT_CONTENT_MAX_CHARS = 1000
    record = one({"input.value": "x" * 5000, "output.value": "short"})
    assert len(record.input) == 1000
    assert record.input_truncated is True
    assert (record.output, record.output_truncated) == ("short", False)


def test_it_takes_the_error_from_the_exception_event():
    record = one(
        status_code=2,
        events=[
            (
                "exception",
                {
                    "exception.type": "TimeoutError",
                    "exception.message": "upstream took too long",
                    "exception.stacktrace": "Traceback (most recent call last): ...",
                },
            )
        ],
    )
    assert record.status == "error"
    assert (record.error_type, record.error_message) == ("TimeoutError", "upstream took too long")
    assert record.events[0]["name"] == "exception"
    assert "exception.stacktrace" in record.events[0]["attributes"]


def test_error_type_attribute_and_status_message_win_over_the_exception_event():
    record = one(
        {"error.type": "rate_limited"},
        status_code=2,
        status_message="429 from provider",
        events=[("exception", {"exception.type": "HTTPError", "exception.message": "boom"})],
    )
    assert (record.error_type, record.error_message) == ("rate_limited", "429 from provider")


def test_run_hints_come_from_the_span_first_then_the_resource():
    resource = {
        "service.name": "refunds-svc",
        "service.version": "3.1.0",
        "deployment.environment": "staging",
        "cockpit.team": "payments",
        "session.id": "resource-session",
    }
    from_resource = one({}, resource=resource)
    assert from_resource.agent_name == "refunds-svc"
    assert (from_resource.agent_version, from_resource.environment) == ("3.1.0", "staging")
    assert (from_resource.team, from_resource.conversation_id) == ("payments", "resource-session")

    from_span = one(
        {
            "gen_ai.agent.name": "refund-agent",
            "gen_ai.conversation.id": "conv-9",
            "enduser.id": "u-7",
            "cockpit.task.type": "refund",
            "cockpit.run.outcome": "escalated",
            "cockpit.confidence": 0.75,
            "deployment.environment.name": "prod",
        },
        resource=resource,
    )
    assert from_span.agent_name == "refund-agent"
    assert (from_span.conversation_id, from_span.session_id) == ("conv-9", "resource-session")
    assert (from_span.user_id, from_span.task_type) == ("u-7", "refund")
    assert (from_span.outcome, from_span.confidence, from_span.environment) == (
        "escalated",
        0.75,
        "prod",
    )


def test_an_unknown_outcome_is_left_blank():
    assert one({"cockpit.run.outcome": "great"}).outcome == ""


def test_secrets_are_redacted_in_content_attributes_errors_and_events():
    record = one(
        {
            "input.value": "use key sk-proj-Abcdefghijklmnopqrstuvwxyz0123 please",
            "http.request.header.authorization": "Bearer abcdefghijklmnop",
        },
        status_code=2,
        status_message="auth failed for postgres://app:hunter2@db/x",
        events=[("log", {"line": "AWS AKIAIOSFODNN7EXAMPLE used"})],
    )
    assert "sk-proj" not in record.input
    assert record.attributes["http.request.header.authorization"] == "Bearer [REDACTED]"
    assert "hunter2" not in record.error_message
    assert "AKIA" not in record.events[0]["attributes"]["line"]
    assert record.secrets_redacted == 4


def test_pii_in_content_is_counted_not_removed():
    record = one(
        {
            "gen_ai.input.messages": [
                {
                    "role": "user",
                    "parts": [
                        {
                            "type": "text",
                            "content": "I am bob@example.com, card 4111 1111 1111 1111",
                        }
                    ],
                }
            ],
            "gen_ai.output.messages": [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": "Calling +44 20 7946 0958"}],
                }
            ],
        }
    )
    assert record.pii == {"email": 1, "card": 1, "phone": 1}
    assert "bob@example.com" in record.input


def test_hostile_content_passes_through_as_plain_text():
    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> {{ 7*7 }} '; DROP TABLE x; --"
    record = one({"input.value": hostile, "gen_ai.tool.name": hostile}, name=hostile)
    assert record.input == hostile
    assert record.tool_name == hostile
    assert record.name == hostile


def test_broken_json_messages_do_not_crash():
    record = one({"gen_ai.input.messages": "[not json", "gen_ai.output.messages": "{}"})
    assert json.loads(record.input)[0]["content"] == "[not json"
