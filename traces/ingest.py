"""The span store: write a normalised batch durably and idempotently, with run summaries.

ingest_batch(project, batch) runs ONE transaction. When it returns, every span of the batch is
stored (or was already), and every run it touched has a summary computed from all of its stored
spans, so a summary is right whatever the order, duplication or batching of arrival.

Design (PostgreSQL, the production path; no ORM instances, one statement per step):

1. Agents: INSERT … ON CONFLICT DO NOTHING for the batch's agent names, then read their ids,
   versions and last-seen times. No row lock is taken on agents that already exist.
2. Runs: INSERT … ON CONFLICT DO NOTHING RETURNING for the batch's trace ids (sorted), then
   SELECT … FOR UPDATE (sorted) the runs that already existed. Holding the run row lock before
   reading its spans is what makes the recompute in step 4 see every committed span: a
   concurrent batch for the same trace waits here until ours commits.
3. Spans: one INSERT … SELECT FROM unnest(arrays) ON CONFLICT (project, trace, span) DO NOTHING,
   inside a CTE whose RETURNING tells which spans were new (per run, and per unpriced model).
4. Run summaries: one UPDATE … FROM (SELECT … FROM span WHERE run_id = ANY(…) GROUP BY run_id)
   recomputes counts, times, tokens, cost, root name/status/agent for the runs that got new
   spans. A batch that only repeats stored spans changes nothing.
5. Unpriced models (upsert adding the count of new unpriced spans), then agent updates and
   automatic release markers. These rows are shared by all batches, so they are written last
   (their locks are held only until commit) and only when something changed: last_seen_at moves
   at most once per LAST_SEEN_RESOLUTION, so concurrent batches of one agent do not queue.

Run hints (version, conversation, session, user, task type, team, outcome) are not Span
columns, so they live on the Run row. A batch that holds the root span sets each hint the root
carries (the root is authoritative); any other batch only fills hints that are still blank, with
the earliest span of the batch that has one. Root hints are therefore right whatever the arrival
order; the non-root fallback is "earliest span having it" within the first batch that had one,
which only differs from the global earliest when spans of one trace disagree. Name, agent and
status come from the stored spans (the root's, else the earliest span's) and are always exact.

Rows are always locked in a fixed order (agents by name, runs by trace id, spans by trace and
span id, shared rows by key) so concurrent batches cannot deadlock one another.

SQLite (embedded mode) takes a simpler path with the ORM and the same rules, computed in Python
by summarise_run(); it holds the database's single writer lock for the transaction anyway.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import orjson
import psycopg
from django.db import connection, models, transaction
from django.db.models import F
from django.utils import timezone

from cockpit import realtime
from cockpit.scores import store_span_scores
from traces.models import Agent, Project, ReleaseMarker, Run, Span, UnpricedModel
from traces.normalise import NormalisedBatch, SpanRecord

# last_seen_at is touched at most this often per agent: the row is shared by every batch.
LAST_SEEN_RESOLUTION = timedelta(seconds=5)
# A stuck lock or statement becomes an OperationalError (→ 503 + Retry-After), not a hang.
LOCK_TIMEOUT = "5s"
# Run pages told to refresh per batch at most: a batch of many unfinished traces (a collector
# flushing partial traces) must not turn into a broadcast storm.
MAX_RUN_REFRESHES = 50
STATEMENT_TIMEOUT = "30s"

RUN_HINTS = ("version", "conversation_id", "session_id", "user_id", "task_type", "team", "outcome")
OUTCOMES = frozenset(Run.Outcome.values) - {""}
NUL = "\x00"


@dataclass(slots=True)
class IngestResult:
    received: int  # spans in the batch
    stored: int  # spans newly stored (the rest were already there)
    runs: int  # runs touched by the batch


def ingest_batch(project: Project, batch: NormalisedBatch) -> IngestResult:
    spans = sorted(batch.spans, key=lambda s: (s.trace_id, s.span_id))
    if not spans:
        return IngestResult(received=0, stored=0, runs=0)
    now = timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            stored, runs, grown = _store_postgresql(project, spans, now)
        else:
            stored, runs, grown = _store_portable(project, spans, now)
        if stored:
            _announce(spans, grown)
        if any(span.scores for span in spans):
            store_span_scores(project, spans)
    return IngestResult(received=len(spans), stored=stored, runs=runs)


def _announce(spans: list[SpanRecord], grown: dict[str, bool]) -> None:
    """Tell live pages, on commit: the runs list once, and the pages of runs still in progress.

    grown: {trace_id: whether this batch created the run} for the runs that got new spans.
    A run that arrived whole in this batch (created here, root span included) needs no run
    page refresh: nobody can have its page open yet. The rest arrive in several batches.
    """
    realtime.send_refresh("runs", "runs-live")
    with_root = {span.trace_id for span in spans if not span.parent_span_id}
    in_progress = [
        trace_id for trace_id, created in grown.items() if not created or trace_id not in with_root
    ]
    for trace_id in sorted(in_progress)[:MAX_RUN_REFRESHES]:
        try:
            realtime.send_refresh(f"run.{trace_id}", "run-live")
        except ValueError:
            continue  # a trace id that is not hex has no live topic (and no live page)


# --- What a batch says about its runs and agents (shared by both paths) ----------------------


def _clip(value: str, field) -> str:
    return value[: field.max_length] if value else ""


HINT_LENGTHS = {hint: Run._meta.get_field(hint).max_length for hint in RUN_HINTS}


# The SpanRecord attribute each run hint is read from, in RUN_HINTS order.
_HINT_SOURCES = operator.attrgetter(
    "agent_version", "conversation_id", "session_id", "user_id", "task_type", "team", "outcome"
)
_HINT_LIMITS = tuple(HINT_LENGTHS[hint] for hint in RUN_HINTS)
_OUTCOME_POSITION = RUN_HINTS.index("outcome")


def _hint_values(span: SpanRecord) -> tuple[str, ...]:
    """The span's value of every run hint (clipped; "" when absent), in RUN_HINTS order."""
    values = [
        value[:limit] if value else ""
        for value, limit in zip(_HINT_SOURCES(span), _HINT_LIMITS, strict=True)
    ]
    outcome = values[_OUTCOME_POSITION].strip().lower()
    values[_OUTCOME_POSITION] = outcome if outcome in OUTCOMES else ""
    return tuple(values)


