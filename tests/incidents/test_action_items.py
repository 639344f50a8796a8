"""Action items: due dates by severity, status, overdue highlighting, the list across incidents."""

from datetime import date, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from incidents.actions import do_add_action_item
from incidents.models import ActionItem

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("severity", "days"), [(1, 7), (2, 14), (3, 30), (4, 60)])
def test_the_default_due_date_follows_the_severity(open_incident, people, severity, days):
    incident = open_incident(severity=severity)
    item = do_add_action_item(incident, user=people["commander"], title="x", kind="prevent")
    assert item.due_date == timezone.localdate() + timedelta(days=days)


def test_an_item_past_its_due_date_and_unfinished_is_overdue(incident, people):
    item = do_add_action_item(incident, user=people["commander"], title="x", kind="detect",
                              due_date=date(2020, 1, 1))  # fmt: skip
    assert item.is_overdue()
    item.status = ActionItem.Status.DONE
    assert not item.is_overdue()


def test_adding_from_the_page_records_it_on_the_timeline(client_as, incident, people):
    client_as("commander").post(
        reverse("incident-action-item-add", args=[incident.pk]),
        {"title": "Add a statement timeout", "kind": "prevent", "owner": people["operator"].pk},
    )
    item = ActionItem.objects.get()
    assert item.owner == people["operator"]
    assert incident.events.filter(kind="action", text__startswith="Action item added").exists()


def test_finishing_an_item_stamps_it(client_as, incident, people):
    item = do_add_action_item(incident, user=people["commander"], title="x", kind="process")
    client_as("commander").post(
        reverse("incident-action-item-status", args=[item.pk]), {"status": "done"}
    )
    item.refresh_from_db()
    assert item.status == "done" and item.completed_at is not None


def test_the_list_across_incidents_highlights_overdue_items(client_as, open_incident, people):
    late = open_incident(title="Late one")
    fine = open_incident(title="Fine one")
    do_add_action_item(late, user=people["commander"], title="Overdue item", kind="detect",
                       due_date=date(2020, 1, 1))  # fmt: skip
    do_add_action_item(fine, user=people["commander"], title="Fresh item", kind="detect")
    response = client_as("viewer").get(reverse("incident-action-items"))
    body = response.content.decode()
    assert "Overdue item" in body and "Fresh item" in body
    assert body.count('class="overdue"') == 1
    assert response.context["counts"] == {"unfinished": 2, "overdue": 1}
    overdue = client_as("viewer").get(reverse("incident-action-items"), {"show": "overdue"})
    assert [i.title for i in overdue.context["items"]] == ["Overdue item"]
