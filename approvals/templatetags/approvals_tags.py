"""The approvals fragment other pages include: the run page lists the approval requests its
run made (requests naming its trace id)."""

from django import template

from approvals.models import ApprovalRequest

register = template.Library()


@register.inclusion_tag("approvals/_run_approvals.html")
def run_approvals(run):
    requests = list(
        ApprovalRequest.objects.filter(project_id=run.project_id, trace_id=run.trace_id)
        .only("id", "action", "status", "amount", "currency", "decided_at", "created_at")
        .order_by("created_at", "id")[:20]
    )
    return {"run": run, "approval_requests": requests}