def run_hints(spans: list[SpanRecord]) -> dict[str, dict[str, tuple[str, str]]]:
    """{trace_id: {hint: (root's value, earliest span's value)}} for the batch's runs."""
    roots: dict[str, list[str]] = {}
    firsts: dict[str, list[str]] = {}
    for span in sorted(spans, key=lambda s: (s.started_at, s.span_id)):
        values = _hint_values(span)
        first = firsts.setdefault(span.trace_id, [""] * len(RUN_HINTS))
        root = roots.setdefault(span.trace_id, [""] * len(RUN_HINTS))
        is_root = span.parent_span_id == ""
        for position, value in enumerate(values):
            if value:
                if not first[position]:
                    first[position] = value
                if is_root and not root[position]:
                    root[position] = value
    return {
        trace_id: dict(zip(RUN_HINTS, zip(roots[trace_id], first, strict=True), strict=True))
        for trace_id, first in firsts.items()
    }


@dataclass(slots=True)
class AgentSighting:
    name: str
    version: str = ""
    environment: str = ""
    team: str = ""
    version_since: datetime | None = None  # earliest start of a span with that version


_AGENT_LIMITS = {
    name: Agent._meta.get_field(name).max_length
    for name in ("name", "current_version", "environment", "team")
}


def agent_sightings(spans: list[SpanRecord]) -> dict[str, AgentSighting]:
    """Per agent name, the newest version, environment and team the batch reports."""
    sightings: dict[str, AgentSighting] = {}
    limits = _AGENT_LIMITS
    for span in sorted(spans, key=lambda s: s.started_at):
        name = span.agent_name[: limits["name"]]
        if not name:
            continue
        seen = sightings.get(name)
        if seen is None:
            seen = sightings[name] = AgentSighting(name=name)
        version = span.agent_version[: limits["current_version"]]
        if version and version != seen.version:
            seen.version, seen.version_since = version, span.started_at
        seen.environment = span.environment[: limits["environment"]] or seen.environment
        seen.team = span.team[: limits["team"]] or seen.team
    return sightings


def _agent_changes(agent: Agent, seen: AgentSighting, now: datetime) -> dict:
    """The fields of an existing agent that this batch changes (empty: leave the row alone)."""
    changes = {}
    if agent.last_seen_at < now - LAST_SEEN_RESOLUTION:
        changes["last_seen_at"] = now
    if seen.version and seen.version != agent.current_version:
        changes["current_version"] = seen.version
    if seen.environment and seen.environment != agent.environment:
        changes["environment"] = seen.environment
    if seen.team and seen.team != agent.team:
        changes["team"] = seen.team
    return changes


