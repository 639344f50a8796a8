"""Project-key authentication, shared by the OTLP receiver and the DRF API."""

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication

from traces.models import IngestKey


def bearer_token(request) -> str:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return ""
    return token.strip()


def key_from_request(request) -> IngestKey | None:
    """The active ingest key presented as `Authorization: Bearer <key>`, or None."""
    key = IngestKey.authenticate(bearer_token(request))
    if key is not None:
        now = timezone.now()
        # Touch last_used_at at most once a minute: ingest is hot and this row is shared.
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
            IngestKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return key


class IngestKeyAuthentication(BaseAuthentication):
    """Authenticates API calls made with a project key; sets request.project.

    The request stays anonymous as a user: a key speaks for a project, never for a person.
    """

    def authenticate(self, request):
        token = bearer_token(request)
        if not token:
            request._request.project = None
            return None
        key = key_from_request(request)
        if key is None:
            from rest_framework.exceptions import AuthenticationFailed

            raise AuthenticationFailed("Unknown or revoked project key.")
        request._request.project = key.project
        return (None, key)

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="agent-cockpit"'
