"""URLs of the incidents app: its pages and its part of the agent-facing API."""

from django.urls import path

from incidents import views

urlpatterns = [
    path("incidents/", views.incident_list, name="incident-list"),
    path("incidents/new/", views.incident_new, name="incident-new"),
    path("incidents/action-items/", views.action_item_list, name="incident-action-items"),
    path("incidents/link-run/", views.incident_link_run, name="incident-link-run"),
    path(
        "incidents/action-items/<int:item_pk>/status/",
        views.action_item_status,
        name="incident-action-item-status",
    ),
    path("incidents/<int:pk>/", views.incident_detail, name="incident-detail"),
    path("incidents/<int:pk>/status/", views.incident_status, name="incident-status"),
    path("incidents/<int:pk>/severity/", views.incident_severity, name="incident-severity"),
    path("incidents/<int:pk>/edit/", views.incident_edit, name="incident-edit"),
    path("incidents/<int:pk>/notes/", views.incident_note, name="incident-note"),
    path(
        "incidents/<int:pk>/events/<int:event_pk>/star/",
        views.incident_star,
        name="incident-star",
    ),
    path("incidents/<int:pk>/roles/", views.incident_role, name="incident-role"),
    path(
        "incidents/<int:pk>/roles/<int:role_pk>/end/",
        views.incident_role_end,
        name="incident-role-end",
    ),
    path("incidents/<int:pk>/links/", views.incident_link, name="incident-link"),
    path(
        "incidents/<int:pk>/links/<int:link_pk>/remove/",
        views.incident_unlink,
        name="incident-unlink",
    ),
    path("incidents/<int:pk>/queries/", views.incident_query, name="incident-query"),
    path(
        "incidents/<int:pk>/queries/<int:query_pk>/remove/",
        views.incident_query_remove,
        name="incident-query-remove",
    ),
    path("incidents/<int:pk>/pause/", views.incident_pause, name="incident-pause"),
    path("incidents/<int:pk>/freeze/", views.incident_freeze, name="incident-freeze"),
    path(
        "incidents/<int:pk>/action-items/", views.action_item_add, name="incident-action-item-add"
    ),
    path("incidents/<int:pk>/postmortem/", views.postmortem_page, name="incident-postmortem"),
    path(
        "incidents/<int:pk>/postmortem/save/",
        views.postmortem_save,
        name="incident-postmortem-save",
    ),
    path(
        "incidents/<int:pk>/postmortem/preview/",
        views.postmortem_preview,
        name="incident-postmortem-preview",
    ),
    path(
        "incidents/<int:pk>/postmortem/status/",
        views.postmortem_status,
        name="incident-postmortem-status",
    ),
    path(
        "incidents/<int:pk>/postmortem.md",
        views.postmortem_export,
        name="incident-postmortem-export",
    ),
]