def summarise_run(rows: list[dict]) -> dict:
    """A run's summary from its stored spans (dicts of Span columns); the SQL path's twin."""
    rows = sorted(rows, key=lambda r: (r["started_at"], r["span_id"]))
    llm = [r for r in rows if r["kind"] == Span.Kind.LLM]
    roots = [r for r in rows if r["parent_span_id"] == ""]
    token_fields = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    if llm:
        tokens = {f: sum(r[f] for r in llm) for f in token_fields}
    else:
        # Agent and chain spans often repeat their children's usage: take one, never a sum.
        others = [
            [r["input_tokens"] + r["output_tokens"]] + [r[f] for f in token_fields] for r in rows
        ]
        top = max(others)
        tokens = dict(zip(token_fields, top[1:], strict=True))
    root = roots[0] if roots else None
    with_agent = [r["agent_id"] for r in rows if r["agent_id"] is not None]
    started_at = min(r["started_at"] for r in rows)
    ended_at = max(r["ended_at"] for r in rows)
    return {
        "started_at": started_at,
        "ended_at": ended_at,
        "duration_ms": (ended_at - started_at).total_seconds() * 1000,
        "span_count": len(rows),
        "llm_calls": len(llm),
        "tool_calls": sum(1 for r in rows if r["kind"] == Span.Kind.TOOL),
        "error_count": sum(1 for r in rows if r["status"] == Span.Status.ERROR),
        **tokens,
        "cost_usd": sum((r["cost_usd"] for r in llm if r["cost_usd"] is not None), Decimal(0)),
        "cost_known": all(r["cost_known"] for r in llm),
        "pii_count": sum(sum(r["pii"].values()) for r in rows if r["pii"]),
        "name": _clip((root or rows[0])["name"], Run._meta.get_field("name")),
        "agent_id": (root["agent_id"] if root else None) or (with_agent[0] if with_agent else None),
        "root_status": root["status"] if root else None,
    }


def run_status(root_status: str | None, outcome: str) -> str:
    if root_status is None:
        return Run.Status.RUNNING
    if root_status == Span.Status.ERROR or outcome == Run.Outcome.FAILURE:
        return Run.Status.ERROR
    return Run.Status.OK


def _merge_hint(root_value: str, current: str, first_value: str) -> str:
    return root_value or current or first_value


# --- Text and JSON that PostgreSQL accepts ---------------------------------------------------


def _pg_text(value: str, limit: int | None = None) -> str:
    """PostgreSQL text cannot hold NUL; OTLP strings can. Replace it, visibly."""
    if not value:
        return ""
    if limit is not None:
        value = value[:limit]
    if NUL in value:
        value = value.replace(NUL, "\ufffd")
    return value


def _scrub_nul(value):
    if isinstance(value, str):
        return value.replace(NUL, "\ufffd")
    if isinstance(value, dict):
        return {_scrub_nul(k): _scrub_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_nul(v) for v in value]
    return value


def _pg_json(value) -> str:
    """JSON text for a jsonb column, which rejects \\u0000 in strings."""
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    text = orjson.dumps(value, default=str).decode()
    if "\\u0000" in text:
        text = orjson.dumps(_scrub_nul(value), default=str).decode()
    return text


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_cursor() -> psycopg.Cursor:
    """A plain psycopg cursor (server-side binding, binary arrays) on Django's connection.

    Django's own cursor binds client-side, which would spell every array out as SQL text.
    """
    connection.ensure_connection()
    return psycopg.Cursor(connection.connection)


def _store_postgresql(
    project: Project, spans: list[SpanRecord], now: datetime
) -> tuple[int, int, dict[str, bool]]:
    with connection.wrap_database_errors, _pg_cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'")
        sightings = agent_sightings(spans)
        agents = _pg_upsert_agents(cursor, project, sightings, now)
        run_ids, created = _pg_upsert_runs(cursor, project, spans, agents, now)
        new_by_run, unpriced = _pg_insert_spans(
            cursor, project, spans, run_ids, created, agents, now
        )
        # Runs created by this batch already hold their summary; older ones are recomputed.
        grown = set(new_by_run) - created
        if grown:
            _pg_recompute_runs(cursor, spans, run_ids, grown, now)
        if unpriced:
            _pg_count_unpriced(cursor, project, unpriced, now)
        _pg_update_agents(cursor, agents, sightings, now)
    grown_runs = {t: pk in created for t, pk in run_ids.items() if pk in new_by_run}
    return sum(new_by_run.values()), len(run_ids), grown_runs


