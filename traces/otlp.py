"""OTLP/HTTP wire format: read, decompress and decode request bodies; encode replies.

Everything here is pure (no database), so the receiver can map each failure to its status:
UnsupportedMedia → 415, BodyTooLarge → 413, BadPayload → 400.
"""

import base64
import json
import zlib

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"

READ_CHUNK = 256 * 1024
# The OTLP JSON fields that carry ids as hex strings (the proto3 JSON mapping says base64).
HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
# Error messages quote at most this much of what the client sent.
QUOTE_CHARS = 60


class UnsupportedMedia(Exception):
    """415: a content type or content encoding this endpoint does not speak."""


class BodyTooLarge(Exception):
    """413: the body, once decompressed, is over the configured limit."""


class BadPayload(Exception):
    """400: the body cannot be decoded; the message says what was wrong and where."""


def media_type(content_type_header: str | None) -> str | None:
    """PROTOBUF or JSON for a Content-Type header (parameters such as charset ignored)."""
    value = (content_type_header or "").split(";", 1)[0].strip().lower()
    if value in (PROTOBUF, JSON):
        return value
    return None


def read_body(stream, content_encoding: str | None, max_bytes: int) -> bytes:
    """The request body, decompressed, never holding more than max_bytes of it in memory."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return _read_capped(stream, max_bytes)
    if encoding in ("gzip", "x-gzip"):
        return _read_gzip_capped(stream, max_bytes)
    raise UnsupportedMedia(f"Content-Encoding {encoding!r} is not supported; use gzip or none.")


def _too_large(max_bytes: int) -> BodyTooLarge:
    return BodyTooLarge(f"The request body is larger than {max_bytes} bytes (after decompression).")


def _read_capped(stream, max_bytes: int) -> bytes:
    chunks = []
    size = 0
    while chunk := stream.read(READ_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _read_gzip_capped(stream, max_bytes: int) -> bytes:
    """Inflate chunk by chunk; max_length stops a gzip bomb before it reaches memory."""
    out = bytearray()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    received = 0
    try:
        while chunk := stream.read(READ_CHUNK):
            received += len(chunk)
            # Compressed input is rarely larger than its output; this bounds pathological input.
            if received > max_bytes + READ_CHUNK:
                raise _too_large(max_bytes)
            pending = chunk
            while pending:
                room = max_bytes - len(out) + 1
                out += inflater.decompress(pending, room)
                if len(out) > max_bytes:
                    raise _too_large(max_bytes)
                pending = inflater.unconsumed_tail
                if inflater.eof and inflater.unused_data:
                    # A gzip stream may hold several members back to back (RFC 1952).
                    pending = inflater.unused_data + pending
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        out += inflater.flush()
    except zlib.error as error:
        raise BadPayload(f"The body is not valid gzip: {error}.") from None
    if len(out) > max_bytes:
        raise _too_large(max_bytes)
    if received and not inflater.eof:
        raise BadPayload("The body is not valid gzip: the stream ends early.")
    return bytes(out)


def decode_request(body: bytes, media: str) -> ExportTraceServiceRequest:
    if media == PROTOBUF:
        return _decode_protobuf(body)
    return _decode_json(body)


def _decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as error:
        raise BadPayload(
            f"The body is not a valid protobuf ExportTraceServiceRequest: {error}."
        ) from None
    return request


def _decode_json(body: bytes) -> ExportTraceServiceRequest:
    try:
        # OTLP JSON is UTF-8; json.loads would otherwise guess UTF-16/32 from the first bytes.
        document = json.loads(body.decode("utf-8-sig"))
    except UnicodeDecodeError as error:
        raise BadPayload(f"The JSON body is not UTF-8: {error}.") from None
    except ValueError as error:
        raise BadPayload(f"The body is not valid JSON: {error}.") from None
    if not isinstance(document, dict):
        raise BadPayload("The JSON body must be an object with resourceSpans.")
    _hex_ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as error:
        raise BadPayload(
            f"The JSON body does not match ExportTraceServiceRequest: {error}"
        ) from None
    return request


def _hex_ids_to_base64(document: dict) -> None:
    """Rewrite OTLP's hex ids as base64, in place, as json_format expects for bytes fields.

    Without this, json_format decodes 32 hex characters as base64 into 24 wrong bytes.
    Shapes that are not as expected are left for json_format to reject with its own message.
    """
    for r, resource_spans in enumerate(_list(document.get("resourceSpans"))):
        for s, scope_spans in enumerate(_list(_get(resource_spans, "scopeSpans"))):
            for n, span in enumerate(_list(_get(scope_spans, "spans"))):
                where = f"resourceSpans[{r}].scopeSpans[{s}].spans[{n}]"
                _convert_ids(span, where)
                for k, link in enumerate(_list(_get(span, "links"))):
                    _convert_ids(link, f"{where}.links[{k}]")


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _get(value, key: str):
    return value.get(key) if isinstance(value, dict) else None


def _convert_ids(holder, where: str) -> None:
    if not isinstance(holder, dict):
        return
    for field in HEX_ID_FIELDS:
        value = holder.get(field)
        if not isinstance(value, str) or value == "":
            continue
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise BadPayload(
                f"{where}.{field} must be a hex string, not {value[:QUOTE_CHARS]!r}."
            ) from None
        holder[field] = base64.b64encode(raw).decode("ascii")


def encode_response(media: str, rejected: int = 0, error_message: str = "") -> bytes:
    """ExportTraceServiceResponse, with partial_success only when some spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    return _encode(response, media)


def encode_status(media: str | None, code: int, message: str) -> tuple[bytes, str]:
    """A google.rpc.Status body and its content type (JSON when the request's is unknown)."""
    media = media or JSON
    return _encode(status_pb2.Status(code=code, message=message), media), media


def _encode(message, media: str) -> bytes:
    if media == PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()
