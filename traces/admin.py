"""Django admin for the trace data: a staff tool for looking things up and fixing rows by hand."""

from django.contrib import admin

from traces.models import (
    Agent,
    IngestKey,
    ModelPrice,
    Project,
    ReleaseMarker,
    Run,
    Span,
    UnpricedModel,
)


class IngestKeyInline(admin.TabularInline):
    model = IngestKey
    extra = 0
    can_delete = False
    fields = ["prefix", "label", "created_at", "created_by", "last_used_at", "revoked_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        # Keys are issued from the Projects & keys page, the one place that shows the plaintext.
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "created_at"]
    search_fields = ["name"]
    inlines = [IngestKeyInline]


@admin.register(IngestKey)
class IngestKeyAdmin(admin.ModelAdmin):
    """Keys can be relabelled or revoked here; the plaintext exists nowhere to be shown."""

    list_display = ["prefix", "project", "label", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["project", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "label", "project__name"]
    fields = [
        "project",
        "label",
        "prefix",
        "key_hash",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["project", "prefix", "key_hash", "created_at", "created_by", "last_used_at"]
    actions = ["revoke_keys"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke_keys(self, request, queryset):
        for key in queryset.active():
            key.revoke()


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "project",
        "state",
        "team",
        "environment",
        "current_version",
        "last_seen_at",
    ]
    list_filter = ["state", "project", "environment"]
    search_fields = ["name", "team"]
    raw_id_fields = ["owner"]
    readonly_fields = ["first_seen_at", "last_seen_at"]


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    """Runs are written by ingest; the admin looks them up (by trace id) but does not edit them."""

    list_display = [
        "trace_id",
        "project",
        "agent",
        "name",
        "status",
        "outcome",
        "started_at",
        "duration_ms",
        "cost_usd",
    ]
    list_filter = ["status", "outcome", "project"]
    search_fields = ["=trace_id", "name", "user_id", "conversation_id"]
    list_select_related = ["project", "agent"]
    date_hierarchy = "started_at"
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Run._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Span)
class SpanAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "kind",
        "trace_id",
        "span_id",
        "status",
        "model",
        "tool_name",
        "started_at",
        "duration_ms",
    ]
    list_filter = ["kind", "status"]
    search_fields = ["=trace_id", "=span_id", "name", "model", "tool_name"]
    raw_id_fields = ["run", "agent"]
    list_select_related = ["run"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Span._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ReleaseMarker)
class ReleaseMarkerAdmin(admin.ModelAdmin):
    list_display = ["agent", "version", "prompt_version", "model", "source", "at"]
    list_filter = ["source"]
    search_fields = ["agent__name", "version"]
    raw_id_fields = ["agent"]


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = [
        "model",
        "provider",
        "project",
        "input_per_mtok",
        "output_per_mtok",
        "cache_read_per_mtok",
        "cache_write_per_mtok",
    ]
    list_filter = ["project"]
    search_fields = ["model", "provider"]


@admin.register(UnpricedModel)
class UnpricedModelAdmin(admin.ModelAdmin):
    list_display = ["model", "provider", "project", "span_count", "first_seen_at", "last_seen_at"]
    list_filter = ["project"]
    search_fields = ["model", "provider"]