def _pg_upsert_agents(cursor, project, sightings, now) -> dict[str, Agent]:
    if not sightings:
        return {}
    names = sorted(sightings)
    cursor.execute(
        """
        INSERT INTO traces_agent (project_id, name, team, environment, state, state_reason,
                                  current_version, first_seen_at, last_seen_at)
        SELECT %s, n, '', '', 'active', '', '', %s, %s FROM unnest(%s::text[]) AS n
        ORDER BY n
        ON CONFLICT (project_id, name) DO NOTHING
        """,
        [project.pk, now, now, [_pg_text(n) for n in names]],
    )
    cursor.execute(
        """
        SELECT id, name, team, environment, current_version, last_seen_at FROM traces_agent
        WHERE project_id = %s AND name = ANY(%s::text[])
        """,
        [project.pk, [_pg_text(n) for n in names]],
    )
    agents = {}
    for pk, name, team, environment, version, last_seen_at in cursor.fetchall():
        agents[name] = Agent(
            pk=pk,
            name=name,
            team=team,
            environment=environment,
            current_version=version,
            last_seen_at=last_seen_at,
        )
    return agents


def _batch_summaries(spans: list[SpanRecord], agents: dict[str, Agent]) -> dict[str, dict]:
    """{trace_id: summary of the trace's spans in this batch}, computed in Python.

    For a run the batch creates this is the exact summary: no span of it can be stored yet.
    """
    agent_name_field = Agent._meta.get_field("name")
    rows_by_trace: dict[str, list[dict]] = {}
    previous = None
    for span in spans:  # sorted by (trace_id, span_id): a repeated span is adjacent
        key = (span.trace_id, span.span_id)
        if key == previous:
            continue
        previous = key
        agent = agents.get(_clip(span.agent_name, agent_name_field))
        rows_by_trace.setdefault(span.trace_id, []).append(
            {
                "span_id": span.span_id,
                "parent_span_id": span.parent_span_id,
                "name": _pg_text(span.name),
                "kind": span.kind,
                "status": span.status,
                "started_at": span.started_at,
                "ended_at": span.ended_at,
                "agent_id": agent.pk if agent else None,
                "input_tokens": span.input_tokens,
                "output_tokens": span.output_tokens,
                "cache_read_tokens": span.cache_read_tokens,
                "cache_write_tokens": span.cache_write_tokens,
                "cost_usd": span.cost_usd,
                "cost_known": span.cost_known,
                "pii": span.pii,
            }
        )
    return {trace_id: summarise_run(rows) for trace_id, rows in rows_by_trace.items()}


RUN_INSERT_COLUMNS = (
    ("trace_id", "text"), ("name", "text"), ("agent_id", "int8"), ("version", "text"),
    ("conversation_id", "text"), ("session_id", "text"), ("user_id", "text"),
    ("task_type", "text"), ("team", "text"), ("outcome", "text"), ("status", "text"),
    ("started_at", "timestamptz"), ("ended_at", "timestamptz"), ("duration_ms", "float8"),
    ("span_count", "int8"), ("llm_calls", "int8"), ("tool_calls", "int8"),
    ("error_count", "int8"), ("input_tokens", "int8"), ("output_tokens", "int8"),
    ("cache_read_tokens", "int8"), ("cache_write_tokens", "int8"), ("cost_usd", "numeric"),
    ("cost_known", "bool"), ("pii_count", "int8"),
)  # fmt: skip
_RUN_NAMES = ", ".join(name for name, _ in RUN_INSERT_COLUMNS)
RUN_INSERT_SQL = f"""
    INSERT INTO traces_run (project_id, updated_at, {_RUN_NAMES})
    SELECT %s, %s, {_RUN_NAMES}
    FROM unnest({", ".join(f"%s::{kind}[]" for _, kind in RUN_INSERT_COLUMNS)})
        AS t({_RUN_NAMES})
    ORDER BY trace_id
    ON CONFLICT (project_id, trace_id) DO NOTHING
    RETURNING trace_id, id
"""  # noqa: S608 - only the fixed column names above go into the text


def _new_run_row(trace_id: str, summary: dict, hints: dict[str, tuple[str, str]]) -> dict:
    """The traces_run row of a run this batch creates: its summary, hints and status."""
    row = {hint: _pg_text(root or first) for hint, (root, first) in hints.items()}
    root_status = summary.pop("root_status")
    row.update(summary, trace_id=trace_id, status=run_status(root_status, row["outcome"]))
    return row


