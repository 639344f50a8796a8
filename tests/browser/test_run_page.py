"""The run page in a real browser: tree, details, story, zoom, compare, big runs, live spans,
and hostile content that stays inert."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from cockpit import realtime
from tests.factories import make_agent, make_run
from tests.traces.payloads import NS, export_request, make_span, new_span_id, new_trace_id
from traces.ingest import ingest_batch
from traces.models import Run, Span
from traces.normalise import normalise_request

pytestmark = pytest.mark.browser


def add(run, span_id, parent, offset_ms, duration_ms, **fields):
    started = run.started_at + timedelta(milliseconds=offset_ms)
    return Span(
        project=run.project,
        run=run,
        agent=run.agent,
        trace_id=run.trace_id,
        span_id=span_id,
        parent_span_id=parent,
        started_at=started,
        ended_at=started + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        name=fields.pop("name", span_id),
        **fields,
    )


def support_run(project, agent, *, version="1.0", started_at=None, slow_refund=False):
    """root → plan (chain) → llm → tool lookup → tool refund, and a final llm answer."""
    started_at = started_at or timezone.now() - timedelta(hours=1)
    run = make_run(
        project,
        agent,
        spans=1,
        version=version,
        started_at=started_at,
        duration_ms=2000,
        name="refund order 42",
        cost_usd=Decimal("0.0042"),
    )
    root = run.spans.get()
    root.input = json.dumps(
        [
            {
                "role": "user",
                "content": "Please refund order 42",
                "tool_calls": [],
                "tool_call_id": "",
            }
        ]
    )
    root.input_format = "messages"
    root.save()
    Span.objects.bulk_create(
        [
            add(run, "000000000000a001", root.span_id, 50, 1800, kind="chain", name="plan"),
            add(
                run,
                "000000000000a002",
                "000000000000a001",
                60,
                400,
                kind="llm",
                name="chat gpt-4o",
                model="gpt-4o",
                cost_usd=Decimal("0.003"),
                input_tokens=1200,
                output_tokens=40,
                output=json.dumps(
                    [
                        {
                            "role": "assistant",
                            "content": "",
                            "tool_calls": [
                                {"name": "lookup_order", "arguments": '{"id": 42}', "id": "c1"}
                            ],
                            "tool_call_id": "",
                        }
                    ]
                ),
                output_format="messages",
            ),
            add(
                run,
                "000000000000a003",
                "000000000000a001",
                500,
                300,
                kind="tool",
                name="execute_tool lookup_order",
                tool_name="lookup_order",
                input='{"id": 42}',
                input_format="json",
                output='{"status": "delivered"}',
            ),
            add(
                run,
                "000000000000a004",
                "000000000000a001",
                850,
                1400 if slow_refund else 600,
                kind="tool",
                name="execute_tool refund",
                tool_name="refund",
                input='{"id": 42}',
            ),
        ]
    )
    return run


def test_open_a_run_expand_select_story_and_zoom(logged_in_page, live_server, project):
    agent = make_agent(project)
    run = support_run(project, agent)
    # Deep enough that the plan's children start folded (depth >= 4 folds in every run).
    Span.objects.bulk_create(
        [
            add(run, "000000000000b001", "000000000000a003", 510, 100, kind="chain", name="fetch"),
            add(run, "000000000000b002", "000000000000b001", 520, 50, kind="chain", name="cache"),
            add(
                run,
                "000000000000b003",
                "000000000000b002",
                530,
                20,
                kind="tool",
                name="redis get",
                tool_name="redis_get",
            ),
            add(
                run,
                "000000000000b004",
                "000000000000b003",
                535,
                10,
                kind="other",
                name="socket read",
            ),
        ]
    )
    page = logged_in_page("viewer")

    page.goto(f"{live_server.url}/traces/{run.trace_id}/")

    expect(page.locator("h1")).to_have_text("refund order 42")
    folded = page.locator("#row-000000000000b002")
    expect(folded).to_have_attribute("aria-expanded", "false")
    hidden_child = page.locator("#row-000000000000b003")
    expect(hidden_child).to_be_hidden()
    folded.locator("[data-toggle]").click()
    expect(hidden_child).to_be_visible()
    expect(folded).to_have_attribute("aria-expanded", "true")
    # The child is deep enough to stay folded itself: its own child stays hidden.
    expect(page.locator("#row-000000000000b004")).to_be_hidden()
    # Fold a whole branch and open it again.
    plan = page.locator("#row-000000000000a001")
    plan.locator("[data-toggle]").click()
    expect(page.locator("#row-000000000000a002")).to_be_hidden()
    plan.locator("[data-toggle]").click()
    expect(page.locator("#row-000000000000a002")).to_be_visible()

    page.locator("#row-000000000000a002 .span-name").click()
    detail = page.locator("#span-detail")
    expect(detail.locator(".detail-title")).to_have_text("chat gpt-4o")
    expect(detail).to_contain_text("lookup_order")
    expect(detail).to_contain_text("1,200 in")
    expect(page.locator("#row-000000000000a002")).to_have_class(
        __import__("re").compile("is-selected")
    )

    first_label = page.locator(".wf-tick").nth(5).text_content()
    page.get_by_role("button", name="Zoom in").click()
    expect(page.locator(".wf-tick").nth(5)).not_to_have_text(first_label)
    page.get_by_role("button", name="Whole run").click()
    expect(page.locator(".wf-tick").nth(5)).to_have_text(first_label)

    page.get_by_role("tab", name="Story").click()
    story = page.locator("#story-panel")
    expect(story).to_be_visible()
    expect(story).to_contain_text("Received the request")
    expect(story).to_contain_text("Please refund order 42")
    expect(story).to_contain_text("decided to call lookup_order")
    story.get_by_text("Called the tool lookup_order").click()
    expect(detail.locator(".detail-title")).to_have_text("execute_tool lookup_order")
    expect(detail).to_contain_text("delivered")
    assert page.errors == []


def test_drag_across_the_time_axis_zooms_in(logged_in_page, live_server, project):
    run = support_run(project, make_agent(project))
    page = logged_in_page("viewer")
    page.goto(f"{live_server.url}/traces/{run.trace_id}/")
    axis = page.locator(".wf-axis").bounding_box()

    page.mouse.move(axis["x"] + axis["width"] * 0.25, axis["y"] + 10)
    page.mouse.down()
    page.mouse.move(axis["x"] + axis["width"] * 0.5, axis["y"] + 10, steps=5)
    page.mouse.up()

    zoom = page.locator("#span-tree").evaluate(
        "e => [e.style.getPropertyValue('--z0'), e.style.getPropertyValue('--z1')]"
    )
    assert [round(float(v)) for v in zoom] == [25, 50]
    expect(page.locator("#span-tree")).to_have_class(__import__("re").compile("zoomed"))


def test_compare_a_run_with_the_previous_one(logged_in_page, live_server, project):
    agent = make_agent(project)
    before = support_run(
        project, agent, version="1.0", started_at=timezone.now() - timedelta(hours=2)
    )
    after = support_run(project, agent, version="1.1", slow_refund=True)
    page = logged_in_page("viewer")
    page.goto(f"{live_server.url}/traces/{after.trace_id}/")

    page.get_by_role("link", name="Compare with previous run").click()

    expect(page.locator("h1")).to_have_text("Compare two runs")
    version = page.locator("table.compare-summary tr", has_text="Version")
    expect(version).to_have_class("changed")
    expect(page.locator("table.compare-steps tbody tr")).to_have_count(5)
    refund = page.locator("table.compare-steps tr", has_text="execute_tool refund")
    expect(refund.locator("td.worse")).to_have_text("1.40 s")
    assert before.trace_id in page.url


def test_a_run_of_5000_spans_opens_quickly_and_stays_interactive(
    logged_in_page, live_server, project
):
    agent = make_agent(project)
    run = make_run(
        project, agent, spans=1, started_at=timezone.now() - timedelta(hours=1), duration_ms=60_000
    )
    root = run.spans.get()
    spans = []
    for i in range(2500):
        parent = f"{i:016x}"
        spans.append(
            add(
                run,
                parent,
                root.span_id,
                i * 20,
                15,
                kind="llm",
                name=f"chat {i}",
                input="x" * 2000,
            )
        )
        spans.append(
            add(
                run,
                f"f{i:015x}",
                parent,
                i * 20 + 2,
                10,
                kind="tool",
                name=f"tool {i}",
                tool_name="search",
                input=f'{{"q": {i}}}',
            )
        )
    Span.objects.bulk_create(spans, batch_size=1000)
    Run.objects.filter(pk=run.pk).update(span_count=5001)
    page = logged_in_page("viewer")

    began = time.monotonic()
    page.goto(f"{live_server.url}/traces/{run.trace_id}/")
    page.locator(".span-row").first.wait_for()
    loaded_in = time.monotonic() - began

    assert loaded_in < 10, f"the page took {loaded_in:.1f} s"
    rendered = page.locator(".span-row").count()
    assert rendered <= 250  # capped; the rest come with "show more"
    target = page.locator("#row-0000000000000007")
    expect(target).to_have_attribute("aria-expanded", "false")  # big runs open folded
    target.locator("[data-toggle]").click()
    expect(page.locator(f"#row-f{7:015x}")).to_be_visible()
    target.locator(".span-name").click()
    expect(page.locator("#span-detail .detail-title")).to_have_text("chat 7")
    page.get_by_role("button", name="Show more spans").click()
    expect(page.locator(".span-row")).to_have_count(500)
    assert page.errors == []


HOSTILE = (
    '<script>alert(1)</script><img src=x onerror="alert(2)"><a href="javascript:alert(3)">x</a>'
    ' ![x](http://evil.example/beacon.png) <img src="http://evil.example/pixel.png">'
)


def test_hostile_content_fires_no_dialog_and_no_external_request(
    logged_in_page, live_server, project
):
    run = make_run(project, spans=2, name=HOSTILE[:300], user_id="<b>x</b>")
    span = run.spans.get(parent_span_id__gt="")
    span.name = HOSTILE[:300]
    span.kind = "llm"
    span.input = json.dumps(
        [{"role": "user", "content": HOSTILE, "tool_calls": [], "tool_call_id": ""}]
    )
    span.input_format = "messages"
    span.output = HOSTILE
    span.error_message = HOSTILE
    span.status = "error"
    span.save()
    page = logged_in_page("viewer")
    dialogs, outside = [], []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(live_server.url) else outside.append(request.url)
        ),
    )

    page.goto(f"{live_server.url}/traces/{run.trace_id}/")
    page.locator(f"#row-{span.span_id} .span-name").click()
    expect(page.locator("#span-detail .msg.user")).to_contain_text("<script>alert(1)</script>")
    page.get_by_role("tab", name="Story").click()
    expect(page.locator("#story-panel")).to_contain_text("onerror")
    page.wait_for_timeout(300)

    assert dialogs == []
    assert outside == []
    assert page.errors == []


def test_a_live_run_gains_a_span(asgi_logged_in_page, asgi_live_server, project):
    trace_id = new_trace_id()
    root = new_span_id()
    start = time.time_ns() - 2 * NS
    first = export_request(
        {"service.name": "support-triage", "service.version": "1.0"},
        [
            make_span(
                trace_id=trace_id,
                span_id=new_span_id(),
                parent_span_id=root,
                name="chat gpt-4o",
                start_ns=start,
                duration_ms=100,
                attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
            ),
        ],
    )
    ingest_batch(project, normalise_request(first))
    assert Run.objects.get(trace_id=trace_id).status == Run.Status.RUNNING
    page = asgi_logged_in_page("viewer")
    page.goto(f"{asgi_live_server.url}/traces/{trace_id}/")
    page.wait_for_function("document.body.dataset.live === 'on'")
    expect(page.locator(".span-row")).to_have_count(1)
    page.get_by_role("tab", name="Story").click()
    expect(page.locator("#story-panel .story-step")).to_have_count(1)

    def arrive():
        # As ingest will: store the span, then announce the run after commit.
        later = export_request(
            {"service.name": "support-triage", "service.version": "1.0"},
            [
                make_span(
                    trace_id=trace_id,
                    span_id=new_span_id(),
                    parent_span_id=root,
                    name="execute_tool lookup_order",
                    start_ns=start + 200_000_000,
                    duration_ms=50,
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": "lookup_order",
                    },
                ),
            ],
        )
        with transaction.atomic():
            ingest_batch(project, normalise_request(later))
            realtime.send_refresh(f"run.{trace_id}", "run-live")

    thread = threading.Thread(target=arrive)
    thread.start()
    thread.join()

    expect(page.locator("#run-span-count")).to_have_text("2")
    # The open story tells the new step too; the tree has it behind the Spans tab.
    expect(page.locator("#story-panel")).to_contain_text("lookup_order")
    page.get_by_role("tab", name="Spans").click()
    expect(page.locator(".span-row", has_text="execute_tool lookup_order")).to_be_visible()
    assert page.errors == []
