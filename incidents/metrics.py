"""Incident metrics: times to detect, acknowledge, mitigate and resolve by severity and failure
class, near misses, and the failure classes that keep happening.

Incidents are few (tens a month, not millions), so the figures are computed in Python from one
query over the filtered incidents; medians say more than means for durations with long tails.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import median

from incidents.models import FailureClass, Incident, Severity

MEASURES = (
    ("detect", "time_to_detect", "Time to detect"),
    ("acknowledge", "time_to_acknowledge", "Time to acknowledge"),
    ("mitigate", "time_to_mitigate", "Time to mitigate"),
    ("resolve", "time_to_resolve", "Time to resolve"),
)
FIELDS = (
    "id", "severity", "failure_class", "near_miss", "status", "started_at", "detected_at",
    "acknowledged_at", "mitigated_at", "resolved_at", "postmortem_at", "closed_at",
    "status_changed_at", "project_id", "title",
)  # fmt: skip


def _minutes(delta: timedelta | None) -> float | None:
    return None if delta is None else delta.total_seconds() / 60


def medians(incidents: list[Incident]) -> dict[str, float | None]:
    """Median minutes per measure, over the incidents that reached that point."""
    result = {}
    for key, attribute, _ in MEASURES:
        values = [_minutes(getattr(i, attribute)) for i in incidents]
        values = [v for v in values if v is not None]
        result[key] = median(values) if values else None
    return result


@dataclass
class Row:
    label: str
    count: int
    medians: dict


@dataclass
class ClassRank:
    failure_class: str
    label: str
    count: int
    near_misses: int
    worst: str
    worst_level: int
    last_seen: object
    by_severity: dict


def summary(rows: list[Incident]) -> dict:
    """Counts, median durations by severity and by class, and failure classes ranked, of the
    incidents given (read with FIELDS)."""
    by_severity = defaultdict(list)
    by_class = defaultdict(list)
    for incident in rows:
        by_severity[incident.severity].append(incident)
        by_class[incident.failure_class].append(incident)
    severity_rows = [
        Row(Severity(s).label, len(by_severity[s]), medians(by_severity[s]))
        for s in Severity.values
        if by_severity[s]
    ]
    class_rows = [
        Row(FailureClass(c).label if c else "unclassified", len(items), medians(items))
        for c, items in sorted(by_class.items(), key=lambda pair: -len(pair[1]))
    ]
    ranked = []
    for value, items in by_class.items():
        if not value:
            continue
        severities = Counter(i.severity for i in items)
        ranked.append(
            ClassRank(
                failure_class=value,
                label=FailureClass(value).label,
                count=len(items),
                near_misses=sum(i.near_miss for i in items),
                worst=Severity(min(severities)).label,
                worst_level=min(severities),
                last_seen=max(i.detected_at for i in items),
                by_severity={Severity(s).label: n for s, n in sorted(severities.items())},
            )
        )
    ranked.sort(key=lambda r: (-r.count, r.label))
    return {
        "total": len(rows),
        "near_misses": sum(i.near_miss for i in rows),
        "unresolved": sum(
            i.resolved_at is None and i.status in ("triage", "active", "mitigated") for i in rows
        ),
        "overall": medians(rows),
        "by_severity": severity_rows,
        "by_class": class_rows,
        "ranked": ranked,
    }


def week_of(day: date) -> date:
    return day - timedelta(days=day.weekday())


def weekly_durations(rows: list[Incident]) -> dict:
    """{"weeks": [monday, …], "series": {(measure, severity label): [median minutes or None]},
    "by_class": {class label: {measure: median minutes}}} for the charts."""
    weeks = sorted({week_of(i.detected_at.date()) for i in rows})
    grouped = defaultdict(list)
    for incident in rows:
        grouped[(week_of(incident.detected_at.date()), incident.severity)].append(incident)
    series = {}
    for key, attribute, _ in MEASURES:
        for severity in Severity.values:
            values = []
            for week in weeks:
                found = [_minutes(getattr(i, attribute)) for i in grouped.get((week, severity), [])]
                found = [v for v in found if v is not None]
                values.append(median(found) if found else None)
            if any(v is not None for v in values):
                series[(key, Severity(severity).label)] = values
    by_class = defaultdict(list)
    for incident in rows:
        by_class[
            FailureClass(incident.failure_class).label if incident.failure_class else "unclassified"
        ].append(incident)
    return {
        "weeks": weeks,
        "series": series,
        "by_class": {label: medians(items) for label, items in by_class.items()},
    }
