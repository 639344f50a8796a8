import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import make_agent
from traces.models import IngestKey, Project

pytestmark = pytest.mark.django_db


def test_it_lists_projects_with_their_keys(client_as, project, people):
    active, _ = IngestKey.issue(project, label="prod workers", user=people["admin"])
    revoked, _ = IngestKey.issue(project, label="old laptop")
    revoked.revoke()
    make_agent(project)

    response = client_as("admin").get(reverse("project-list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "acme" in html
    assert "1 agent " in html
    assert f"<code>{active.prefix}…</code>" in html
    assert "prod workers" in html and "by admin" in html
    assert "old laptop" in html and "revoked" in html
    assert reverse("key-revoke", args=[active.pk]) in html
    assert reverse("key-revoke", args=[revoked.pk]) not in html
    assert "never" in html  # neither key has been used


def test_it_shows_when_a_key_was_last_used(client_as, project):
    key, _ = IngestKey.issue(project, label="busy")
    IngestKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())

    html = client_as("admin").get(reverse("project-list")).content.decode()

    assert "0\xa0minutes ago" in html


def test_an_admin_creates_a_project(client_as):
    response = client_as("admin").post(reverse("project-list"), {"name": "support-bots"})

    assert response.status_code == 302
    assert response["Location"] == "/projects/#project-support-bots"
    assert Project.objects.filter(name="support-bots").exists()


def test_a_bad_or_taken_project_name_is_refused_with_the_reason(client_as, project):
    client = client_as("admin")

    taken = client.post(reverse("project-list"), {"name": "acme"})
    bad = client.post(reverse("project-list"), {"name": "not a slug!"})

    assert taken.status_code == 400
    assert "already exists" in taken.content.decode()
    assert bad.status_code == 400
    assert "letters, numbers, underscores or hyphens" in bad.content.decode()
    assert Project.objects.count() == 1


def test_no_projects_yet_shows_an_empty_state(client_as):
    html = client_as("admin").get(reverse("project-list")).content.decode()

    assert "No projects yet" in html


def test_key_labels_are_escaped(client_as, project):
    IngestKey.issue(project, label="<script>alert(1)</script>")

    html = client_as("admin").get(reverse("project-list")).content.decode()

    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
