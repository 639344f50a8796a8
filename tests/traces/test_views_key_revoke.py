import pytest
from django.urls import reverse

from traces.models import IngestKey

pytestmark = pytest.mark.django_db


@pytest.fixture
def issued(project):
    return IngestKey.issue(project, label="prod workers")


def test_it_asks_before_revoking(client_as, issued):
    key, plaintext = issued

    response = client_as("admin").get(reverse("key-revoke", args=[key.pk]))

    assert response.status_code == 200
    html = response.content.decode()
    assert f"Revoke key <code>{key.prefix}…</code>?" in html
    assert 'method="post"' in html
    assert IngestKey.authenticate(plaintext) == key


def test_a_revoked_key_no_longer_authenticates(client_as, issued):
    key, plaintext = issued

    response = client_as("admin").post(reverse("key-revoke", args=[key.pk]), follow=True)

    assert response.redirect_chain[-1][0] == "/projects/#project-acme"
    assert "revoked" in response.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert IngestKey.authenticate(plaintext) is None


def test_revoking_twice_keeps_the_first_time(client_as, issued):
    key, _ = issued
    client = client_as("admin")
    client.post(reverse("key-revoke", args=[key.pk]))
    key.refresh_from_db()
    first = key.revoked_at

    response = client.post(reverse("key-revoke", args=[key.pk]), follow=True)

    key.refresh_from_db()
    assert key.revoked_at == first
    assert "already revoked" in response.content.decode()


def test_an_unknown_key_is_404(client_as):
    assert client_as("admin").post(reverse("key-revoke", args=[999999])).status_code == 404
