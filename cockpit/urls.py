from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from cockpit import api as cockpit_api
from cockpit import intervention_views, scores_api, views
from traces import api as traces_api
from traces import receiver

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("healthz", views.healthz, name="healthz"),
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Agent-facing API (v1 contract: change only additively).
    path("v1/traces", receiver.otlp_traces, name="otlp-traces"),
    path("api/v1/runs", traces_api.RunList.as_view(), name="api-runs"),
    path("api/v1/runs/<str:trace_id>", traces_api.RunDetail.as_view(), name="api-run"),
    path(
        "api/v1/agents/<path:name>/control",
        cockpit_api.AgentControl.as_view(),
        name="api-agent-control",
    ),
    path("api/v1/releases", cockpit_api.Releases.as_view(), name="api-releases"),
    path("api/v1/scores", scores_api.Scores.as_view(), name="api-scores"),
    path("metrics", cockpit_api.prometheus_metrics, name="metrics"),
    path("", include("cockpit.degradation_urls")),
    path("agents/<path:name>/intervene", intervention_views.intervene, name="agent-intervene"),
    path("agents/<path:name>/charts.json", views.agent_charts, name="agent-charts"),
    path("agents/<path:name>/", views.agent_page, name="agent"),
    path("costs/", views.cost_explorer, name="costs"),
    path("costs.csv", views.cost_csv, name="costs-csv"),
    path("api/schema/", traces_api.ApiSchema.as_view(), name="api-schema"),
    path("api/docs/", traces_api.api_docs, name="api-docs"),
    path("", include("approvals.urls")),
    path("", include("incidents.urls")),
    path("", include("traces.urls")),
]
