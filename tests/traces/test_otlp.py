"""OTLP/HTTP wire format: body reading with a cap, gzip, protobuf and JSON decoding, replies."""

import base64
import gzip
import io
import json
import tracemalloc

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from tests.traces.payloads import agent_trace
from traces import otlp


def otlp_json(request) -> dict:
    """The OTLP JSON form of a request: like json_format's, but with hex ids as the spec says."""
    document = json_format.MessageToDict(request)
    for resource_spans in document["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for field in ("traceId", "spanId", "parentSpanId"):
                    if field in span:
                        span[field] = base64.b64decode(span[field]).hex()
    return document


class TestMediaType:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("application/x-protobuf", otlp.PROTOBUF),
            ("application/json; charset=utf-8", otlp.JSON),
            ("Application/JSON", otlp.JSON),
            ("text/plain", None),
            ("", None),
            (None, None),
        ],
    )
    def test_it_reads_the_media_type_and_ignores_parameters(self, header, expected):
        assert otlp.media_type(header) == expected


class TestReadBody:
    def test_it_reads_a_plain_body_up_to_the_limit(self):
        assert otlp.read_body(io.BytesIO(b"x" * 100), None, 100) == b"x" * 100
        with pytest.raises(otlp.BodyTooLarge):
            otlp.read_body(io.BytesIO(b"x" * 101), "identity", 100)

    def test_it_decompresses_gzip_and_applies_the_limit_afterwards(self):
        body = gzip.compress(b"y" * 5000)
        assert otlp.read_body(io.BytesIO(body), "gzip", 5000) == b"y" * 5000
        with pytest.raises(otlp.BodyTooLarge, match="after decompression"):
            otlp.read_body(io.BytesIO(body), "gzip", 4999)

    def test_a_gzip_bomb_stops_at_the_limit_without_inflating_it_all(self):
        bomb = gzip.compress(b"\0" * (200 * 1024 * 1024), compresslevel=9)
        assert len(bomb) < 300 * 1024
        tracemalloc.start()
        try:
            with pytest.raises(otlp.BodyTooLarge):
                otlp.read_body(io.BytesIO(bomb), "gzip", 1024 * 1024)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 8 * 1024 * 1024

    def test_it_reads_several_gzip_members_back_to_back(self):
        body = gzip.compress(b"first ") + gzip.compress(b"second")
        assert otlp.read_body(io.BytesIO(body), "gzip", 1000) == b"first second"

    @pytest.mark.parametrize(
        "body", [b"not gzip at all", gzip.compress(b"z" * 1000)[:-12]], ids=["garbage", "cut short"]
    )
    def test_bad_gzip_is_a_bad_payload(self, body):
        with pytest.raises(otlp.BadPayload, match="not valid gzip"):
            otlp.read_body(io.BytesIO(body), "gzip", 10_000)

    def test_an_unknown_content_encoding_is_unsupported(self):
        with pytest.raises(otlp.UnsupportedMedia, match="br"):
            otlp.read_body(io.BytesIO(b""), "br", 100)


class TestDecode:
    def test_json_with_hex_ids_decodes_to_the_same_request_as_protobuf(self):
        request = agent_trace()
        from_json = otlp.decode_request(json.dumps(otlp_json(request)).encode(), otlp.JSON)
        from_protobuf = otlp.decode_request(request.SerializeToString(), otlp.PROTOBUF)
        assert from_json == request
        assert from_protobuf == request
        span = from_json.resource_spans[0].scope_spans[0].spans[1]
        assert len(span.trace_id) == 16 and len(span.span_id) == 8 and len(span.parent_span_id) == 8

    def test_json_ignores_unknown_fields_and_takes_enums_as_integers(self):
        document = {
            "resourceSpans": [
                {
                    "somethingNew": 1,
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "5b8efff798038103d269b633813fc60c",
                                    "spanId": "eee19b7ec3c1b174",
                                    "name": "chat",
                                    "kind": 3,
                                    "startTimeUnixNano": "1544712660000000000",
                                    "status": {"code": 2},
                                    "links": [
                                        {
                                            "traceId": "5b8efff798038103d269b633813fc60c",
                                            "spanId": "eee19b7ec3c1b175",
                                        }
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
        request = otlp.decode_request(json.dumps(document).encode(), otlp.JSON)
        span = request.resource_spans[0].scope_spans[0].spans[0]
        assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
        assert span.links[0].span_id.hex() == "eee19b7ec3c1b175"
        assert (span.kind, span.status.code) == (3, 2)
        assert span.start_time_unix_nano == 1544712660000000000

    def test_a_non_hex_id_names_the_span_and_field(self):
        document = {"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz" * 8}]}]}]}
        with pytest.raises(otlp.BadPayload, match=r"spans\[0\]\.spanId must be a hex string"):
            otlp.decode_request(json.dumps(document).encode(), otlp.JSON)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "not valid JSON"),
            (b"[1, 2]", "must be an object"),
            (b"\xff\xfe{}", "not UTF-8"),
            (
                b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
                "startTimeUnixNano",
            ),
        ],
    )
    def test_bad_json_says_what_was_wrong(self, body, message):
        with pytest.raises(otlp.BadPayload, match=message):
            otlp.decode_request(body, otlp.JSON)

    def test_bad_protobuf_is_a_bad_payload(self):
        with pytest.raises(otlp.BadPayload, match="not a valid protobuf"):
            otlp.decode_request(b"\x0a\xff\xff\xff\xff\x0f garbage", otlp.PROTOBUF)


class TestReplies:
    def test_an_empty_response_is_empty_in_both_forms(self):
        assert otlp.encode_response(otlp.PROTOBUF) == b""
        assert otlp.encode_response(otlp.JSON) == b"{}"

    def test_partial_success_carries_the_rejected_count(self):
        body = otlp.encode_response(otlp.PROTOBUF, 3, "3 span(s) rejected")
        response = ExportTraceServiceResponse.FromString(body)
        assert response.partial_success.rejected_spans == 3
        as_json = json.loads(otlp.encode_response(otlp.JSON, 3, "why"))
        assert as_json == {"partialSuccess": {"rejectedSpans": "3", "errorMessage": "why"}}

    def test_errors_are_a_google_rpc_status_json_when_the_type_is_unknown(self):
        body, content_type = otlp.encode_status(None, 3, "bad")
        assert content_type == otlp.JSON
        assert json.loads(body) == {"code": 3, "message": "bad"}
        body, content_type = otlp.encode_status(otlp.PROTOBUF, 14, "later")
        assert status_pb2.Status.FromString(body).message == "later"
