"""POST /v1/traces: the OTLP/HTTP trace receiver.

The 200 is sent only after the batch is committed, so an acknowledged span is never lost.
Whatever a client sends maps to a 4xx with a google.rpc.Status body saying what was wrong;
an unavailable or overloaded database maps to 503 + Retry-After, which OTLP clients retry.
"""

import logging
import threading

from django.conf import settings
from django.db import DataError, IntegrityError, InterfaceError, OperationalError
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from traces import otlp
from traces.auth import key_from_request
from traces.ingest import ingest_batch
from traces.normalise import normalise_request

logger = logging.getLogger(__name__)

# google.rpc.Code values for the Status body.
INVALID_ARGUMENT = 3
RESOURCE_EXHAUSTED = 8
UNIMPLEMENTED = 12
UNAVAILABLE = 14
UNAUTHENTICATED = 16

# Ingest requests working at once in this process; the rest get 503 at once rather than queue
# behind the database. Non-blocking: a waiting request would only hold memory and a socket.
ingest_slots = threading.BoundedSemaphore(settings.COCKPIT_INGEST_MAX_CONCURRENCY)

# partial_success.error_message quotes this many of the rejection reasons.
MAX_REASONS = 5


@csrf_exempt
def otlp_traces(request):
    media = otlp.media_type(request.META.get("CONTENT_TYPE"))
    if request.method != "POST":
        response = _status(media, 405, UNIMPLEMENTED, "Only POST is allowed on /v1/traces.")
        response["Allow"] = "POST"
        return response
    if not ingest_slots.acquire(blocking=False):
        return _unavailable(media, "Too many ingest requests at once; retry later.")
    try:
        return _receive(request, media)
    except (OperationalError, InterfaceError, IntegrityError) as error:
        # IntegrityError: a concurrent batch stored one of these spans first; a retry
        # finds it stored and skips it.
        logger.warning("Ingest answered 503, the database is unavailable: %s", error)
        return _unavailable(media, "The database is unavailable or overloaded; retry later.")
    finally:
        ingest_slots.release()


def _receive(request, media: str | None) -> HttpResponse:
    key = key_from_request(request)
    if key is None:
        response = _status(
            media,
            401,
            UNAUTHENTICATED,
            "A valid project key is required: Authorization: Bearer <key>.",
        )
        response["WWW-Authenticate"] = 'Bearer realm="agent-cockpit"'
        return response
    if media is None:
        return _status(
            None,
            415,
            INVALID_ARGUMENT,
            "Content-Type must be application/x-protobuf or application/json.",
        )
    try:
        body = otlp.read_body(
            request, request.META.get("HTTP_CONTENT_ENCODING"), settings.COCKPIT_INGEST_MAX_BYTES
        )
        export = otlp.decode_request(body, media)
        del body  # The decoded message holds everything now; free the bytes early.
    except otlp.UnsupportedMedia as error:
        return _status(media, 415, INVALID_ARGUMENT, str(error))
    except otlp.BodyTooLarge as error:
        return _status(media, 413, RESOURCE_EXHAUSTED, str(error))
    except otlp.BadPayload as error:
        return _status(media, 400, INVALID_ARGUMENT, str(error))
    batch = _normalise(export, key.project)
    if batch is None:
        return _status(
            media, 400, INVALID_ARGUMENT, "The spans could not be read; see the server log."
        )
    try:
        ingest_batch(key.project, batch)
    except DataError as error:
        # A value the store cannot hold (a number out of range, …): the client's to fix.
        return _status(
            media,
            400,
            INVALID_ARGUMENT,
            f"A span holds a value that cannot be stored: {error}".strip(),
        )
    message = ""
    if batch.rejected:
        reasons = batch.errors[:MAX_REASONS]
        message = f"{batch.rejected} span(s) rejected: " + "; ".join(reasons)
    return HttpResponse(
        otlp.encode_response(media, batch.rejected, message), content_type=media, status=200
    )


def _normalise(export, project):
    """The normalised batch, or None when the payload trips the normaliser up."""
    from traces.pricing import Pricer  # Imported late: pricing loads its price tables.

    try:
        return normalise_request(export, Pricer(project))
    except (OperationalError, InterfaceError):
        raise
    except Exception:
        # Input the normaliser did not foresee must not become a 500 that clients retry.
        logger.exception("The normaliser failed on a batch for project %s", project.pk)
        return None


def _status(media, status: int, code: int, message: str) -> HttpResponse:
    body, content_type = otlp.encode_status(media, code, message)
    return HttpResponse(body, content_type=content_type, status=status)


def _unavailable(media, message: str) -> HttpResponse:
    response = _status(media, 503, UNAVAILABLE, message)
    response["Retry-After"] = str(settings.COCKPIT_RETRY_AFTER_SECONDS)
    return response
