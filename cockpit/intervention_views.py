"""The operator's levers on the agent page: one POST endpoint for every intervention.

POST /agents/<name>/intervene with `action` (pause | resume | stop | override), `reason`
(required), for override the fields `max_cost_per_run_usd`, `downgrade_model`, `max_steps`
(empty clears one), and `project` when two projects share the agent name. It answers with a
redirect back to the agent page, carrying a message that says what happened or what was wrong.
"""

from __future__ import annotations

from urllib.parse import quote

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponseRedirect
from django.views.decorators.http import require_POST

from cockpit.interventions import (
    InterventionError,
    do_pause_agent,
    do_resume_agent,
    do_set_overrides,
    do_stop_agent,
)
from cockpit.models import AgentControl
from cockpit.roles import OPERATOR, role_required
from traces.models import Agent

STATE_ACTIONS = {"pause": do_pause_agent, "resume": do_resume_agent, "stop": do_stop_agent}
DONE = {"pause": "paused", "resume": "resumed", "stop": "stopped", "override": "overridden"}


def agent_page(agent: Agent) -> str:
    # The agent page's stable address (DESIGN.md), built here so this view stands on its own.
    return f"/agents/{quote(agent.name, safe='')}/"


def _get_agent(name: str, project: str) -> Agent:
    agents = Agent.objects.filter(name=name)
    if project:
        agents = agents.filter(project__name=project)
    found = list(agents.select_related("project")[:2])
    if len(found) != 1:
        # None, or two projects with this name and no project named: nothing to act on.
        raise Http404(f"No single agent named {name!r}.")
    return found[0]


@require_POST
@role_required(OPERATOR)
def intervene(request, name: str):
    agent = _get_agent(name, request.POST.get("project", ""))
    action = request.POST.get("action", "")
    reason = request.POST.get("reason", "")
    try:
        if action in STATE_ACTIONS:
            STATE_ACTIONS[action](agent, request.user, reason)
        elif action == "override":
            overrides = {
                field: request.POST[field]
                for field in AgentControl.OVERRIDE_FIELDS
                if field in request.POST
            }
            do_set_overrides(agent, request.user, reason, **overrides)
        else:
            messages.error(request, "Choose pause, resume, stop or override.")
            return HttpResponseRedirect(agent_page(agent))
    except ValidationError as error:
        for field, problems in error.message_dict.items():
            messages.error(request, f"{field.replace('_', ' ').capitalize()}: {problems[0]}")
        return HttpResponseRedirect(agent_page(agent))
    except InterventionError as error:
        messages.error(request, str(error))
        return HttpResponseRedirect(agent_page(agent))
    messages.success(request, f"{agent.name} {DONE[action]}.")
    return HttpResponseRedirect(agent_page(agent))
