"""Postmortems: the starting template, Markdown rendering (sanitised) and the export.

The body people write is Markdown. It is rendered by markdown-it-py with raw HTML off, then
cleaned by nh3 with an allowlist: no script or style, no event-handler attributes, and links
and images only to http, https and mailto addresses (so no javascript: or data: URLs).

The timeline (from starred events) and the action items are not part of the body: they are
generated from the incident each time the postmortem is shown or exported, so they stay
current while people keep working.
"""

from __future__ import annotations

import re
from collections import Counter

import nh3
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from incidents import blast
from incidents.actions import approval_model
from incidents.models import Incident, TraceLink
from traces.models import ReleaseMarker, Run, Span

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "strong", "sub", "sup", "table",
    "tbody", "td", "th", "thead", "tr", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "td": {"style"},
    "th": {"style"},
    "ol": {"start"},
}
URL_SCHEMES = {"http", "https", "mailto"}
# Table alignment from Markdown arrives as style="text-align: …": keep only that property.
STYLE_PROPERTIES = {"text-align"}

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_markdown.enable(["table", "strikethrough"])

# How many runs the agent specifics look at.
SPECIFICS_RUNS = 2000


def render_markdown(text: str) -> SafeString:
    """Markdown to HTML that is safe to put in a page, whatever the text contains."""
    return mark_safe(clean_html(_markdown.render(text or "")))  # noqa: S308 - nh3-cleaned


