"""An agent instrumented with the real OpenTelemetry SDK, exporting over OTLP/HTTP to a live
server, shows up in the read API: the path a real integration takes, end to end."""

import time

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind


class RecordingExporter(OTLPSpanExporter):
    """The SDK's own exporter; it remembers each export's result so a failure is visible."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.results = []

    def export(self, spans):
        result = super().export(spans)
        self.results.append(result)
        return result


def run_agent(live_server_url: str, key: str) -> dict:
    """One small agent run, the way an instrumented agent would emit it. Returns its ids."""
    exporter = RecordingExporter(
        endpoint=f"{live_server_url}/v1/traces",
        headers={"Authorization": f"Bearer {key}"},
        compression=Compression.Gzip,
        timeout=10,
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": "support-triage", "service.version": "2.0.0"})
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.end_to_end")

    with tracer.start_as_current_span(
        "invoke_agent support-triage",
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "support-triage",
            "gen_ai.conversation.id": "conv-e2e",
            "cockpit.run.outcome": "success",
        },
    ) as root:
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 80,
            },
        ) as chat:
            time.sleep(0.01)
        with tracer.start_as_current_span(
            "execute_tool lookup_order",
            attributes={
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.arguments": '{"order_id": 42}',
            },
        ) as tool:
            time.sleep(0.01)

    assert provider.force_flush(timeout_millis=15_000)
    provider.shutdown()
    assert exporter.results == [SpanExportResult.SUCCESS]
    return {
        "trace_id": format(root.get_span_context().trace_id, "032x"),
        "root": format(root.get_span_context().span_id, "016x"),
        "chat": format(chat.get_span_context().span_id, "016x"),
        "tool": format(tool.get_span_context().span_id, "016x"),
    }


def get_json(url: str, key: str, **params) -> requests.Response:
    return requests.get(url, params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10)


def wait_for_run(api: str, key: str, trace_id: str) -> dict:
    """The run as listed by the read API, once ingest has stored it (at most ~10 s)."""
    deadline = time.monotonic() + 10
    while True:
        response = get_json(f"{api}/runs", key, agent="support-triage")
        assert response.status_code == 200, response.text
        runs = [run for run in response.json()["results"] if run["trace_id"] == trace_id]
        if (runs and runs[0]["span_count"] == 3) or time.monotonic() > deadline:
            assert runs, f"run {trace_id} never appeared in the read API"
            return runs[0]
        time.sleep(0.2)


@pytest.mark.django_db(transaction=True)
def test_a_trace_exported_by_the_otel_sdk_is_readable_through_the_api(
    live_server, ingest_key, other_key
):
    ids = run_agent(live_server.url, ingest_key)
    api = f"{live_server.url}/api/v1"

    run = wait_for_run(api, ingest_key, ids["trace_id"])

    assert run["agent"] == "support-triage"
    assert run["version"] == "2.0.0"
    assert run["status"] == "ok"
    assert run["outcome"] == "success"
    assert run["conversation_id"] == "conv-e2e"
    assert (run["span_count"], run["llm_calls"], run["tool_calls"]) == (3, 1, 1)
    assert (run["tokens"]["input"], run["tokens"]["output"]) == (1200, 80)

    detail = get_json(run["links"]["api"], ingest_key)
    assert detail.status_code == 200, detail.text
    spans = {span["span_id"]: span for span in detail.json()["spans"]}
    assert set(spans) == {ids["root"], ids["chat"], ids["tool"]}
    root, chat, tool = spans[ids["root"]], spans[ids["chat"]], spans[ids["tool"]]
    assert (root["kind"], root["parent_span_id"]) == ("agent", "")
    assert (chat["kind"], chat["parent_span_id"]) == ("llm", ids["root"])
    assert (chat["provider"], chat["model"]) == ("openai", "gpt-4o-mini")
    assert (chat["tokens"]["input"], chat["tokens"]["output"]) == (1200, 80)
    assert (tool["kind"], tool["tool_name"], tool["parent_span_id"]) == (
        "tool",
        "lookup_order",
        ids["root"],
    )
    assert root["resource"]["service.name"] == "support-triage"

    # The same run is invisible to another project's key.
    assert get_json(run["links"]["api"], other_key).status_code == 404
    assert get_json(f"{api}/runs", other_key).json()["results"] == []