def _pg_upsert_runs(cursor, project, spans, agents, now) -> tuple[dict[str, int], set[int]]:
    """({trace_id: run id}, ids of the runs this batch created), every run locked by us.

    A run the batch creates is inserted with its final summary; runs that already existed are
    locked (see step 2 above) and recomputed from all their stored spans afterwards.
    """
    summaries = _batch_summaries(spans, agents)
    hints = run_hints(spans)
    trace_ids = sorted(summaries)
    rows = [_new_run_row(t, summaries[t], hints[t]) for t in trace_ids]
    columns = [[row[name] for row in rows] for name, _ in RUN_INSERT_COLUMNS]
    cursor.execute(RUN_INSERT_SQL, [project.pk, now, *columns])
    run_ids = dict(cursor.fetchall())
    created = set(run_ids.values())
    existing = [t for t in trace_ids if t not in run_ids]
    if existing:
        cursor.execute(
            """
            SELECT trace_id, id FROM traces_run WHERE project_id = %s AND trace_id = ANY(%s)
            ORDER BY trace_id FOR UPDATE
            """,
            [project.pk, existing],
        )
        run_ids.update(cursor.fetchall())
    return run_ids, created


# The Span columns a SpanRecord fills, in COPY order, and how each is made safe for the store.
SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_span_id", "kind", "name", "operation", "started_at",
    "ended_at", "duration_ms", "status", "error_type", "error_message", "provider", "model",
    "tool_name", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "reasoning_tokens", "cost_usd", "cost_known", "attributes", "events", "input", "output",
    "input_format", "output_format", "input_truncated", "output_truncated", "pii",
    "secrets_redacted",
)  # fmt: skip
_span_values = operator.attrgetter(*SPAN_COLUMNS)
# (position, max length or None) of text columns; positions of jsonb columns.
_TEXT_POSITIONS = tuple(
    (position, Span._meta.get_field(name).max_length)
    for position, name in enumerate(SPAN_COLUMNS)
    if isinstance(Span._meta.get_field(name), models.CharField | models.TextField)
)
_JSON_POSITIONS = tuple(
    position
    for position, name in enumerate(SPAN_COLUMNS)
    if isinstance(Span._meta.get_field(name), models.JSONField)
)


def _span_row(span: SpanRecord) -> list:
    """The SPAN_COLUMNS values of a span, clipped to their columns, NUL-free, JSON as text."""
    values = list(_span_values(span))
    for position, limit in _TEXT_POSITIONS:
        value = values[position]
        if value and (NUL in value or (limit is not None and len(value) > limit)):
            values[position] = _pg_text(value, limit)
    for position in _JSON_POSITIONS:
        values[position] = _pg_json(values[position])
    return values


PROVIDER_LENGTH = Span._meta.get_field("provider").max_length
MODEL_LENGTH = Span._meta.get_field("model").max_length
SPAN_COPY_SQL = (
    "COPY traces_span (project_id, ingested_at, run_id, agent_id, resource, "
    + ", ".join(SPAN_COLUMNS)
    + ") FROM STDIN"
)


def _pg_stored_span_keys(cursor, project, run_ids, created) -> set[tuple[str, str]]:
    """(trace_id, span_id) of the spans already stored for the batch's older runs.

    Those runs are locked by this transaction, so no other batch can add spans to them before
    we commit; runs this batch created have no stored spans at all.
    """
    older = sorted(pk for pk in run_ids.values() if pk not in created)
    if not older:
        return set()
    cursor.execute(
        "SELECT trace_id, span_id FROM traces_span WHERE run_id = ANY(%s::int8[])", [older]
    )
    return set(cursor.fetchall())


def _pg_insert_spans(cursor, project, spans, run_ids, created, agents, now):
    """COPY the spans that are new. Returns ({run id: new spans}, {(provider, model): n}).

    COPY is several times faster than INSERT for a batch, but has no ON CONFLICT: the spans
    already stored are filtered out first (see _pg_stored_span_keys). Should that ever miss
    one, the unique constraint fails the transaction and the client retries (503).
    """
    stored = _pg_stored_span_keys(cursor, project, run_ids, created)
    new_spans = []
    for span in spans:  # sorted: a span repeated within the batch is adjacent
        key = (span.trace_id, span.span_id)
        if key not in stored:
            stored.add(key)
            new_spans.append(span)
    if not new_spans:
        return {}, {}
    # Spans of one resource share its attributes dict: serialise it once.
    resource_json: dict[int, str] = {}
    resources = []
    for span in new_spans:
        key = id(span.resource)
        if key not in resource_json:
            resource_json[key] = _pg_json(span.resource)
        resources.append(resource_json[key])
    agent_name_field = Agent._meta.get_field("name")
    with cursor.copy(SPAN_COPY_SQL) as copy:
        for span, resource in zip(new_spans, resources, strict=True):
            agent = agents.get(_clip(span.agent_name, agent_name_field))
            copy.write_row(
                (
                    project.pk,
                    now,
                    run_ids[span.trace_id],
                    agent.pk if agent else None,
                    resource,
                    *_span_row(span),
                )
            )
    new_by_run: dict[int, int] = {}
    unpriced: dict[tuple[str, str], int] = {}
    for span in new_spans:
        run_id = run_ids[span.trace_id]
        new_by_run[run_id] = new_by_run.get(run_id, 0) + 1
        if not span.cost_known:
            key = (_pg_text(span.provider, PROVIDER_LENGTH), _pg_text(span.model, MODEL_LENGTH))
            unpriced[key] = unpriced.get(key, 0) + 1
    return new_by_run, unpriced


