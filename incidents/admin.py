"""Django admin for what admins configure about incidents: which alerts open one by themselves
(auto-open rules) and what each tool does to the world (the blast radius counts by it).
Incidents themselves are worked on their own pages, where every change is on the timeline."""

from django.contrib import admin

from incidents.models import AutoOpenRule, ToolEffect


@admin.register(AutoOpenRule)
class AutoOpenRuleAdmin(admin.ModelAdmin):
    list_display = ("project", "alert_kind", "agent", "severity", "failure_class", "enabled")
    list_filter = ("alert_kind", "severity", "enabled")
    raw_id_fields = ("agent",)


@admin.register(ToolEffect)
class ToolEffectAdmin(admin.ModelAdmin):
    list_display = ("tool_name", "project", "effect")
    list_filter = ("effect", "project")
    search_fields = ("tool_name",)
