"""Story steps and signals, computed from plain span fixtures (no database)."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace

from traces import story

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def span(span_id, parent="", *, at=0, ms=10, kind="tool", **fields):
    values = {
        "name": span_id,
        "tool_name": "",
        "model": "",
        "status": "ok",
        "error_type": "",
        "error_message": "",
        "cost_usd": Decimal(0),
        "pii": {},
        "args_digest": "",
        "input": "",
        "output": "",
        "input_format": "",
        "output_format": "",
    }
    values.update(fields)
    return SimpleNamespace(
        span_id=span_id,
        parent_span_id=parent,
        kind=kind,
        started_at=T0 + timedelta(milliseconds=at),
        ended_at=T0 + timedelta(milliseconds=at + ms),
        duration_ms=ms,
        **values,
    )


def messages(*pairs, calls=None):
    out = [{"role": r, "content": c, "tool_calls": [], "tool_call_id": ""} for r, c in pairs]
    if calls:
        out.append({"role": "assistant", "content": "", "tool_calls": calls, "tool_call_id": ""})
    return json.dumps(out)


def loop_fixture():
    """An agent that looks the same order up three times, each time successfully."""
    return [
        span("root", kind="agent", ms=100),
        span("t1", "root", at=10, tool_name="lookup_order", args_digest="d42"),
        span("t2", "root", at=30, tool_name="lookup_order", args_digest="d42"),
        span("t3", "root", at=50, tool_name="lookup_order", args_digest="d42"),
        span("t4", "root", at=70, tool_name="lookup_order", args_digest="d43"),
    ]


def test_the_same_tool_with_the_same_arguments_repeated_is_a_loop():
    repeats = story.repeated_calls(loop_fixture())

    assert len(repeats) == 1
    assert (repeats[0].tool, repeats[0].count, repeats[0].kind) == ("lookup_order", 3, "loop")
    assert repeats[0].span_ids == ["t1", "t2", "t3"]


def test_a_repeat_after_a_failed_call_is_a_retry():
    spans = [
        span("root", kind="agent", ms=100),
        span("t1", "root", at=10, tool_name="charge", args_digest="x", status="error"),
        span("t2", "root", at=40, tool_name="charge", args_digest="x"),
    ]

    (repeat,) = story.repeated_calls(spans)

    assert repeat.kind == "retry"
    assert repeat.count == 2


def test_calls_with_different_arguments_are_not_repeats():
    spans = [
        span("a", tool_name="search", args_digest="1"),
        span("b", at=20, tool_name="search", args_digest="2"),
    ]

    assert story.repeated_calls(spans) == []


def nested_failure_fixture():
    """root → plan (chain) → call_api (tool) fails; the failure bubbles up to root."""
    return [
        span("root", kind="agent", ms=200, status="error"),
        span("plan", "root", at=10, ms=150, kind="chain", status="error"),
        span("fetch", "plan", at=20, ms=30, tool_name="fetch"),
        span(
            "call_api",
            "plan",
            at=60,
            ms=80,
            tool_name="call_api",
            status="error",
            error_type="HTTPError",
            error_message="502 from upstream",
        ),
        span("late", "root", at=5, ms=3, status="error"),  # shallower failure, earlier
    ]


def test_the_error_origin_is_the_deepest_failing_span():
    origin, depth = story.error_origin(nested_failure_fixture())

    assert origin.span_id == "call_api"
    assert depth == 2


def test_a_run_without_errors_has_no_error_origin():
    assert story.error_origin(loop_fixture()) == (None, 0)


def test_the_critical_path_follows_what_each_span_waited_on():
    spans = [
        span("root", kind="agent", ms=100),
        span("a", "root", at=0, ms=40),
        span("b", "root", at=5, ms=10),  # runs in parallel with a, finishes early: not waited on
        span("c", "root", at=45, ms=50),
        span("c1", "c", at=50, ms=40),
    ]

    assert story.critical_path(spans) == ["root", "a", "c", "c1"]


def test_slowest_and_most_expensive_steps_ignore_grouping_spans():
    spans = [
        span("root", kind="agent", ms=500, cost_usd=Decimal(0)),
        span("llm1", "root", kind="llm", ms=300, cost_usd=Decimal("0.002")),
        span("llm2", "root", at=300, kind="llm", ms=100, cost_usd=Decimal("0.010")),
    ]

    assert story.slowest_step(spans).span_id == "llm1"
    assert story.most_expensive_step(spans).span_id == "llm2"


def test_pii_is_totalled_by_type_and_controls_are_listed():
    spans = [
        span("root", kind="agent"),
        span("a", "root", pii={"email": 2}),
        span("b", "root", pii={"email": 1, "card": 1}),
        span("g", "root", at=2, kind="guardrail", status="error"),
        span("ap", "root", at=1, kind="approval"),
    ]

    signals = story.compute_signals(spans)

    assert signals.pii == {"card": 1, "email": 3}
    assert signals.pii_span_ids == ["a", "b"]
    assert [s.span_id for s in signals.controls] == ["ap", "g"]


def test_the_story_reads_as_plain_steps():
    spans = [
        span("root", kind="agent", ms=900, name="invoke_agent support"),
        span(
            "llm1",
            "root",
            at=10,
            kind="llm",
            model="gpt-4o",
            input=messages(("system", "Be kind."), ("user", "Where is my order 42?")),
            input_format="messages",
            output=messages(calls=[{"name": "lookup_order", "arguments": '{"id": 42}'}]),
            output_format="messages",
            cost_usd=Decimal("0.001"),
        ),
        span(
            "tool",
            "root",
            at=200,
            tool_name="lookup_order",
            input='{"id": 42}',
            output='{"status": "shipped"}',
        ),
        span(
            "llm2",
            "root",
            at=400,
            kind="llm",
            model="gpt-4o",
            output=messages(("assistant", "Your order has shipped.")),
            output_format="messages",
        ),
    ]

    steps = story.story_steps(spans)

    assert [s.number for s in steps] == [1, 2, 3, 4]
    assert steps[0].text == "Received the request"
    assert steps[0].detail == "Where is my order 42?"
    assert steps[1].text == "Asked gpt-4o, which decided to call lookup_order"
    assert steps[1].detail == 'with {"id": 42}'
    assert steps[1].cost_usd == Decimal("0.001")
    assert steps[2].text == "Called the tool lookup_order"
    assert steps[2].detail == 'with {"id": 42} → got {"status": "shipped"}'
    assert steps[3].text == "Asked gpt-4o, which answered"
    assert story.final_answer(spans) == "Your order has shipped."


def test_a_failed_step_says_why_and_grouping_spans_are_skipped():
    steps = story.story_steps(nested_failure_fixture())

    texts = [s.text for s in steps]
    assert texts[0].startswith("Received the request")
    assert "Ran plan — failed" in texts  # a failing chain is kept
    assert "Called the tool call_api — failed (HTTPError: 502 from upstream)" in texts


def test_long_quotes_are_cut_and_say_so():
    assert story.quote("word " * 100, 20).endswith("…")
    assert len(story.quote("word " * 100, 20)) == 20


def test_truncated_messages_json_is_not_parsed_as_messages():
    assert story.messages_of('[{"role": "user", "content": "hel', "messages") == []


def test_the_story_stops_at_its_limit():
    spans = [span("root", kind="agent")] + [span(f"t{i}", "root", at=i) for i in range(50)]

    assert len(story.story_steps(spans, limit=10)) == 10
