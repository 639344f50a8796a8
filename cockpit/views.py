from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cockpit.roles import VIEWER, role_required


@require_GET
def healthz(request):
    """Liveness and readiness for load balancers and docker compose: checks the database."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any database failure means not ready
        return JsonResponse({"status": "unavailable", "database": str(exc)[:200]}, status=503)
    return JsonResponse({"status": "ok"})


@require_GET
@role_required(VIEWER)
def fleet(request):
    return render(request, "cockpit/fleet.html", {})
