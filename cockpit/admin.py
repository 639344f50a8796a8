"""Django admin for what admins configure (SLOs, budgets, webhooks) and what they audit.

Alert events, webhook deliveries and interventions are records of what happened: read-only.
Agents change state only through the intervention flow, which audits who, when and why.
"""

from django.contrib import admin

from cockpit.models import AlertEvent, Budget, Intervention, Slo, Webhook, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Slo)
class SloAdmin(admin.ModelAdmin):
    list_display = ("agent", "kind", "threshold", "target", "window_days")
    list_filter = ("kind",)
    search_fields = ("agent__name",)
    raw_id_fields = ("agent",)


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ("project", "scope", "agent", "team", "daily_usd", "monthly_usd", "on_breach")
    list_filter = ("scope", "on_breach")
    raw_id_fields = ("agent",)


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("name", "url", "project", "active")
    list_filter = ("active",)


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnlyAdmin):
    list_display = ("summary", "kind", "severity", "agent", "opened_at", "resolved_at")
    list_filter = ("kind", "severity")
    date_hierarchy = "opened_at"


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("webhook", "status", "attempts", "last_status_code", "created_at")
    list_filter = ("status",)


@admin.register(Intervention)
class InterventionAdmin(ReadOnlyAdmin):
    list_display = ("agent", "action", "user", "reason", "at")
    list_filter = ("action",)
    search_fields = ("agent__name", "reason")
    date_hierarchy = "at"
