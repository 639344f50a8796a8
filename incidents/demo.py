"""Demo incidents for the embedded demo (serve_embedded --demo): a resolved incident with a
published postmortem and an open one, both tied to runs of the demo fleet's agents.

An incident needs history: runs from before it was detected. The demo fleet sends runs as they
happen now, so this module replays a few runs of two demo agents through the same simulator
(traces.demo.simulate_run) and the same OTLP/HTTP path, dated hours and minutes ago, then
builds the incidents on them with the same do_* functions people use. The open incident links
its agent's runs by an open-ended query, so its blast radius keeps growing with the live fleet.

Everything is idempotent: a second start finds the incidents and does nothing.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from cockpit.models import AlertEvent
from incidents import actions
from incidents.models import (
    ActionItem,
    AutoOpenRule,
    FailureClass,
    Incident,
    Severity,
    Status,
    TimelineEvent,
    ToolEffect,
    TraceLink,
)
from traces.models import Agent, Project, Run

logger = logging.getLogger(__name__)

RESOLVED_TITLE = "sql-analyst: run_sql timeouts broke the weekly reports"
OPEN_TITLE = "outbound-email: an API key went into customer email drafts"

# What the demo agents' tools do to the world (incidents.blast counts by it).
DEMO_TOOL_EFFECTS = {
    ToolEffect.Effect.READ_ONLY: (
        "lookup_customer", "search_kb", "lookup_order", "check_refund_policy", "web_search",
        "fetch_page", "summarise", "list_tables", "describe_table", "crm_lookup", "get_diff",
        "run_linter", "fetch_contact", "render_template",
    ),
    ToolEffect.Effect.SIDE_EFFECT: (
        "create_ticket", "run_sql", "draft_quote", "schedule_meeting", "post_review_comment",
        "escalate_to_human",
    ),
    ToolEffect.Effect.IRREVERSIBLE: ("issue_refund", "send_email"),
}  # fmt: skip

POSTMORTEM = """## Summary

For about 70 minutes the sql-analyst agent could not finish reports: `run_sql` timed out on
the weekly active users query, the agent retried, and half of the runs gave up. Reports that
finance reads on Monday morning came out empty.

## Impact

Every report run in the window failed or ran three times longer than usual; see the blast
radius above for runs, users and spend. No data was changed: `run_sql` only reads.

## Trigger

A new `active_users` view without an index on `country`, shipped with the warehouse change at
the start of the window, turned a 2-second query into a full scan.

## Root causes and contributing factors

- **Root cause:** the agent's SQL has no statement timeout and no `LIMIT` guard, so one slow
  query holds the tool for 30 s and then fails.
- **Contributing factor:** the agent retries a timed-out call once with the same arguments.
- **Contributing factor:** nobody owns the warehouse views the agent reads.

## Detection

The latency SLO of sql-analyst fired 20 minutes after impact started. We had no alert on the
rate of tool timeouts.

## Response

The commander paused nothing: the agent only reads. We linked the failing runs by query
(agent, window, `TimeoutError`) and asked the data team for the view change.

## Recovery

The view got its index back; the next runs took 2 s again. No clean-up was needed.

## What went well

- The trace viewer showed the timed-out `run_sql` span with its SQL within a minute.

## What went poorly

- The retry doubled the load on the warehouse while it was already slow.

## Where we got lucky

- It happened on a Sunday, before the Monday reports were sent out.

## Agent specifics

- **Models:** `gemini-2.0-flash` (unchanged).
- **Prompt and tool versions in effect:** sql-analyst `0.9.4`, tools `list_tables`,
  `describe_table`, `run_sql` unchanged for a month.
- **Approval path:** none — read-only tools need no approval.
- **Guardrails:** none fired; a query-cost guardrail would have caught the full scan.

### Failure chain