RUN_RECOMPUTE_SQL = """
    WITH s AS (
        SELECT run_id,
            min(started_at) AS started_at,
            max(ended_at) AS ended_at,
            count(*) AS span_count,
            count(*) FILTER (WHERE kind = 'llm') AS llm_calls,
            count(*) FILTER (WHERE kind = 'tool') AS tool_calls,
            count(*) FILTER (WHERE status = 'error') AS error_count,
            sum(input_tokens) FILTER (WHERE kind = 'llm') AS llm_input,
            sum(output_tokens) FILTER (WHERE kind = 'llm') AS llm_output,
            sum(cache_read_tokens) FILTER (WHERE kind = 'llm') AS llm_cache_read,
            sum(cache_write_tokens) FILTER (WHERE kind = 'llm') AS llm_cache_write,
            -- Arrays compare element by element: this is the usage of the largest span.
            max(ARRAY[input_tokens + output_tokens, input_tokens, output_tokens,
                      cache_read_tokens, cache_write_tokens]) AS top_usage,
            coalesce(sum(cost_usd) FILTER (WHERE kind = 'llm'), 0) AS cost_usd,
            coalesce(bool_and(cost_known) FILTER (WHERE kind = 'llm'), true) AS cost_known,
            sum(CASE WHEN pii = '{}'::jsonb THEN 0 ELSE
                (SELECT coalesce(sum(value::bigint), 0) FROM jsonb_each_text(pii)) END)
                AS pii_count,
            (array_agg(name ORDER BY started_at, span_id)
                FILTER (WHERE parent_span_id = ''))[1] AS root_name,
            (array_agg(status ORDER BY started_at, span_id)
                FILTER (WHERE parent_span_id = ''))[1] AS root_status,
            (array_agg(agent_id ORDER BY started_at, span_id)
                FILTER (WHERE parent_span_id = ''))[1] AS root_agent,
            (array_agg(name ORDER BY started_at, span_id))[1] AS first_name,
            (array_agg(agent_id ORDER BY started_at, span_id)
                FILTER (WHERE agent_id IS NOT NULL))[1] AS first_agent
        FROM traces_span WHERE run_id = ANY(%(run_ids)s) GROUP BY run_id
    ),
    h AS (
        SELECT * FROM unnest(%(run_ids)s::int8[],
            %(version_root)s::text[], %(version_first)s::text[],
            %(conversation_id_root)s::text[], %(conversation_id_first)s::text[],
            %(session_id_root)s::text[], %(session_id_first)s::text[],
            %(user_id_root)s::text[], %(user_id_first)s::text[],
            %(task_type_root)s::text[], %(task_type_first)s::text[],
            %(team_root)s::text[], %(team_first)s::text[],
            %(outcome_root)s::text[], %(outcome_first)s::text[])
        AS h(run_id, version_root, version_first, conversation_id_root, conversation_id_first,
             session_id_root, session_id_first, user_id_root, user_id_first,
             task_type_root, task_type_first, team_root, team_first,
             outcome_root, outcome_first)
    ),
    merged AS (
        SELECT s.*, h.*, r.id AS id,
            coalesce(nullif(h.outcome_root, ''), nullif(r.outcome, ''), h.outcome_first)
                AS new_outcome
        FROM s JOIN h ON h.run_id = s.run_id JOIN traces_run r ON r.id = s.run_id
    )
    UPDATE traces_run AS r SET
        started_at = m.started_at,
        ended_at = m.ended_at,
        duration_ms = extract(epoch FROM m.ended_at - m.started_at) * 1000,
        span_count = m.span_count,
        llm_calls = m.llm_calls,
        tool_calls = m.tool_calls,
        error_count = m.error_count,
        -- Agent spans repeat their children's usage: without LLM spans take the largest, once.
        input_tokens = CASE WHEN m.llm_calls > 0 THEN m.llm_input ELSE m.top_usage[2] END,
        output_tokens = CASE WHEN m.llm_calls > 0 THEN m.llm_output ELSE m.top_usage[3] END,
        cache_read_tokens = CASE WHEN m.llm_calls > 0 THEN m.llm_cache_read
            ELSE m.top_usage[4] END,
        cache_write_tokens = CASE WHEN m.llm_calls > 0 THEN m.llm_cache_write
            ELSE m.top_usage[5] END,
        cost_usd = m.cost_usd,
        cost_known = m.cost_known,
        pii_count = m.pii_count,
        name = left(coalesce(m.root_name, m.first_name), 300),
        agent_id = coalesce(m.root_agent, m.first_agent),
        version = coalesce(nullif(m.version_root, ''), nullif(r.version, ''), m.version_first),
        conversation_id = coalesce(nullif(m.conversation_id_root, ''),
            nullif(r.conversation_id, ''), m.conversation_id_first),
        session_id = coalesce(nullif(m.session_id_root, ''), nullif(r.session_id, ''),
            m.session_id_first),
        user_id = coalesce(nullif(m.user_id_root, ''), nullif(r.user_id, ''), m.user_id_first),
        task_type = coalesce(nullif(m.task_type_root, ''), nullif(r.task_type, ''),
            m.task_type_first),
        team = coalesce(nullif(m.team_root, ''), nullif(r.team, ''), m.team_first),
        outcome = m.new_outcome,
        status = CASE WHEN m.root_status IS NULL THEN 'running'
            WHEN m.root_status = 'error' OR m.new_outcome = 'failure' THEN 'error'
            ELSE 'ok' END,
        updated_at = %(now)s
    FROM merged AS m
    WHERE r.id = m.id
"""


