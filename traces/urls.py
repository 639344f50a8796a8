from django.urls import path

from traces import views

urlpatterns = [
    path("traces/", views.run_list, name="run-list"),
    path("traces/<str:trace_id>/", views.run_detail, name="run-detail"),
    path("projects/", views.project_list, name="project-list"),
    path("projects/<slug:name>/keys/", views.key_create, name="key-create"),
    path("keys/<int:pk>/revoke/", views.key_revoke, name="key-revoke"),
    path("prices/", views.price_list, name="price-list"),
]
