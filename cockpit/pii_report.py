"""PII report: which kinds of personal data entered agent context, where, and how often.

Ingest counts PII per span (traces.scanning.detect_pii: e-mail addresses, phone numbers, card
numbers, IBANs) and leaves content as it came; the run profiles add those counts up per run
(cockpit.run_profiles). The report reads the profiles of a window — counts per type and day,
per agent — and shows example runs with the values found in them masked: a person sees that a
card number reached the refund agent, never the number itself.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models.functions import TruncDay
from django.utils import timezone

from cockpit.models import RunProfile
from traces import scanning
from traces.models import Agent, Run, Span

WINDOW = timedelta(days=7)
EXAMPLE_RUNS = 10
VALUES_PER_EXAMPLE = 6
TYPE_LABELS = {"email": "e-mail address", "phone": "phone number", "card": "card number",
               "iban": "IBAN"}  # fmt: skip
PLURAL_LABELS = {"email": "e-mail addresses", "phone": "phone numbers",
                 "card": "card numbers", "iban": "IBANs"}  # fmt: skip
MASK = "•"


@dataclass
class PiiReport:
    since: datetime
    until: datetime
    days: list[datetime]
    totals: dict[str, int] = field(default_factory=dict)  # type: count
    per_day: dict[str, list[int]] = field(default_factory=dict)  # type: [count per day]
    agents: list[dict] = field(default_factory=list)  # {name, runs, types: {type: count}}
    runs: int = 0
    examples: list[dict] = field(default_factory=list)

    @property
    def types(self) -> list[str]:
        return sorted(self.totals, key=lambda t: -self.totals[t])


def report(*, now: datetime | None = None, agent: Agent | None = None) -> PiiReport:
    now = now or timezone.now()
    since = (now - WINDOW).replace(hour=0, minute=0, second=0, microsecond=0)
    days = [since + timedelta(days=i) for i in range((now - since).days + 1)]
    result = PiiReport(since=since, until=now, days=days)
    profiles = RunProfile.objects.filter(started_at__gte=since, started_at__lt=now).exclude(pii={})
    if agent is not None:
        profiles = profiles.filter(agent=agent)
    per_agent: dict[int, dict] = {}
    day_index = {day.date(): i for i, day in enumerate(days)}
    for agent_id, day, pii in (
        profiles.annotate(day=TruncDay("started_at"))
        .values_list("agent_id", "day", "pii")
        .order_by()
        .iterator(chunk_size=5000)
    ):
        result.runs += 1
        entry = per_agent.setdefault(agent_id, {"runs": 0, "types": defaultdict(int)})
        entry["runs"] += 1
        for kind, count in pii.items():
            result.totals[kind] = result.totals.get(kind, 0) + count
            series = result.per_day.setdefault(kind, [0] * len(days))
            index = day_index.get(day.date())
            if index is not None:
                series[index] += count
            entry["types"][kind] += count
    names = dict(Agent.objects.filter(pk__in=list(per_agent)).values_list("pk", "name"))
    result.agents = sorted(
        (
            {"name": names.get(pk, "?"), "runs": e["runs"], "types": dict(e["types"])}
            for pk, e in per_agent.items()
        ),
        key=lambda e: -e["runs"],
    )
    result.examples = examples(profiles)
    return result


def examples(profiles) -> list[dict]:
    """The newest runs with PII, each with the values found, masked."""
    newest = list(profiles.order_by("-started_at").values_list("run_id", "pii")[:EXAMPLE_RUNS])
    runs = {
        run.pk: run
        for run in Run.objects.filter(pk__in=[pk for pk, _ in newest]).select_related("agent")
    }
    texts = defaultdict(list)
    for run_id, text_in, text_out in (
        Span.objects.filter(run_id__in=list(runs))
        .exclude(pii={})
        .values_list("run_id", "input", "output")
    ):
        texts[run_id] += [text_in, text_out]
    out = []
    for run_id, pii in newest:
        run = runs.get(run_id)
        if run is None:
            continue
        found = []
        for text in texts.get(run_id, []):
            for kind, value in find_pii(text):
                masked = (kind, mask(kind, value))
                if masked not in found:
                    found.append(masked)
        out.append(
            {
                "trace_id": run.trace_id,
                "agent": run.agent.name if run.agent else "",
                "started_at": run.started_at,
                "types": pii,
                "values": found[:VALUES_PER_EXAMPLE],
            }
        )
    return out


def find_pii(text: str) -> list[tuple[str, str]]:
    """(type, value) of the PII in text, by the same rules ingest counts it with."""
    found: list[tuple[str, str]] = []
    if not text or len(text) < 6:
        return found
    if "@" in text:
        found += [("email", value) for value in scanning._EMAIL.findall(text)]
    end = len(text)
    for match in scanning._NUMBER.finditer(text):
        start, stop = match.span()
        glued = scanning._GLUED
        if (start and text[start - 1] in glued) or (stop < end and text[stop] in glued):
            continue
        candidate = match.group(0).strip()
        kind = scanning._classify_number(candidate)
        if kind:
            found.append((kind, candidate))
    found += [
        ("iban", m.group(0))
        for m in scanning._IBAN.finditer(text)
        if scanning.iban_valid(m.group(0))
    ]
    return found


def mask(kind: str, value: str) -> str:
    """A value with all but a hint hidden: j•••@e•••.com, •••• 4242, GB•• •••• 5432."""
    if kind == "email":
        local, _, domain = value.partition("@")
        host, _, tld = domain.rpartition(".")
        return f"{local[:1]}{MASK * 3}@{host[:1]}{MASK * 3}.{tld}"
    digits = [c for c in value if c.isalnum()]
    keep = "".join(digits[-4:])
    if kind == "iban":
        return f"{value[:2]}{MASK * 2} {MASK * 4} {keep}"
    return f"{MASK * 4} {keep}"


def label(kind: str) -> str:
    return TYPE_LABELS.get(kind, kind)


def plural(kind: str) -> str:
    return PLURAL_LABELS.get(kind, kind)
