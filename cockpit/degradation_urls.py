"""Pages of degradation detection: release comparison, cohorts, failure clusters, drift, PII."""

from django.urls import path

from cockpit import degradation_views as views

urlpatterns = [
    path("agents/<path:name>/releases/", views.release_comparison, name="release-comparison"),
    path("analyses/<int:pk>/", views.analysis_status, name="analysis"),
    path("quality/runs/<int:pk>/scores/", views.run_scores, name="run-scores"),
    path("quality/agents/<int:pk>/", views.agent_quality, name="agent-quality"),
    path("cohorts/", views.cohorts_page, name="cohorts"),
    path("clusters/", views.clusters_page, name="clusters"),
    path("drift/", views.drift_page, name="drift"),
    path("pii/", views.pii_page, name="pii"),
]
