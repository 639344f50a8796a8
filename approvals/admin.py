"""Django admin for policies and escalation chains (admins configure them here or on
/approvals/policies/) and, read-only, for requests and their event log."""

from django.contrib import admin

from approvals.models import (
    ApprovalEvent,
    ApprovalRequest,
    ApprovalVote,
    EscalationChain,
    EscalationLevel,
    Policy,
)
from cockpit.admin import ReadOnlyAdmin


class EscalationLevelInline(admin.StackedInline):
    model = EscalationLevel
    extra = 0
    max_num = 4
    filter_horizontal = ("reviewers",)


@admin.register(EscalationChain)
class EscalationChainAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "earlier_levels_may_decide")
    inlines = [EscalationLevelInline]


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "priority", "enabled", "agent_name", "action", "risk_tier", "chain",
                    "approvals_required", "owner_may_approve", "on_expiry")  # fmt: skip
    list_filter = ("enabled", "risk_tier", "chain")
    search_fields = ("name", "agent_name", "action")


class ApprovalVoteInline(admin.TabularInline):
    model = ApprovalVote
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(ReadOnlyAdmin):
    list_display = ("id", "agent", "action", "status", "level", "risk_tier", "level_due_at",
                    "decided_by")  # fmt: skip
    list_filter = ("status", "risk_tier", "level")
    search_fields = ("action", "agent__name", "idempotency_key", "trace_id")
    inlines = [ApprovalVoteInline]


@admin.register(ApprovalEvent)
class ApprovalEventAdmin(ReadOnlyAdmin):
    list_display = ("request", "kind", "level", "actor", "at")
    list_filter = ("kind",)
