import pytest
from django.db import connection
from django.urls import reverse

from traces.models import IngestKey, hash_key

pytestmark = pytest.mark.django_db


def create_key(client, project_name="acme", label="prod workers"):
    return client.post(reverse("key-create", args=[project_name]), {"label": label})


def plaintext_of(response) -> str:
    return response.context["plaintext"]


def test_the_new_key_is_shown_once_with_an_exporter_snippet(client_as, project, people):
    response = create_key(client_as("admin"))

    assert response.status_code == 200
    plaintext = plaintext_of(response)
    html = response.content.decode()
    assert f'<code id="new-key">{plaintext}</code>' in html
    assert 'OTEL_EXPORTER_OTLP_ENDPOINT="http://testserver"' in html
    assert f'OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer%20{plaintext}"' in html
    assert "no-store" in response["Cache-Control"]
    key = IngestKey.objects.get()
    assert key.label == "prod workers"
    assert key.created_by == people["admin"]
    assert IngestKey.authenticate(plaintext) == key


def test_only_the_hash_of_the_key_is_stored(client_as, project):
    plaintext = plaintext_of(create_key(client_as("admin")))

    key = IngestKey.objects.get()
    assert key.key_hash == hash_key(plaintext)
    assert plaintext.startswith(key.prefix) and len(key.prefix) < len(plaintext)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM traces_ingestkey WHERE label = %s OR prefix = %s "
            "OR key_hash = %s",
            [plaintext, plaintext, plaintext],
        )
        assert cursor.fetchone()[0] == 0
    # Nothing was tucked away for a later page either.
    assert plaintext not in client_as("admin").get(reverse("project-list")).content.decode()


def test_each_key_is_new(client_as, project):
    client = client_as("admin")

    first, second = plaintext_of(create_key(client)), plaintext_of(create_key(client))

    assert first != second
    assert IngestKey.objects.count() == 2


def test_an_unknown_project_is_404(client_as):
    assert create_key(client_as("admin"), "nope").status_code == 404


def test_a_too_long_label_is_refused_and_no_key_made(client_as, project):
    response = create_key(client_as("admin"), label="x" * 101)

    assert response.status_code == 400
    assert "at most 100 characters" in response.content.decode()
    assert not IngestKey.objects.exists()


def test_reading_the_form_by_get_is_not_allowed(client_as, project):
    response = client_as("admin").get(reverse("key-create", args=["acme"]))

    assert response.status_code == 405
