"""Run profiles: what failure clusters, cohorts, drift and the PII report need to know about a
run beyond its Run row, computed off the ingest path.

profile_pass (Celery, every few seconds) reads the runs changed since its watermark, a batch at
a time, with their spans (no content: only names, kinds, tools, errors, output lengths and PII
counts, plus the root span's attributes and resource), and upserts one RunProfile per run. Like
the rollup fold and the search indexer it never moves its watermark past a transaction still
open, so a run committed late is profiled on a later pass; re-profiling is idempotent.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from django.db.models.functions import Length
from django.utils import timezone

from cockpit import clusters, cohorts
from cockpit.models import RunProfile
from cockpit.rollups import changed_rows_pass
from traces.models import Run, Span
from traces.scanning import merge_counts

PROFILE_WATERMARK = "profiles"
PROFILE_BATCH = 2_000
STEP_KINDS = ("llm", "tool", "retriever", "guardrail", "approval")
FAILED_OUTCOMES = (Run.Outcome.FAILURE, Run.Outcome.ABANDONED)

RUN_FIELDS = ("id", "project_id", "agent_id", "started_at", "version", "status", "outcome")
SPAN_FIELDS = (
    "run_id", "parent_span_id", "kind", "name", "tool_name", "status", "error_type",
    "error_message", "started_at", "pii",
)  # fmt: skip


def profile_pass(*, now: datetime | None = None) -> int:
    """Profile the runs changed since the watermark. Returns how many runs were profiled."""
    now = now or timezone.now()
    return changed_rows_pass(
        PROFILE_WATERMARK,
        Run.objects.all(),
        PROFILE_BATCH,
        lambda run_ids: profile_runs(run_ids, now=now),
        now,
    )


def profile_runs(run_ids: list[int], *, now: datetime | None = None) -> list[RunProfile]:
    """Compute and store the profiles of the given runs (idempotent)."""
    now = now or timezone.now()
    runs = {
        row[0]: dict(zip(RUN_FIELDS, row, strict=True))
        for row in Run.objects.filter(pk__in=run_ids).values_list(*RUN_FIELDS)
    }
    spans = defaultdict(list)
    for row in (
        Span.objects.filter(run_id__in=list(runs))
        .annotate(output_chars=Length("output"))
        .order_by("run_id", "started_at", "span_id")
        .values(*SPAN_FIELDS, "output_chars")
    ):
        spans[row["run_id"]].append(row)
    roots = {
        run_id: (attributes, resource)
        for run_id, attributes, resource in Span.objects.filter(
            run_id__in=list(runs), parent_span_id=""
        ).values_list("run_id", "attributes", "resource")
    }
    profiles = [
        build_profile(run, spans.get(pk, []), *roots.get(pk, ({}, {})), now=now)
        for pk, run in runs.items()
    ]
    RunProfile.objects.bulk_create(
        profiles,
        update_conflicts=True,
        unique_fields=["run"],
        update_fields=[f.name for f in RunProfile._meta.concrete_fields if f.name not in ("run",)],
    )
    return profiles


def build_profile(
    run: dict, spans: list[dict], attributes: dict, resource: dict, *, now: datetime
) -> RunProfile:
    """One run's profile from its spans (in start order) and its root's attributes."""
    steps = [s for s in spans if s["parent_span_id"] and s["kind"] in STEP_KINDS]
    path = clusters.path_of([(s["kind"], s["tool_name"]) for s in steps])
    tools: dict[str, int] = {}
    for step in steps:
        if step["kind"] == "tool":
            name = step["tool_name"] or "unnamed tool"
            tools[name] = tools.get(name, 0) + 1
    errors = [s for s in spans if s["status"] == Span.Status.ERROR]
    failing = next((s for s in errors if s["parent_span_id"]), errors[0] if errors else None)
    failed = run["status"] == Run.Status.ERROR or run["outcome"] in FAILED_OUTCOMES
    signature = ""
    if failing is not None:
        signature = clusters.signature(
            failing["error_type"], failing["name"], failing["error_message"]
        )
    root = next((s for s in spans if not s["parent_span_id"]), None)
    llm_steps = [s for s in steps if s["kind"] == "llm"]
    output_chars = (root or {}).get("output_chars") or 0
    if not output_chars and llm_steps:
        output_chars = llm_steps[-1]["output_chars"] or 0
    pii: dict[str, int] = {}
    for span in spans:
        if span["pii"]:
            merge_counts(pii, span["pii"])
    return RunProfile(
        run_id=run["id"],
        project_id=run["project_id"],
        agent_id=run["agent_id"],
        started_at=run["started_at"],
        version=run["version"],
        failed=failed,
        signature=signature[:400],
        signature_hash=clusters.short_hash(signature) if signature else "",
        error_type=(failing["error_type"] if failing else "")[:200],
        failing_span=(failing["name"] if failing else "")[:300],
        path=path,
        path_hash=clusters.short_hash(path),
        tools=tools,
        steps=sum(1 for s in steps if s["kind"] in ("llm", "tool")),
        output_chars=output_chars,
        traits=cohorts.traits_of(attributes, resource),
        pii=pii,
        computed_at=now,
    )
