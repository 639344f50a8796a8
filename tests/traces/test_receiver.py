"""POST /v1/traces end to end: auth, every bad input, partial success, idempotency, overload."""

import gzip
import json
import threading

import pytest
from django.db import IntegrityError, OperationalError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.traces.payloads import agent_trace, export_request, make_span, new_trace_id
from tests.traces.test_otlp import otlp_json
from traces import receiver
from traces.models import IngestKey, Run, Span

URL = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def post(client, body: bytes, key: str | None, content_type=PROTOBUF, **headers):
    if key is not None:
        headers["authorization"] = f"Bearer {key}"
    return client.post(URL, data=body, content_type=content_type, headers=headers)


def status_message(response) -> str:
    if response["Content-Type"] == PROTOBUF:
        return status_pb2.Status.FromString(response.content).message
    return json.loads(response.content)["message"]


def stored_spans(project) -> list[tuple]:
    return sorted(
        Span.objects.filter(project=project).values_list(
            "trace_id", "span_id", "parent_span_id", "name", "kind", "input_tokens"
        )
    )


@pytest.mark.django_db
class TestAuthAndMethod:
    def test_a_missing_key_is_401_with_a_challenge(self, client):
        response = post(client, b"", None)
        assert response.status_code == 401
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "project key" in status_message(response)

    def test_an_unknown_key_is_401(self, client, project):
        assert post(client, b"", "ck_not-a-real-key").status_code == 401

    def test_a_revoked_key_is_401(self, client, project, ingest_key):
        IngestKey.objects.get(project=project).revoke()
        assert post(client, b"", ingest_key).status_code == 401

    def test_get_is_405(self, client, ingest_key):
        response = client.get(URL, headers={"authorization": f"Bearer {ingest_key}"})
        assert response.status_code == 405
        assert response["Allow"] == "POST"


@pytest.mark.django_db
class TestBadInput:
    def test_an_unknown_content_type_is_415_answered_in_json(self, client, ingest_key):
        response = post(client, b"hello", ingest_key, content_type="text/plain")
        assert response.status_code == 415
        assert response["Content-Type"] == JSON
        assert "Content-Type" in status_message(response)

    def test_an_unknown_content_encoding_is_415(self, client, ingest_key):
        response = post(client, b"x", ingest_key, content_encoding="br")
        assert response.status_code == 415
        assert "br" in status_message(response)

    def test_a_body_over_the_limit_after_decompression_is_413(self, client, ingest_key, settings):
        settings.COCKPIT_INGEST_MAX_BYTES = 4096
        body = gzip.compress(agent_trace().SerializeToString() + b"\0" * 5000)
        assert len(body) < 4096
        response = post(client, body, ingest_key, content_encoding="gzip")
        assert response.status_code == 413
        assert response["Content-Type"] == PROTOBUF
        assert "4096" in status_message(response)

    def test_a_gzip_bomb_is_413(self, client, ingest_key):
        bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
        response = post(client, bomb, ingest_key, content_encoding="gzip")
        assert response.status_code == 413

    @pytest.mark.parametrize(
        ("body", "content_type", "headers", "message"),
        [
            (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF, {}, "not a valid protobuf"),
            (b'{"resourceSpans": [', JSON, {}, "not valid JSON"),
            (b"\x1f\x8bnope", PROTOBUF, {"content_encoding": "gzip"}, "not valid gzip"),
            (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}',
                JSON,
                {},
                "traceId must be a hex string",
            ),
        ],
        ids=["protobuf", "json", "gzip", "hex id"],
    )
    def test_an_undecodable_body_is_400_saying_what_was_wrong(
        self, client, ingest_key, body, content_type, headers, message
    ):
        response = post(client, body, ingest_key, content_type=content_type, **headers)
        assert response.status_code == 400
        assert response["Content-Type"] == content_type
        assert message in status_message(response)


def batch_with_a_bad_span():
    request = agent_trace()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[2].span_id = b"\x01\x02"  # an id of the wrong length: this span cannot be stored
    return request