def _pg_recompute_runs(cursor, spans, run_ids, touched: set[int], now) -> None:
    hints = run_hints(spans)
    traces = sorted(t for t, pk in run_ids.items() if pk in touched)
    params: dict = {"run_ids": [run_ids[t] for t in traces], "now": now}
    for hint in RUN_HINTS:
        params[f"{hint}_root"] = [_pg_text(hints[t][hint][0]) for t in traces]
        params[f"{hint}_first"] = [_pg_text(hints[t][hint][1]) for t in traces]
    cursor.execute(RUN_RECOMPUTE_SQL, params)


def _pg_count_unpriced(cursor, project, unpriced, now) -> None:
    keys = sorted(unpriced)
    cursor.execute(
        """
        INSERT INTO traces_unpricedmodel AS u (project_id, provider, model, span_count,
                                               first_seen_at, last_seen_at)
        SELECT %s, t.provider, t.model, t.n, %s, %s
        FROM unnest(%s::text[], %s::text[], %s::int8[]) AS t(provider, model, n)
        ORDER BY t.provider, t.model
        ON CONFLICT (project_id, provider, model) DO UPDATE
        SET span_count = u.span_count + excluded.span_count, last_seen_at = excluded.last_seen_at
        """,
        [
            project.pk,
            now,
            now,
            [p for p, _ in keys],
            [m for _, m in keys],
            [unpriced[k] for k in keys],
        ],
    )


def _pg_update_agents(cursor, agents, sightings, now) -> None:
    for agent in sorted(agents.values(), key=lambda a: a.pk):
        seen = sightings[agent.name]
        changes = _agent_changes(agent, seen, now)
        if changes:
            assignments = ", ".join(f"{field} = %s" for field in changes)
            cursor.execute(
                # Field names come from _agent_changes, never from input.
                f"UPDATE traces_agent SET {assignments} WHERE id = %s",  # noqa: S608
                [*(_pg_text(v) if isinstance(v, str) else v for v in changes.values()), agent.pk],
            )
        if "current_version" in changes:
            cursor.execute(
                """
                INSERT INTO traces_releasemarker (agent_id, version, prompt_version, model, notes,
                                                  source, at)
                VALUES (%s, %s, '', '', '', 'auto', %s)
                ON CONFLICT (agent_id, version) DO NOTHING
                """,
                [agent.pk, _pg_text(seen.version), seen.version_since or now],
            )


# --- SQLite (embedded mode) ------------------------------------------------------------------


def _store_portable(
    project: Project, spans: list[SpanRecord], now: datetime
) -> tuple[int, int, dict[str, bool]]:
    sightings = agent_sightings(spans)
    agents = _upsert_agents(project, sightings, now)
    run_ids, created = _upsert_runs(project, spans, now)
    new_spans = _insert_new_spans(project, spans, run_ids, agents, now)
    touched = {run_ids[s.trace_id] for s in new_spans}
    if touched:
        _recompute_runs(spans, run_ids, touched, now)
    _count_unpriced(project, new_spans, now)
    for name, agent in agents.items():
        _update_agent(agent, sightings[name], now)
    grown_runs = {s.trace_id: s.trace_id in created for s in new_spans}
    return len(new_spans), len(run_ids), grown_runs


