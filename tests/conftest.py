"""The shared cast: a project with a key, and named people, one per role, plus an outsider."""

import pytest
from django.contrib.auth.models import Group, User

from cockpit import roles
from traces.models import IngestKey, Project

PASSWORD = "cockpit-test-password"

PEOPLE = {
    "admin": [roles.ADMIN],
    "operator": [roles.OPERATOR],
    "reviewer": [roles.REVIEWER],
    "commander": [roles.COMMANDER],
    "viewer": [roles.VIEWER],
    "outsider": [],
}


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Real hashing costs ~0.3 s per user; the tests create several people each.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def project(db):
    return Project.objects.create(name="acme")


@pytest.fixture
def other_project(db):
    return Project.objects.create(name="globex")


@pytest.fixture
def ingest_key(project):
    """The plaintext key of `project`."""
    _, plaintext = IngestKey.issue(project, label="tests")
    return plaintext


@pytest.fixture
def other_key(other_project):
    _, plaintext = IngestKey.issue(other_project, label="tests")
    return plaintext


@pytest.fixture
def people(db) -> dict[str, User]:
    cast = {}
    for name, role_names in PEOPLE.items():
        user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
        user.groups.set([Group.objects.get_or_create(name=r)[0] for r in role_names])
        cast[name] = user
    return cast


@pytest.fixture
def client_as(client, people):
    """client_as("operator") → a test client logged in as that person."""

    def login(name: str):
        client.force_login(people[name])
        return client

    return login
