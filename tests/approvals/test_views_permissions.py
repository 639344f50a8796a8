"""Who may reach each reviewer page: anonymous people log in, outsiders are refused, every
cockpit role reads, reviewers decide and admins edit policies."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

READERS = ["viewer", "operator", "reviewer", "commander", "admin"]


@pytest.fixture
def urls(ask_refund, refunds_policy):
    request = ask_refund()
    return {
        "queue": reverse("approval-queue"),
        "request": reverse("approval-detail", args=[request.pk]),
        "health": reverse("approval-health"),
        "csv": reverse("approval-decisions-csv"),
        "policies": reverse("approval-policies"),
        "policy-create": reverse("approval-policy-create"),
        "policy-edit": reverse("approval-policy-edit", args=[refunds_policy.pk]),
        "decide": reverse("approval-decide", args=[request.pk]),
    }


READ_PAGES = ["queue", "request", "health", "csv", "policies"]
ADMIN_PAGES = ["policy-create", "policy-edit"]


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES)
def test_anonymous_people_are_sent_to_log_in(client, urls, page):
    response = client.get(urls[page])

    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={urls[page]}"


@pytest.mark.parametrize("page", READ_PAGES + ADMIN_PAGES)
def test_an_outsider_is_refused_every_page(client_as, urls, page):
    assert client_as("outsider").get(urls[page]).status_code == 403


@pytest.mark.parametrize("person", READERS)
@pytest.mark.parametrize("page", READ_PAGES)
def test_every_cockpit_role_reads_the_reviewer_pages(client_as, urls, page, person):
    assert client_as(person).get(urls[page]).status_code == 200


@pytest.mark.parametrize("person", [p for p in READERS if p != "admin"])
@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_only_admins_reach_the_policy_forms(client_as, urls, page, person):
    assert client_as(person).get(urls[page]).status_code == 403


@pytest.mark.parametrize("page", ADMIN_PAGES)
def test_an_admin_reaches_the_policy_forms(client_as, urls, page):
    assert client_as("admin").get(urls[page]).status_code == 200


@pytest.mark.parametrize("person", ["viewer", "operator", "commander", "outsider"])
def test_deciding_needs_the_reviewer_role(client_as, urls, person):
    assert client_as(person).post(urls["decide"], {"decision": "approve"}).status_code == 403


@pytest.mark.parametrize("page", READ_PAGES)
def test_the_read_pages_refuse_a_post(client_as, urls, page):
    assert client_as("admin").post(urls[page]).status_code == 405
