import pytest
from django.urls import reverse

from cockpit.roles import ADMIN, COMMANDER, OPERATOR, REVIEWER, VIEWER, user_roles

pytestmark = pytest.mark.django_db


def test_each_person_holds_their_role_and_can_view(people):
    assert user_roles(people["operator"]) == {OPERATOR, VIEWER}
    assert user_roles(people["reviewer"]) == {REVIEWER, VIEWER}
    assert user_roles(people["commander"]) == {COMMANDER, VIEWER}
    assert user_roles(people["viewer"]) == {VIEWER}


def test_admins_and_superusers_hold_every_role(people, django_user_model):
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "x")
    assert user_roles(people["admin"]) == user_roles(boss)
    assert {ADMIN, OPERATOR, REVIEWER, COMMANDER, VIEWER} <= user_roles(boss)


def test_an_outsider_holds_no_role_and_is_refused(people, client_as):
    assert user_roles(people["outsider"]) == frozenset()
    response = client_as("outsider").get(reverse("fleet"))
    assert response.status_code == 403


def test_anonymous_people_are_sent_to_login(client):
    response = client.get(reverse("fleet"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_health_check_reports_the_database(client):
    response = client.get(reverse("healthz"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_admin_role_opens_django_admin_without_the_staff_flag(client_as, people):
    assert not people["admin"].is_staff
    response = client_as("admin").get("/admin/auth/group/")
    assert response.status_code == 200


@pytest.mark.parametrize("name", ["operator", "reviewer", "commander", "viewer", "outsider"])
def test_other_roles_are_kept_out_of_django_admin(client_as, name):
    response = client_as(name).get("/admin/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    ("person", "landing"),
    [("reviewer", "/approvals/"), ("operator", "/"), ("commander", "/"), ("viewer", "/")],
)
def test_a_person_who_only_reviews_lands_on_the_approval_queue(client, people, person, landing):
    from tests.conftest import PASSWORD

    response = client.post(reverse("login"), {"username": person, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == landing
    # Already logged in: the login page sends them to the same place.
    assert client.get(reverse("login"))["Location"] == landing
