"""Failure clusters: the same failure, coming back.

Failing runs are grouped by a normalised signature — error type, failing span name and error
message with numbers, ids, hex strings and e-mail addresses stripped — so "order A-12345 not
found (req 9f2c81aa)" and "order A-777 not found (req 03bb1e7c)" are one cluster. Runs that
failed without any error span (a bad outcome) and runs with a low score are grouped by path
shape instead: the sequence of step kinds and tools they took.

Signatures and paths are computed once per run, off the ingest path, into RunProfile
(cockpit.run_profiles); failure_clusters() reads those rows for a window.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone

from cockpit.models import RunProfile, Score
from traces.models import Agent, ReleaseMarker, Run

MESSAGE_CHARS = 200
CLUSTERS_SHOWN = 30
EXAMPLES = 3
# Scores below this (numeric) or false (boolean) make a run "low score".
LOW_SCORE = 0.5

_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# A hex string of 8+ characters with at least one digit: request ids, hashes, trace ids.
_HEX = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}(?![0-9A-Za-z])")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SPACE = re.compile(r"\s+")


def normalise_message(message: str) -> str:
    """An error message with what varies between occurrences taken out."""
    text = _UUID.sub("<id>", message or "")
    text = _EMAIL.sub("<email>", text)
    text = _HEX.sub("<id>", text)
    text = _NUMBER.sub("<n>", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:MESSAGE_CHARS]


def signature(error_type: str, span_name: str, message: str) -> str:
    """error type · failing span · normalised message."""
    # Span names stay as they are: they are the code's own names ("chat claude-3-5-haiku").
    return " · ".join([error_type or "Error", span_name or "?", normalise_message(message)])


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


def path_of(steps: list[tuple[str, str]]) -> str:
    """The path shape of (kind, tool name) steps in order: "llm › tool:search_kb › llm".
    A step repeated back to back counts once, marked "+", so shapes do not split on counts."""
    parts: list[str] = []
    for kind, tool in steps:
        part = f"tool:{tool or '?'}" if kind == "tool" else kind
        if parts and parts[-1].rstrip("+") == part:
            parts[-1] = part + "+"
        else:
            parts.append(part)
    text = " › ".join(parts)
    return text if len(text) <= 500 else text[:499] + "…"


# --- Reading clusters --------------------------------------------------------------------------


@dataclass
class Cluster:
    kind: str  # "error" (by signature) | "outcome" (failed without error) | "score" (low score)
    key: str  # signature or path hash
    label: str
    runs: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    agents: dict[str, int] = field(default_factory=dict)  # agent name: runs
    versions: set[str] = field(default_factory=set)
    examples: list[dict] = field(default_factory=list)  # {trace_id, agent, started_at}
    trend: list[tuple[datetime, int]] = field(default_factory=list)
    new_since_release: str = ""  # "refund-agent 3.2.0" when first seen after that release

    @property
    def kind_label(self) -> str:
        return {
            "error": "error signature",
            "outcome": "failed without error",
            "score": "low score",
        }[self.kind]

    @property
    def first_agent(self) -> str:
        return max(self.agents, key=self.agents.get) if self.agents else ""

    @property
    def example_trace(self) -> str:
        return self.examples[0]["trace_id"] if self.examples else ""


def failure_clusters(
    since: datetime, until: datetime, *, agent: Agent | None = None, limit: int = CLUSTERS_SHOWN
) -> list[Cluster]:
    """The window's failure clusters, largest first."""
    profiles = RunProfile.objects.filter(started_at__gte=since, started_at__lt=until)
    if agent is not None:
        profiles = profiles.filter(agent=agent)
    names = dict(Agent.objects.values_list("pk", "name"))
    clusters: dict[tuple[str, str], Cluster] = {}

    def add(kind, key, label, rows):
        for row in rows:
            cluster = clusters.get((kind, key(row)))
            if cluster is None:
                cluster = clusters[(kind, key(row))] = Cluster(kind, key(row), label(row))
            cluster.runs += row["n"]
            name = names.get(row["agent_id"], "?")
            cluster.agents[name] = cluster.agents.get(name, 0) + row["n"]
            cluster.versions.add(row["version"] or "unversioned")
            cluster.last_seen = max(filter(None, [cluster.last_seen, row["last"]]))

    grouped = ("agent_id", "version")
    aggregates = {"n": Count("run_id"), "last": Max("started_at")}
    errored = profiles.filter(failed=True).exclude(signature_hash="")
    add(
        "error",
        lambda r: r["signature_hash"],
        lambda r: r["signature"],
        errored.values("signature_hash", "signature", *grouped).order_by().annotate(**aggregates),
    )
    quiet = profiles.filter(failed=True, signature_hash="")
    add(
        "outcome",
        lambda r: r["path_hash"],
        lambda r: r["path"] or "(no steps)",
        quiet.values("path_hash", "path", *grouped).order_by().annotate(**aggregates),
    )
    low = _low_score_runs(since, until, agent)
    if low:
        scored = profiles.filter(failed=False, run_id__in=low)
        add(
            "score",
            lambda r: r["path_hash"],
            lambda r: r["path"] or "(no steps)",
            scored.values("path_hash", "path", *grouped).order_by().annotate(**aggregates),
        )
    ranked = sorted(clusters.values(), key=lambda c: (-c.runs, c.label))[:limit]
    _fill_details(ranked, profiles, since, until, names, low)
    return ranked


