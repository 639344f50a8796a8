"""The shared cast: a project with a key, and named people, one per role, plus an outsider."""

import os

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from cockpit import roles
from traces.models import IngestKey, Project

PASSWORD = "cockpit-test-password"

# xdist workers share one Redis: give each its own channel-layer prefix, so a broadcast in
# one worker's test never reaches a socket opened by another's. Layers are built lazily, on
# first use, so changing the setting here (before any test runs) is enough.
_worker = os.environ.get("PYTEST_XDIST_WORKER")
_layer_config = settings.CHANNEL_LAYERS["default"].get("CONFIG", {})
if _worker and "prefix" in _layer_config:
    _layer_config["prefix"] = f"{_layer_config['prefix']}-{_worker}"

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