def _upsert_agents(project, sightings, now) -> dict[str, Agent]:
    Agent.objects.bulk_create(
        [Agent(project=project, name=n, first_seen_at=now, last_seen_at=now) for n in sightings],
        ignore_conflicts=True,
    )
    return {a.name: a for a in Agent.objects.filter(project=project, name__in=list(sightings))}


def _upsert_runs(project, spans, now) -> dict[str, int]:
    first = {}
    for span in spans:
        first.setdefault(span.trace_id, span)
    Run.objects.bulk_create(
        [
            Run(project=project, trace_id=t, started_at=s.started_at, ended_at=s.ended_at)
            for t, s in first.items()
        ],
        ignore_conflicts=True,
    )
    runs = Run.objects.filter(project=project, trace_id__in=list(first))
    rows = list(runs.values_list("trace_id", "id", "span_count"))
    # A run stored before holds spans; the ones just created have none yet.
    return {t: pk for t, pk, _ in rows}, {t for t, _, count in rows if count == 0}


def _insert_new_spans(project, spans, run_ids, agents, now) -> list[SpanRecord]:
    stored = set(
        Span.objects.filter(project=project, run_id__in=run_ids.values()).values_list(
            "trace_id", "span_id"
        )
    )
    new_spans = []
    for span in spans:
        if (span.trace_id, span.span_id) not in stored:
            stored.add((span.trace_id, span.span_id))
            new_spans.append(span)
    agent_name_field = Agent._meta.get_field("name")
    Span.objects.bulk_create(
        [
            _span_instance(
                project, s, run_ids, agents.get(_clip(s.agent_name, agent_name_field)), now
            )
            for s in new_spans
        ]
    )
    return new_spans


def _span_instance(project, record: SpanRecord, run_ids, agent, now) -> Span:
    fields = dict(zip(SPAN_COLUMNS, _span_values(record), strict=True))
    for name, value in fields.items():
        if isinstance(value, str):
            fields[name] = _clip(value, Span._meta.get_field(name))
    return Span(
        project=project,
        run_id=run_ids[record.trace_id],
        agent=agent,
        resource=record.resource,
        ingested_at=now,
        **fields,
    )


SUMMARY_COLUMNS = (
    "span_id", "parent_span_id", "name", "kind", "status", "started_at", "ended_at", "agent_id",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd",
    "cost_known", "pii", "run_id",
)  # fmt: skip


def _recompute_runs(spans, run_ids, touched, now) -> None:
    hints = run_hints(spans)
    rows_by_run: dict[int, list[dict]] = {}
    for row in Span.objects.filter(run_id__in=touched).values(*SUMMARY_COLUMNS):
        rows_by_run.setdefault(row["run_id"], []).append(row)
    trace_by_run = {pk: t for t, pk in run_ids.items()}
    for run in Run.objects.filter(pk__in=touched):
        summary = summarise_run(rows_by_run[run.pk])
        root_status = summary.pop("root_status")
        for field, value in summary.items():
            setattr(run, field, value)
        for hint in RUN_HINTS:
            root_value, first_value = hints[trace_by_run[run.pk]][hint]
            setattr(run, hint, _merge_hint(root_value, getattr(run, hint), first_value))
        run.status = run_status(root_status, run.outcome)
        run.updated_at = now
        run.save()


def _count_unpriced(project, new_spans, now) -> None:
    counts: dict[tuple[str, str], int] = {}
    for span in new_spans:
        if not span.cost_known:
            key = (_clip(span.provider, UnpricedModel._meta.get_field("provider")), span.model)
            counts[key] = counts.get(key, 0) + 1
    for (provider, model), n in sorted(counts.items()):
        row, created = UnpricedModel.objects.get_or_create(
            project=project,
            provider=provider,
            model=_clip(model, UnpricedModel._meta.get_field("model")),
            defaults={"span_count": n, "first_seen_at": now, "last_seen_at": now},
        )
        if not created:
            UnpricedModel.objects.filter(pk=row.pk).update(
                span_count=F("span_count") + n, last_seen_at=now
            )


def _update_agent(agent: Agent, seen: AgentSighting, now) -> None:
    changes = _agent_changes(agent, seen, now)
    if changes:
        Agent.objects.filter(pk=agent.pk).update(**changes)
    if "current_version" in changes:
        ReleaseMarker.objects.get_or_create(
            agent=agent,
            version=seen.version,
            defaults={"source": ReleaseMarker.Source.AUTO, "at": seen.version_since or now},
        )