@pytest.mark.django_db
class TestAccepted:
    def test_a_protobuf_batch_is_stored_and_acknowledged_empty(self, client, project, ingest_key):
        response = post(client, agent_trace().SerializeToString(), ingest_key)
        assert response.status_code == 200
        assert response["Content-Type"] == PROTOBUF
        assert response.content == b""
        run = Run.objects.get(project=project)
        assert (run.span_count, run.llm_calls, run.tool_calls, run.status) == (4, 2, 1, "ok")

    def test_json_with_hex_ids_is_stored_like_the_same_protobuf(
        self, client, project, other_project, ingest_key, other_key
    ):
        request = agent_trace()
        as_json = json.dumps(otlp_json(request)).encode()
        response = post(client, as_json, ingest_key, content_type="application/json; charset=utf-8")
        assert response.status_code == 200
        assert response.content == b"{}"
        assert post(client, request.SerializeToString(), other_key).status_code == 200
        assert stored_spans(project) == stored_spans(other_project)
        trace_id = request.resource_spans[0].scope_spans[0].spans[0].trace_id.hex()
        assert Run.objects.get(project=project).trace_id == trace_id

    def test_a_gzip_body_is_accepted(self, client, project, ingest_key):
        body = gzip.compress(agent_trace().SerializeToString())
        assert post(client, body, ingest_key, content_encoding="gzip").status_code == 200
        assert Span.objects.filter(project=project).count() == 4

    @pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
    def test_rejected_spans_are_a_partial_success(self, client, project, ingest_key, content_type):
        request = batch_with_a_bad_span()
        if content_type == JSON:
            body = json.dumps(otlp_json(request)).encode()
        else:
            body = request.SerializeToString()
        response = post(client, body, ingest_key, content_type=content_type)
        assert response.status_code == 200
        if content_type == JSON:
            partial = json.loads(response.content)["partialSuccess"]
            assert partial["rejectedSpans"] == "1"
            message = partial["errorMessage"]
        else:
            partial = ExportTraceServiceResponse.FromString(response.content).partial_success
            assert partial.rejected_spans == 1
            message = partial.error_message
        assert message.startswith("1 span(s) rejected")
        assert Span.objects.filter(project=project).count() == 3

    def test_the_same_batch_twice_is_stored_once(self, client, project, ingest_key):
        body = agent_trace().SerializeToString()
        assert post(client, body, ingest_key).status_code == 200
        run = Run.objects.get(project=project)
        assert post(client, body, ingest_key).status_code == 200
        again = Run.objects.get(project=project)
        assert Span.objects.filter(project=project).count() == 4
        assert (again.span_count, again.input_tokens, again.cost_usd, again.status) == (
            run.span_count,
            run.input_tokens,
            run.cost_usd,
            run.status,
        )

    def test_children_sent_before_the_root_end_in_the_right_summary(
        self, client, project, ingest_key
    ):
        request = agent_trace()
        resource = {"service.name": "support-triage", "service.version": "1.0.0"}
        root, *children = request.resource_spans[0].scope_spans[0].spans
        first = export_request(resource, children[1:])
        second = export_request(resource, [children[0], children[1]])  # one repeated
        post(client, first.SerializeToString(), ingest_key)
        assert Run.objects.get(project=project).status == "running"
        post(client, second.SerializeToString(), ingest_key)
        post(client, export_request(resource, [root]).SerializeToString(), ingest_key)
        run = Run.objects.get(project=project)
        assert (run.span_count, run.llm_calls, run.status) == (4, 2, "ok")
        assert run.name == "invoke_agent support-triage"
        assert run.input_tokens == 2700

    def test_another_projects_key_writes_its_own_run(
        self, client, project, other_project, ingest_key, other_key
    ):
        trace_id = new_trace_id()
        post(client, agent_trace(trace_id=trace_id).SerializeToString(), ingest_key)
        lone = export_request({"service.name": "x"}, [make_span(trace_id=trace_id)])
        post(client, lone.SerializeToString(), other_key)
        assert Run.objects.get(project=project, trace_id=trace_id).span_count == 4
        assert Run.objects.get(project=other_project, trace_id=trace_id).span_count == 1

    def test_a_body_larger_than_djangos_upload_limit_is_accepted(self, client, project, ingest_key):
        trace_id = new_trace_id()
        spans = [
            make_span(trace_id=trace_id, name=f"step {n}", attributes={"input.value": "x" * 30_000})
            for n in range(100)
        ]
        body = export_request({"service.name": "big"}, spans).SerializeToString()
        assert len(body) > 2_621_440
        assert post(client, body, ingest_key).status_code == 200
        assert Span.objects.filter(project=project).count() == 100

    def test_a_nul_byte_in_content_is_stored(self, client, project, ingest_key):
        span = make_span(
            trace_id=new_trace_id(),
            name="nul\x00name",
            attributes={"input.value": "before\x00after", "note\x00": "a\x00b"},
        )
        response = post(
            client, export_request({"service.name": "n"}, [span]).SerializeToString(), ingest_key
        )
        assert response.status_code == 200
        stored = Span.objects.get(project=project)
        assert "\x00" not in stored.name + stored.input + json.dumps(stored.attributes)
        assert stored.name.startswith("nul")


@pytest.mark.django_db
class TestOverload:
    def test_a_database_error_is_503_with_retry_after(
        self, client, ingest_key, monkeypatch, settings
    ):
        settings.COCKPIT_RETRY_AFTER_SECONDS = 7

        def unavailable(project, batch):
            raise OperationalError("could not connect to server")

        monkeypatch.setattr(receiver, "ingest_batch", unavailable)
        response = post(client, agent_trace().SerializeToString(), ingest_key)
        assert response.status_code == 503
        assert response["Retry-After"] == "7"
        assert "retry" in status_message(response)

    def test_a_span_stored_by_a_concurrent_batch_is_503_so_the_client_retries(
        self, client, ingest_key, monkeypatch
    ):
        def raced(project, batch):
            raise IntegrityError("duplicate key value violates unique constraint")

        monkeypatch.setattr(receiver, "ingest_batch", raced)
        response = post(client, agent_trace().SerializeToString(), ingest_key)
        assert response.status_code == 503
        assert response["Retry-After"]

    def test_too_many_requests_at_once_is_503_with_retry_after(
        self, client, ingest_key, monkeypatch
    ):
        slots = threading.BoundedSemaphore(1)
        monkeypatch.setattr(receiver, "ingest_slots", slots)
        slots.acquire()
        response = post(client, agent_trace().SerializeToString(), ingest_key)
        assert response.status_code == 503
        assert response["Retry-After"]
        slots.release()
        assert post(client, agent_trace().SerializeToString(), ingest_key).status_code == 200