1. The warehouse view lost its index.
2. `run_sql` scanned the whole table and timed out after 30 s.
3. The agent retried the same query, which timed out again.
4. The run gave up and the report went out empty.
"""


def seed_demo_incidents(base_url: str, key: str) -> None:
    """Replay the demo agents' history and open the demo incidents, unless they exist. Called
    by serve_embedded --demo before the fleet starts; never raises (the demo runs anyway)."""
    try:
        if Incident.objects.filter(title__in=(RESOLVED_TITLE, OPEN_TITLE)).exists():
            return
        replayed = replay_history(base_url, key)
        project = Run.objects.filter(trace_id__in=replayed["sql-analyst"]).first().project
        ensure_demo_incidents(project, replayed)
    except Exception:  # noqa: BLE001 - demo incidents are a nicety; the fleet must start
        logger.exception("Could not create the demo incidents")


def replay_history(base_url: str, key: str) -> dict[str, list[str]]:
    """Send demo-fleet runs dated in the past; returns their trace ids by agent."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from traces.demo import PROFILES, Conversation, RunBuilder, emit_run, simulate_run

    rng = random.Random(6)  # noqa: S311 - demo data, not secrets
    profiles = {profile.name: profile for profile in PROFILES}
    # (agent, minutes ago, what the simulator must show)
    plan = [
        *[("sql-analyst", 300 - 12 * i, frozenset({"tool_timeout"})) for i in range(6)],
        *[("outbound-email", 40 - 7 * i, frozenset({"secret", "pii"})) for i in range(3)],
    ]
    sent: dict[str, list[str]] = {name: [] for name, _, _ in plan}
    providers = {}
    for name, minutes_ago, forced in plan:
        profile = profiles[name]
        provider = providers.get(name)
        if provider is None:
            provider = TracerProvider(
                resource=Resource.create(
                    {
                        "service.name": profile.name,
                        "service.version": profile.version,
                        "service.namespace": "acme-agents",
                        "deployment.environment.name": profile.environment,
                    }
                ),
                shutdown_on_exit=False,
            )
            exporter = OTLPSpanExporter(
                endpoint=base_url.rstrip("/") + "/v1/traces",
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
            provider.add_span_processor(BatchSpanProcessor(exporter))
            providers[name] = provider
        builder = RunBuilder(profile, rng, version=profile.version, forced=forced)
        conversation = Conversation(
            id=f"conv-demo-{rng.getrandbits(48):012x}",
            user_id=f"user-{rng.randint(1000, 9999)}",
            session_id=f"sess-{rng.getrandbits(48):012x}",
            turns_left=1,
        )
        root = simulate_run(builder, conversation)
        origin_ns = time.time_ns() - minutes_ago * 60 * 1_000_000_000
        sent[name].append(emit_run(provider.get_tracer("cockpit.demo_incidents"), root, origin_ns))
    for provider in providers.values():
        provider.force_flush(10_000)
        provider.shutdown()
    return sent


def mark_demo_tools(project: Project) -> None:
    for effect, tools in DEMO_TOOL_EFFECTS.items():
        for tool in tools:
            ToolEffect.objects.get_or_create(
                project=project, tool_name=tool, defaults={"effect": effect}
            )


def ensure_demo_incidents(project: Project, trace_ids: dict[str, list[str]], now=None) -> None:
    """The two demo incidents on the given runs ({"sql-analyst": [...], "outbound-email": [...]},
    oldest first), plus the demo's tool effects and an auto-open rule for budget breaches."""
    now = now or timezone.now()
    user = get_user_model().objects.filter(username="demo").first()
    with transaction.atomic():
        mark_demo_tools(project)
        AutoOpenRule.objects.get_or_create(
            project=project,
            alert_kind=AlertEvent.Kind.BUDGET_BREACH,
            agent=None,
            defaults={"severity": Severity.SEV3, "failure_class": FailureClass.COST},
        )
        if not Incident.objects.filter(project=project, title=RESOLVED_TITLE).exists():
            _resolved_incident(project, trace_ids["sql-analyst"], user, now)
        if not Incident.objects.filter(project=project, title=OPEN_TITLE).exists():
            _open_incident(project, trace_ids["outbound-email"], user, now)


def _backdate(incident, which, at) -> None:
    """Move demo timeline events (by kind name or id) to when they happened in the story."""
    kinds = [w for w in which if isinstance(w, str)]
    ids = [w for w in which if isinstance(w, int)]
    events = TimelineEvent.objects.filter(incident=incident)
    events.filter(Q(kind__in=kinds) | Q(pk__in=ids)).update(at=at)


def _runs(project, trace_ids):
    runs = {
        run.trace_id: run for run in Run.objects.filter(project=project, trace_id__in=trace_ids)
    }
    return [runs[trace_id] for trace_id in trace_ids if trace_id in runs]


def _resolved_incident(project, trace_ids, user, now) -> Incident:
    runs = _runs(project, trace_ids)
    agent = Agent.objects.get(project=project, name="sql-analyst")
    started = runs[0].started_at if runs else now - timedelta(hours=5)
    at = lambda minutes: started + timedelta(minutes=minutes)  # noqa: E731 - a local clock
    incident = actions.do_open_incident(
        project=project,
        title=RESOLVED_TITLE,
        severity=Severity.SEV2,
        user=user,
        summary="Weekly reports came out empty: run_sql timed out on the active users view.",
        agents=[agent],
        failure_class=FailureClass.TOOL,
        failure_chain=[
            "The warehouse view lost its index",
            "run_sql scanned the whole table and timed out",
            "The agent retried the same query",
            "The run gave up; the report went out empty",
        ],
        started_at=started,
        detected_at=at(20),
        links=[(runs[0], "", TraceLink.Relation.TRIGGER)] if runs else [],
        opened_from="the latency SLO alert",
    )
    actions.do_add_query(
        incident,
        user=user,
        relation=TraceLink.Relation.AFFECTED,
        agent=agent,
        since=started - timedelta(minutes=1),
        until=at(75),
        error_type="TimeoutError",
        outcome="",
        status="",
    )
    actions.do_transition(incident, Status.ACTIVE, user=user, note="Taking it.", at=at(24))
    note = actions.do_add_note(
        incident, user=user, text="The timed-out run_sql spans all read the active_users view."
    )
    # The demo writes its history now; its notes and links belong where they happened.
    _backdate(incident, ["trace"], at(22))
    _backdate(incident, [note.pk], at(40))
    actions.do_transition(
        incident, Status.MITIGATED, user=user, note="Data team restored the index.", at=at(55)
    )
    actions.do_transition(
        incident, Status.RESOLVED, user=user, note="Reports run in 2 s again.", at=at(70)
    )
    actions.do_transition(incident, Status.POSTMORTEM, user=user, note="Writing it up.", at=at(90))
    for event in incident.events.filter(kind__in=["status", "note", "trace"]):
        actions.do_star(event, user=user, starred=True)
    actions.do_add_action_item(
        incident,
        user=user,
        title="Give run_sql a statement timeout and a LIMIT guard",
        owner=user,
        kind=ActionItem.Kind.PREVENT,
        due_date=None,
    )
    item = actions.do_add_action_item(
        incident,
        user=user,
        title="Alert on each agent's tool timeout rate",
        owner=user,
        kind=ActionItem.Kind.DETECT,
        due_date=None,
    )
    actions.do_set_action_item_status(item, ActionItem.Status.DONE, user=user)
    postmortem = actions.do_save_postmortem(incident, user=user, body=POSTMORTEM)
    actions.do_set_postmortem_status(postmortem, "in_review", user=user)
    actions.do_set_postmortem_status(postmortem, "published", user=user)
    actions.do_transition(
        Incident.objects.get(pk=incident.pk),
        Status.CLOSED,
        user=user,
        note="Postmortem published; action items tracked.",
    )
    return incident


def _open_incident(project, trace_ids, user, now) -> Incident:
    runs = _runs(project, trace_ids)
    agent = Agent.objects.get(project=project, name="outbound-email")
    started = runs[0].started_at if runs else now - timedelta(minutes=40)
    incident = actions.do_open_incident(
        project=project,
        title=OPEN_TITLE,
        severity=Severity.SEV1,
        user=user,
        summary=(
            "Requests to outbound-email carried an OPENAI_API_KEY, and the agent copied it into "
            "follow-up drafts; the emails it sends once approved carry it too. The secret "
            "scanner redacted it in traces."
        ),
        agents=[agent],
        failure_class=FailureClass.DATA_EXPOSURE,
        failure_chain=[
            "A campaign request pasted a live API key",
            "The agent treated it as context for the email",
            "Approved send_email calls go out with the key in the body",
        ],
        started_at=started,
        detected_at=min(started + timedelta(minutes=15), now),
        links=[(run, "", TraceLink.Relation.TRIGGER) for run in runs[:1]],
        opened_from=f"run {runs[0].trace_id}" if runs else "",
    )
    actions.do_add_query(
        incident,
        user=user,
        relation=TraceLink.Relation.AFFECTED,
        agent=agent,
        since=started - timedelta(minutes=1),
        until=None,
        error_type="",
        outcome="",
        status="",
    )
    actions.do_transition(
        incident,
        Status.ACTIVE,
        user=user,
        note="Rotating the key; checking who received it.",
        at=min(started + timedelta(minutes=20), timezone.now()),
    )
    note = actions.do_add_note(
        incident,
        user=user,
        text="Key revoked at the provider. Next: list every recipient from the blast radius.",
    )
    _backdate(incident, ["trace"], min(started + timedelta(minutes=17), timezone.now()))
    _backdate(incident, [note.pk], min(started + timedelta(minutes=30), timezone.now()))
    actions.do_add_action_item(
        incident,
        user=user,
        title="Block secrets in send_email arguments before sending",
        owner=user,
        kind=ActionItem.Kind.PREVENT,
        due_date=None,
    )
    return incident
