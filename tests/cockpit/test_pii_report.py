"""PII report: which PII entered agent context, where and when, with values masked."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from cockpit import pii_report
from tests.cockpit.degradation_data import add_runs
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

CARD = "4242 4242 4242 4242"


def test_values_are_masked_down_to_a_hint():
    assert pii_report.mask("email", "jane.doe@example.com") == "j•••@e•••.com"
    assert pii_report.mask("card", CARD) == "•••• 4242"
    assert pii_report.mask("phone", "+1 415 555 0134") == "•••• 0134"
    assert pii_report.mask("iban", "GB82WEST12345698765432") == "GB•• •••• 5432"


def test_pii_is_found_by_the_same_rules_ingest_counts_it_with():
    text = f"Mail jane.doe@example.com, card {CARD}, IBAN GB82WEST12345698765432, order 12345678."

    found = pii_report.find_pii(text)

    assert ("email", "jane.doe@example.com") in found
    assert ("card", CARD) in found
    assert ("iban", "GB82WEST12345698765432") in found
    assert not any(kind == "phone" for kind, _ in found)


@pytest.fixture
def leaky(project):
    now = timezone.now()
    refunds = make_agent(project, "refund-agent")
    support = make_agent(project, "support-triage")
    add_runs(project, refunds, 3, start=now - timedelta(days=2), spacing=timedelta(hours=1),
             pii=(f"Refund to card {CARD} please", {"card": 1}))  # fmt: skip
    add_runs(project, support, 2, start=now - timedelta(hours=3),
             pii=("I am jane.doe@example.com", {"email": 1}), seed=2)  # fmt: skip
    add_runs(project, support, 4, start=now - timedelta(hours=2), seed=3)
    add_runs(project, support, 2, start=now - timedelta(days=9),
             pii=("old omar@example.org", {"email": 1}), seed=4)  # fmt: skip
    return refunds, support


def test_the_report_counts_types_per_day_and_per_agent_over_seven_days(leaky):
    report = pii_report.report()

    assert report.runs == 5
    assert report.totals == {"card": 3, "email": 2}
    assert sum(report.per_day["card"]) == 3 and sum(report.per_day["email"]) == 2
    assert len(report.per_day["card"]) == len(report.days) == 8
    assert report.agents == [
        {"name": "refund-agent", "runs": 3, "types": {"card": 3}},
        {"name": "support-triage", "runs": 2, "types": {"email": 2}},
    ]


def test_example_runs_carry_masked_values_only(leaky):
    report = pii_report.report()

    values = {value for example in report.examples for _, value in example["values"]}
    assert values == {"•••• 4242", "j•••@e•••.com"}
    assert len(report.examples) == 5


def test_the_report_narrows_to_one_agent(leaky):
    refunds, _ = leaky

    report = pii_report.report(agent=refunds)

    assert report.totals == {"card": 3}


def test_the_page_shows_masked_values_and_never_the_raw_ones(client_as, leaky):
    response = client_as("viewer").get(reverse("pii"))

    body = response.content.decode()
    assert response.status_code == 200
    assert "•••• 4242" in body and "j•••@e•••.com" in body
    assert CARD not in body and "jane.doe@example.com" not in body
