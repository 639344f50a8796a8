"""Text search in run content: which runs have a span whose input or output holds the words.

On PostgreSQL each run has a search document (RunSearch: to_tsvector('simple', …) of its spans'
content), written by index_pass a few seconds after the run changes, off the ingest path. Runs
changed since the indexer's watermark are not trusted to have a current document: for them the
search reads their spans directly, so a search finds a run the moment its spans are stored.
'simple' neither stems nor drops stop words, so it works the same for any language; websearch
syntax takes "quoted phrases", `or` and -exclusions. Elsewhere (embedded SQLite) the search is a
substring match on span content.
"""

import json
from datetime import datetime

from django.contrib.postgres.search import SearchQuery
from django.db import OperationalError, connection, transaction
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, Value
from django.utils import timezone

from cockpit.models import RollupWatermark
from cockpit.rollups import EPOCH, changed_rows_pass
from traces.models import Run, RunSearch, Span

SEARCH_WATERMARK = "search"
# "string is too long for tsvector"
PROGRAM_LIMIT_EXCEEDED = "54000"
# Runs whose documents one pass rebuilds; a backlog is worked off over several passes.
INDEX_BATCH = 2_000
# A run's document reads this much of its content. A tsvector holds at most 1 MB; ordinary text
# stays far below that here, and a run whose words do not fit is indexed from its first
# FALLBACK_CONTENT_CHARS characters instead (see _write_documents).
CONTENT_CHARS = 1_000_000
FALLBACK_CONTENT_CHARS = 250_000
# Below this many matching runs (the planner's estimate), a search starts from the document
# index; above it, from the runs in list order, probing each run's document (see
# runs_mentioning).
SEARCH_INDEX_FIRST_BELOW = 20_000
# The index-first path reads at most this many matching runs: a guard against a bad estimate.
SEARCH_INDEX_CAP = 200_000
# Runs not yet indexed that a search reads span by span, newest first.
FRESH_RUNS_CAP = 20_000

DOCUMENTS_SQL = """
    INSERT INTO traces_runsearch (run_id, document)
    SELECT run_id, to_tsvector('simple'::regconfig,
                               left(string_agg(input || ' ' || output, ' ' ORDER BY started_at),
                                    %(chars)s))
    FROM traces_span WHERE run_id = ANY(%(run_ids)s)
    GROUP BY run_id
    ON CONFLICT (run_id) DO UPDATE SET document = EXCLUDED.document
"""


def index_pass(*, now: datetime | None = None) -> int:
    """Rebuild the documents of runs changed since the watermark. Returns how many runs it read.

    One transaction under the "search" watermark (cockpit.rollups.changed_rows_pass), which
    stops short of any transaction still open, so a run committed late is never skipped; until
    the watermark passes a run, searches read its spans.
    """
    if connection.vendor != "postgresql":
        return 0
    return changed_rows_pass(
        SEARCH_WATERMARK, Run.objects.all(), INDEX_BATCH, _write_documents, now or timezone.now()
    )


def _write_documents(run_ids: list[int]) -> None:
    """Upsert the runs' documents; a run whose words overflow a tsvector gets a shorter one."""
    with connection.cursor() as cursor:
        try:
            with transaction.atomic():
                cursor.execute(DOCUMENTS_SQL, {"run_ids": run_ids, "chars": CONTENT_CHARS})
            return
        except OperationalError as error:
            if not _too_long(error):
                raise
        for run_id in run_ids:
            try:
                with transaction.atomic():
                    cursor.execute(DOCUMENTS_SQL, {"run_ids": [run_id], "chars": CONTENT_CHARS})
            except OperationalError as error:
                if not _too_long(error):
                    raise
                cursor.execute(
                    DOCUMENTS_SQL, {"run_ids": [run_id], "chars": FALLBACK_CONTENT_CHARS}
                )


def _too_long(error: OperationalError) -> bool:
    return getattr(error.__cause__, "sqlstate", None) == PROGRAM_LIMIT_EXCEEDED


def index_position() -> datetime:
    """Runs changed at or after this moment may lack a current document."""
    position = (
        RollupWatermark.objects.filter(name=SEARCH_WATERMARK)
        .values_list("position", flat=True)
        .first()
    )
    return position or EPOCH


class SpanContentMatches(Func):
    """True when a span's input or output holds the words: the words are read on the fly."""

    output_field = BooleanField()

    def __init__(self, words: str):
        super().__init__(F("input"), F("output"), Value(words))

    def as_sql(self, compiler, connection, **extra):
        (input_sql, _), (output_sql, _), (words_sql, params) = (
            compiler.compile(expression) for expression in self.get_source_expressions()
        )
        sql = (
            f"to_tsvector('simple'::regconfig, {input_sql} || ' ' || {output_sql})"
            f" @@ websearch_to_tsquery('simple'::regconfig, {words_sql})"
        )
        return sql, params


def documents_mentioning(words: str):
    return RunSearch.objects.filter(
        document=SearchQuery(words, search_type="websearch", config="simple")
    )


def estimated_rows(queryset) -> float:
    """The planner's estimate of the rows a query returns (EXPLAIN, nothing is read)."""
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return plan[0]["Plan"]["Plan Rows"]


def runs_mentioning(words: str) -> Q:
    """A filter for runs having a span whose content holds the words.

    Two plans for the indexed runs, since PostgreSQL's own choice between them is poor (its
    estimate of a text match is rough): for rare words, read the runs' ids from the document
    index (a LIMITed subquery, which PostgreSQL does not flatten into a join); for common
    words, walk the runs in list order and probe each one's document, which finds a page of
    matches after a few runs. Runs changed since the indexer's watermark are matched on their
    spans first, in a query of their own (see fresh_runs_mentioning).
    """
    if connection.vendor != "postgresql":
        spans = Span.objects.filter(Q(input__icontains=words) | Q(output__icontains=words))
        return Q(Exists(spans.filter(run=OuterRef("pk"))))
    fresh = fresh_runs_mentioning(words)
    documents = documents_mentioning(words)
    if estimated_rows(documents.values("pk")) < SEARCH_INDEX_FIRST_BELOW:
        indexed = documents.order_by().values("run_id")[:SEARCH_INDEX_CAP]
        if fresh:
            indexed = indexed.union(Run.objects.filter(pk__in=fresh).values("pk"), all=True)
        return Q(pk__in=indexed)
    matches = Q(Exists(documents.filter(run=OuterRef("pk"))))
    return matches | Q(pk__in=fresh) if fresh else matches


def fresh_runs_mentioning(words: str) -> list[int]:
    """Ids of the runs changed since the indexer's watermark whose spans hold the words.

    Read on their own, newest first and at most FRESH_RUNS_CAP of them: inside the list query
    PostgreSQL would rather tokenise every span once to build a hash than probe a few runs.
    Normally these are the last few seconds of runs; when the indexer has fallen far behind,
    the search covers the newest FRESH_RUNS_CAP of them.
    """
    spans = Span.objects.filter(SpanContentMatches(words), run=OuterRef("pk"))
    recent = (
        Run.objects.filter(updated_at__gte=index_position())
        .order_by("-updated_at")
        .values("pk")[:FRESH_RUNS_CAP]
    )
    return list(
        Run.objects.filter(pk__in=recent).filter(Exists(spans)).values_list("pk", flat=True)
    )
