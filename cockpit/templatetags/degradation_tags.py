"""Template tags that put quality on other apps' pages: scores on the run page, and the
degradation links and score means on the agent page (one line in each template)."""

from datetime import timedelta

from django import template
from django.utils import timezone

from cockpit import scores

register = template.Library()

SCORE_WINDOW = timedelta(days=30)


@register.inclusion_tag("cockpit/degradation/_run_scores.html")
def run_scores(run):
    return {"scores": scores.run_scores(run)}


@register.inclusion_tag("cockpit/degradation/_agent_quality.html")
def agent_quality(agent):
    now = timezone.now()
    means = scores.version_means(agent.pk, since=now - SCORE_WINDOW, until=now)
    return {"agent": agent, "means": means}


@register.inclusion_tag("cockpit/degradation/_fleet_links.html")
def degradation_links():
    return {}
