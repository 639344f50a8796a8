"""manage.py create_ingest_key: the key alone on stdout, for automation."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from traces.models import IngestKey, Project, hash_key


def create_ingest_key(*args) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command("create_ingest_key", *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_it_prints_only_the_new_key_on_stdout(project):
    stdout, stderr = create_ingest_key("--project", "acme", "--label", "ci")

    lines = stdout.splitlines()
    assert len(lines) == 1
    assert stdout == lines[0] + "\n"
    plaintext = lines[0]
    assert plaintext.startswith("ck_")
    key = IngestKey.objects.get(project=project)
    assert key.label == "ci"
    assert plaintext not in stderr
    assert key.prefix in stderr


def test_the_key_is_stored_hashed_never_in_plaintext(project):
    stdout, _ = create_ingest_key("--project", "acme")

    plaintext = stdout.strip()
    key = IngestKey.objects.get(project=project)
    assert key.key_hash == hash_key(plaintext)
    assert key.key_hash != plaintext
    assert not IngestKey.objects.filter(key_hash=plaintext).exists()


def test_the_printed_key_authenticates_against_the_api(client, project):
    stdout, _ = create_ingest_key("--project", "acme")

    response = client.get("/api/v1/runs", HTTP_AUTHORIZATION=f"Bearer {stdout.strip()}")

    assert response.status_code == 200


def test_each_call_issues_a_different_key(project):
    first, _ = create_ingest_key("--project", "acme")
    second, _ = create_ingest_key("--project", "acme")

    assert first != second
    assert IngestKey.objects.filter(project=project).count() == 2


def test_a_missing_project_is_an_error_and_issues_no_key(db):
    with pytest.raises(CommandError, match="No project named 'nope'.*--create-project"):
        create_ingest_key("--project", "nope")

    assert not IngestKey.objects.exists()


def test_create_project_makes_the_project_first(db):
    stdout, stderr = create_ingest_key("--project", "initech", "--create-project")

    project = Project.objects.get(name="initech")
    assert IngestKey.authenticate(stdout.strip()).project == project
    assert "Created project initech." in stderr


def test_create_project_reuses_an_existing_project(project):
    create_ingest_key("--project", "acme", "--create-project")

    assert Project.objects.count() == 1


def test_an_invalid_project_name_is_an_error(db):
    with pytest.raises(CommandError, match="not a valid project name"):
        create_ingest_key("--project", "no spaces", "--create-project")

    assert not Project.objects.exists()


def test_a_label_longer_than_the_column_is_an_error(project):
    with pytest.raises(CommandError, match="--label must be at most 100 characters"):
        create_ingest_key("--project", "acme", "--label", "x" * 101)


def test_the_project_option_is_required(db):
    with pytest.raises(CommandError, match="--project"):
        create_ingest_key()
