"""Agent content is untrusted: every part of the run page shows it as text.

The fixtures carry a script tag, event-handler attributes, a javascript: link, raw HTML and a
Markdown image beacon in every place an agent can put text: run and span names, tool and model
names, user and conversation ids, messages, tool arguments and results, errors, attributes and
events.
"""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent, make_run
from traces.models import Span

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"
HANDLER = '<img src=x onerror="alert(2)">'
JS_LINK = '<a href="javascript:alert(3)">click</a>'
BEACON = "![x](http://evil/beacon.png)"
HTML = '<iframe src="http://evil/frame"></iframe><b>bold</b>'
HOSTILE = f"{SCRIPT} {HANDLER} {JS_LINK} {BEACON} {HTML}"

# Substrings that must never appear raw in a page.
RAW = [
    "<script>alert(1)",
    "<img src=x",
    'onerror="alert(2)"',
    'href="javascript:',
    "<iframe",
    "<b>bold",
    'src="http://evil',
    "src=http://evil",
]
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def messages(*items):
    return json.dumps(
        [
            {"role": role, "content": content, "tool_calls": calls, "tool_call_id": call_id}
            for role, content, calls, call_id in items
        ]
    )


@pytest.fixture
def hostile_run(project):
    agent = make_agent(project, name=f"agent {SCRIPT}")
    run = make_run(
        project,
        agent,
        spans=1,
        name=HOSTILE[:300],
        user_id=SCRIPT,
        conversation_id=SCRIPT,
        version=HANDLER[:100],
        task_type=SCRIPT,
        started_at=timezone.now() - timedelta(hours=1),
    )
    root = run.spans.get()
    root.input = messages(("user", HOSTILE, [], ""))
    root.input_format = "messages"
    root.name = SCRIPT
    root.save()
    start = run.started_at

    def child(span_id, **fields):
        return Span.objects.create(
            project=project,
            run=run,
            agent=agent,
            trace_id=run.trace_id,
            span_id=span_id,
            parent_span_id=root.span_id,
            started_at=start + timedelta(milliseconds=int(span_id[-1], 16) * 10),
            ended_at=start + timedelta(milliseconds=int(span_id[-1], 16) * 10 + 5),
            duration_ms=5,
            **fields,
        )

    child(
        "00000000000000c1",
        kind="llm",
        name=f"chat {HANDLER}",
        model=SCRIPT,
        input=messages(
            ("system", HTML, [], ""),
            ("user", HOSTILE, [], ""),
            ("tool", BEACON, [], JS_LINK),
        ),
        input_format="messages",
        output=messages(
            (
                "assistant",
                HOSTILE,
                [{"name": SCRIPT, "arguments": json.dumps({"q": HOSTILE}), "id": HANDLER}],
                "",
            )
        ),
        output_format="messages",
        attributes={SCRIPT: HOSTILE, "nested": {"html": HANDLER}},
        resource={"service.name": SCRIPT},
        pii={SCRIPT: 1},
    )
    child(
        "00000000000000c2",
        kind="tool",
        name=JS_LINK,
        tool_name=SCRIPT,
        input=json.dumps({"html": HOSTILE}),
        input_format="json",
        output=HOSTILE,
        output_format="text",
        status="error",
        error_type=SCRIPT,
        error_message=HANDLER,
        events=[
            {
                "name": SCRIPT,
                "offset_ms": 1,
                "attributes": {"exception.stacktrace": HOSTILE, "exception.message": HANDLER},
            }
        ],
    )
    child(
        "00000000000000c3",
        kind="tool",
        name=BEACON,
        tool_name=SCRIPT,
        input=json.dumps({"html": HOSTILE}),
        input_format="json",
    )
    child(
        "00000000000000c4",
        kind="tool",
        name=BEACON,
        tool_name=SCRIPT,
        input=json.dumps({"html": HOSTILE}),
        input_format="json",
    )
    return run


def assert_inert(html: str):
    for raw in RAW:
        assert raw not in html, raw
    assert ESCAPED in html


def pages(run):
    trace = run.trace_id
    return {
        "run": reverse("run-detail", args=[trace]),
        "run-with-span": reverse("run-detail", args=[trace]) + "?span=00000000000000c1",
        "live": reverse("run-live", args=[trace]),
        "rows": reverse("run-rows", args=[trace]),
        "story": reverse("run-story", args=[trace]),
        "detail-llm": reverse("span-detail", args=[trace, "00000000000000c1"]),
        "detail-tool": reverse("span-detail", args=[trace, "00000000000000c2"]),
        "detail-root": reverse(
            "span-detail", args=[trace, run.spans.get(parent_span_id="").span_id]
        ),
        "conversation": reverse("conversation-detail", args=[SCRIPT]),
    }


@pytest.mark.parametrize(
    "page",
    [
        "run",
        "run-with-span",
        "live",
        "rows",
        "story",
        "detail-llm",
        "detail-tool",
        "detail-root",
        "conversation",
    ],
)
def test_hostile_content_is_shown_as_text(client_as, hostile_run, page):
    response = client_as("viewer").get(pages(hostile_run)[page])

    assert response.status_code == 200
    assert_inert(response.content.decode())


def test_the_markdown_beacon_is_shown_as_its_source_text(client_as, hostile_run):
    html = client_as("viewer").get(pages(hostile_run)["detail-tool"]).content.decode()

    assert BEACON in html  # not rendered: the text itself, no image


def test_hostile_content_in_the_compare_view_is_text(client_as, project, hostile_run):
    other = make_run(project, spans=1)

    html = (
        client_as("viewer")
        .get(reverse("run-compare"), {"a": other.trace_id, "b": hostile_run.trace_id})
        .content.decode()
    )

    assert_inert(html)


def test_the_export_holds_no_raw_tag(client_as, hostile_run):
    response = client_as("viewer").get(reverse("run-export", args=[hostile_run.trace_id]))

    body = response.content.decode()
    assert "<" not in body and ">" not in body
    assert response["Content-Type"] == "application/json"
    assert response["X-Content-Type-Options"] == "nosniff"
    data = json.loads(body)
    assert data["user_id"] == SCRIPT  # the content survives, only encoded
    assert any(span["output"] == HOSTILE for span in data["spans"])


def test_the_hostile_signals_are_computed_and_escaped(client_as, hostile_run):
    response = client_as("viewer").get(pages(hostile_run)["run"])

    signals = response.context["signals"]
    assert signals.error_origin.span_id == "00000000000000c2"
    assert [(r.count, r.kind) for r in signals.repeats] == [(3, "retry")]
    assert_inert(response.content.decode())
