"""Template tags that put quality on other apps' pages: scores on the run page, and the
degradation links and score means on the agent page (one line in each template).

Both render a placeholder that htmx fills from cockpit.degradation_views once the page is up,
so the pages they sit on keep their pinned query counts.
"""

from django import template
from django.urls import reverse

register = template.Library()


@register.inclusion_tag("cockpit/degradation/_run_scores_slot.html")
def run_scores(run):
    return {"url": reverse("run-scores", args=[run.pk])}


@register.inclusion_tag("cockpit/degradation/_agent_quality.html")
def agent_quality(agent):
    return {"agent": agent, "url": reverse("agent-quality", args=[agent.pk])}


@register.inclusion_tag("cockpit/degradation/_fleet_links.html")
def degradation_links():
    return {}
