"""The run page lists the approval requests the run made, linked to their pages."""

import pytest
from django.urls import reverse

from tests.approvals.builders import ask, chain, policy
from tests.factories import make_run

pytestmark = pytest.mark.django_db


def test_the_run_page_links_the_requests_that_name_its_trace(client_as, project):
    policy(chain())
    run = make_run(project)
    asked = ask(project, trace_id=run.trace_id, action="refund")
    hostile = ask(project, trace_id=run.trace_id, action="<script>alert(1)</script>")
    ask(project, trace_id="f" * 32)  # another run's request

    html = client_as("viewer").get(reverse("run-detail", args=[run.trace_id])).content.decode()

    assert f'href="{reverse("approval-detail", args=[asked.pk])}"' in html
    assert f"#{hostile.pk} &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html
    assert html.count('class="badge status-pending"') == 2


def test_a_run_without_requests_shows_no_approvals_card(client_as, project):
    run = make_run(project)

    html = client_as("viewer").get(reverse("run-detail", args=[run.trace_id])).content.decode()

    assert 'id="run-approvals"' not in html
