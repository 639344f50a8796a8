"""URLs of the approvals app: the agent-facing API and the reviewer's pages."""

from django.urls import path

from approvals import api, views

urlpatterns = [
    # Agent-facing API (v1 contract: change only additively).
    path("api/v1/approvals", api.ApprovalCreate.as_view(), name="api-approvals"),
    path("api/v1/approvals/<int:pk>", api.approval_status, name="api-approval"),
    path(
        "api/v1/approvals/<int:pk>/cancel", api.ApprovalCancel.as_view(), name="api-approval-cancel"
    ),
    # Reviewer pages.
    path("approvals/", views.queue, name="approval-queue"),
    path("approvals/health/", views.health, name="approval-health"),
    path("approvals/decisions.csv", views.decisions_csv, name="approval-decisions-csv"),
    path("approvals/policies/", views.policy_list, name="approval-policies"),
    path("approvals/<int:pk>/", views.detail, name="approval-detail"),
    path("approvals/<int:pk>/decide", views.decide, name="approval-decide"),
    path("approvals/policies/new", views.policy_edit, name="approval-policy-create"),
    path("approvals/policies/<int:pk>/", views.policy_edit, name="approval-policy-edit"),
]