def clean_html(html: str) -> str:
    """HTML reduced to the allowlist: tags, attributes and URL schemes."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
        filter_style_properties=STYLE_PROPERTIES,
    )


# Inside a line (never at its start), only these characters can start Markdown syntax.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md_escape(text: str) -> str:
    """Text (agent-supplied, say) as Markdown that shows exactly that text, inside a line."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_code(text: str) -> str:
    """Text as an inline code span, fenced with enough backticks to hold any it contains."""
    text = " ".join(str(text).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _duration(delta) -> str:
    if delta is None:
        return "—"
    minutes = int(delta.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M %Z") if moment else "—"


# --- The starting template -----------------------------------------------------------------


def template_for(incident: Incident) -> str:
    """A new postmortem's body: the sections to write, with the agent specifics filled in
    from traces and the failure chain from the incident."""
    agents = ", ".join(md_code(a.name) for a in incident.agents.all()) or "none recorded"
    failure = incident.get_failure_class_display() or "not classified yet"
    chain = "\n".join(f"{i}. {md_escape(step)}" for i, step in enumerate(incident.failure_chain, 1))
    return "\n".join(
        [
            "## Summary",
            "",
            incident.summary or "_What happened, in two or three sentences._",
            "",
            "## Impact",
            "",
            "_Who and what was affected, for how long, and what it cost. The blast radius above "
            "has the numbers from traces._",
            "",
            "## Trigger",
            "",
            "_What set it off: a release, an input, a change in a tool or a model._",
            "",
            "## Root causes and contributing factors",
            "",
            "- _Root cause:_",
            "- _Contributing factor:_",
            "",
            "## Detection",
            "",
            f"_How we found out, and how long it took (time to detect: "
            f"{_duration(incident.time_to_detect)})._",
            "",
            "## Response",
            "",
            "_Who did what, and what we tried._",
            "",
            "## Recovery",
            "",
            "_How service came back, and what was cleaned up or reversed._",
            "",
            "## What went well",
            "",
            "- ",
            "",
            "## What went poorly",
            "",
            "- ",
            "",
            "## Where we got lucky",
            "",
            "- ",
            "",
            "## Agent specifics",
            "",
            f"- **Agents:** {agents}",
            f"- **Failure class:** {md_escape(failure)}",
            *agent_specifics(incident),
            "",
            "### Failure chain",
            "",
            chain or "1. _First thing that went wrong_\n2. _What it led to_",
            "",
        ]
    )


def agent_specifics(incident: Incident) -> list[str]:
    """Markdown bullet lines: models, versions, prompt and tool versions in effect, the
    approval path and the guardrails seen in the incident's runs."""
    runs, _ = blast.runs_in_scope(incident)
    evidence = incident.trace_links.filter(relation=TraceLink.Relation.EVIDENCE).values("run_id")
    run_ids = list(
        Run.objects.filter(pk__in=runs.values("pk"))
        .union(Run.objects.filter(pk__in=evidence))
        .values_list("pk", flat=True)[:SPECIFICS_RUNS]
    )
    spans = Span.objects.filter(run_id__in=run_ids)
    models = sorted(
        {m for m in spans.filter(kind=Span.Kind.LLM).values_list("model", flat=True) if m}
    )
    versions = Counter(
        f"{name} {version}"
        for name, version in Run.objects.filter(pk__in=run_ids).values_list(
            "agent__name", "version"
        )
        if version
    )
    tools = sorted(
        {t for t in spans.filter(kind=Span.Kind.TOOL).values_list("tool_name", flat=True) if t}
    )
    lines = [
        "- **Models in the linked runs:** "
        + (", ".join(md_code(m) for m in models) or "none seen"),
        "- **Versions in the linked runs:** "
        + (
            ", ".join(f"{md_code(v)} ({n} run{'s' * (n != 1)})" for v, n in versions.most_common())
            or "none seen"
        ),
    ]
    releases = []
    for agent in incident.agents.all():
        release = (
            ReleaseMarker.objects.filter(agent=agent, at__lte=incident.started_at)
            .order_by("-at")
            .first()
        )
        if release is not None:
            parts = [f"{md_code(agent.name)} {md_code(release.version)}"]
            if release.prompt_version:
                parts.append(f"prompt {md_code(release.prompt_version)}")
            if release.model:
                parts.append(f"model {md_code(release.model)}")
            releases.append(" ".join(parts) + f" since {_when(release.at)}")
    lines.append(
        "- **Releases in effect when impact started:** " + ("; ".join(releases) or "none recorded")
    )
    lines.append("- **Tools called:** " + (", ".join(md_code(t) for t in tools) or "none"))
    lines.append("- **Approval path:** " + approval_path(incident))
    guardrails = Counter(
        (name, status)
        for name, status in spans.filter(kind=Span.Kind.GUARDRAIL).values_list("name", "status")
    )
    if guardrails:
        fired = ", ".join(
            f"{md_code(name)} {'fired' if status == Span.Status.ERROR else 'passed'} × {n}"
            for (name, status), n in sorted(guardrails.items())
        )
        lines.append(f"- **Guardrails in the linked runs:** {fired}")
    else:
        lines.append("- **Guardrails in the linked runs:** none ran")
    lines.append("- **Guardrails that missed:** _which check should have caught this?_")
    return lines


def approval_path(incident: Incident) -> str:
    model = approval_model()
    if model is None:
        return "no approvals recorded"
    start, end = incident.window()
    requests = model.objects.filter(
        agent__in=incident.agents.all(), created_at__gte=start, created_at__lte=end
    )
    counts = Counter(requests.values_list("status", flat=True))
    if not counts:
        return "no approval requests in the incident window"
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _milestone(label: str, moment, measure: str, took) -> str:
    if moment is None:
        return f"| {label} | — |"
    return f"| {label} | {_when(moment)} (time to {measure} {_duration(took)}) |"


# --- The whole document ------------------------------------------------------------------------


def document(incident: Incident) -> str:
    """The full postmortem as Markdown: facts, the body, the starred timeline, action items."""
    postmortem = getattr(incident, "postmortem", None)
    body = postmortem.body if postmortem is not None else ""
    status = postmortem.get_status_display() if postmortem is not None else "not started"
    radius = incident.blast_radius or {}
    facts = [
        f"# Postmortem: {md_escape(incident.title)}",
        "",
        f"Incident #{incident.pk} · {incident.get_severity_display()} · "
        f"status {incident.get_status_display()} · postmortem {status}",
        "",
        "| Milestone | When |",
        "|---|---|",
        f"| Impact started | {_when(incident.started_at)} |",
        _milestone("Detected", incident.detected_at, "detect", incident.time_to_detect),
        _milestone(
            "Acknowledged", incident.acknowledged_at, "acknowledge", incident.time_to_acknowledge
        ),
        _milestone("Mitigated", incident.mitigated_at, "mitigate", incident.time_to_mitigate),
        _milestone("Resolved", incident.resolved_at, "resolve", incident.time_to_resolve),
        f"| Near miss | {'yes' if incident.near_miss else 'no'} |",
    ]
    if radius:
        facts.append(
            f"| Blast radius | {radius.get('runs', 0)} runs, {radius.get('conversations', 0)} "
            f"conversations, {radius.get('users', 0)} users, ${radius.get('llm_spend_usd', '0')} "
            f"LLM spend, {radius.get('side_effect_calls', 0)} tool calls with side effects, "
            f"{radius.get('irreversible_calls', 0)} irreversible |"
        )
    lines = [*facts, "", body.strip(), "", "## Timeline", ""]
    starred = list(
        incident.events.filter(starred=True).select_related("actor").order_by("at", "id")
    )
    if starred:
        for event in starred:
            by = f" ({md_escape(event.actor.get_username())})" if event.actor_id else ""
            lines.append(
                f"- **{_when(event.at)}** · {event.get_kind_display()}{by}: {md_escape(event.text)}"
            )
    else:
        lines.append("_Star events on the incident timeline to list them here._")
    lines += ["", "## Action items", ""]
    items = list(incident.action_items.select_related("owner"))
    if items:
        lines += ["| Item | Kind | Owner | Due | Status |", "|---|---|---|---|---|"]
        for item in items:
            owner = md_escape(item.owner.get_username()) if item.owner_id else "—"
            lines.append(
                f"| {md_escape(item.title)} | {item.kind} | {owner} | "
                f"{item.due_date:%Y-%m-%d} | {item.get_status_display()} |"
            )
    else:
        lines.append("_No action items yet._")
    return "\n".join(lines) + "\n"