def _low_score_runs(since, until, agent) -> list[int]:
    scores = Score.objects.filter(
        run_started_at__gte=since, run_started_at__lt=until, run__isnull=False
    ).filter(
        Q(kind=Score.Kind.NUMERIC, value_number__lt=LOW_SCORE)
        | Q(kind=Score.Kind.BOOLEAN, value_bool=False)
    )
    if agent is not None:
        scores = scores.filter(agent=agent)
    return list(scores.values_list("run_id", flat=True).distinct()[:50_000])


def _cluster_rows(cluster: Cluster, profiles, low: list[int]):
    if cluster.kind == "error":
        return profiles.filter(failed=True, signature_hash=cluster.key)
    if cluster.kind == "outcome":
        return profiles.filter(failed=True, signature_hash="", path_hash=cluster.key)
    return profiles.filter(failed=False, path_hash=cluster.key, run_id__in=low)


def _fill_details(clusters, profiles, since, until, names, low) -> None:
    """Examples, trend, first sighting ever and "new since the last release", per cluster."""
    trunc = TruncHour if until - since <= timedelta(days=2) else TruncDay
    for cluster in clusters:
        rows = _cluster_rows(cluster, profiles, low)
        examples = rows.order_by("-started_at").values("run_id", "agent_id", "started_at")[
            :EXAMPLES
        ]
        traces = dict(
            Run.objects.filter(pk__in=[e["run_id"] for e in examples]).values_list("pk", "trace_id")
        )
        cluster.examples = [
            {
                "trace_id": traces.get(e["run_id"], ""),
                "agent": names.get(e["agent_id"], "?"),
                "started_at": e["started_at"],
            }
            for e in examples
        ]
        cluster.trend = [
            (row["bucket"], row["n"])
            for row in rows.annotate(bucket=trunc("started_at"))
            .values("bucket")
            .order_by("bucket")
            .annotate(n=Count("run_id"))
        ]
        # First sighting ever, not only in the window: a cluster is "new" only if it is.
        if cluster.kind == "error":
            ever = RunProfile.objects.filter(signature_hash=cluster.key)
        else:
            ever = RunProfile.objects.filter(
                path_hash=cluster.key, failed=cluster.kind == "outcome"
            )
            if cluster.kind == "outcome":
                ever = ever.filter(signature_hash="")
            else:
                ever = ever.filter(run_id__in=low)
        agent_ids = [pk for pk, name in names.items() if name in cluster.agents]
        cluster.first_seen = ever.filter(agent_id__in=agent_ids).aggregate(first=Min("started_at"))[
            "first"
        ]
        release = (
            ReleaseMarker.objects.filter(agent_id__in=agent_ids, at__lte=cluster.first_seen)
            .select_related("agent")
            .order_by("-at")
            .first()
            if cluster.first_seen
            else None
        )
        latest = (
            ReleaseMarker.objects.filter(agent_id__in=agent_ids).order_by("-at").first()
            if release
            else None
        )
        # An agent's first version is no release to be new since: it had no past without it.
        had_past = (
            release is not None
            and ReleaseMarker.objects.filter(agent_id=release.agent_id, at__lt=release.at).exists()
        )
        if had_past and latest is not None and release.pk == latest.pk:
            cluster.new_since_release = f"{release.agent.name} {release.version}"


WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_WINDOW = "7d"


def window_for(key: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or timezone.now()
    return now - WINDOWS.get(key, WINDOWS[DEFAULT_WINDOW]), now
