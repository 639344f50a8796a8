from django.urls import path

from traces import run_views, views

urlpatterns = [
    path("traces/", views.run_list, name="run-list"),
    # Before traces/<trace_id>/, which would otherwise take "compare" for a trace id.
    path("traces/compare/", run_views.run_compare, name="run-compare"),
    path(
        "traces/conversations/<path:conversation_id>/",
        run_views.conversation_detail,
        name="conversation-detail",
    ),
    path("traces/<str:trace_id>/", run_views.run_detail, name="run-detail"),
    path("traces/<str:trace_id>/live/", run_views.run_live, name="run-live"),
    path("traces/<str:trace_id>/rows/", run_views.run_rows, name="run-rows"),
    path("traces/<str:trace_id>/story/", run_views.run_story, name="run-story"),
    path("traces/<str:trace_id>/export.json", run_views.run_export, name="run-export"),
    path("traces/<str:trace_id>/spans/<str:span_id>/", run_views.span_detail, name="span-detail"),
    path("projects/", views.project_list, name="project-list"),
    path("projects/<slug:name>/keys/", views.key_create, name="key-create"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("prices/", views.price_list, name="price-list"),
]
