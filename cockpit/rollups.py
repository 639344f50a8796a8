"""Rollups: folding runs and spans into per-minute, hour and day rows, and reading them back.

Dashboards read these rows, never raw spans. The read API (for the fleet page, agent pages,
SLOs, budgets and the cost explorer):

- ``agent_window(agent_ids, since, until)`` → {agent id: WindowStats} for tiles and SLOs;
  ``agent_windows(agent_ids, {name: (since, until)})`` several windows in one query.
- ``fleet_totals(since, until)`` → one WindowStats for all agents (or the given ones).
- ``series(agent_id, since, until, step)`` → [(bucket start, WindowStats)] for charts;
  ``timeseries(agent_id, metric, since, until, step)`` → [(bucket start, value)].
- ``breakdown(agent_id, dim_kind, since, until)`` → {dimension value: WindowStats};
  ``breakdowns(agent_id, dim_kinds, since, until)`` several kinds in one query;
  ``breakdown_series(...)`` the same per step, for "tokens by model" charts.
- ``percentiles(agent_id, since, until, qs, kind)`` → [value or None per q].

A window is read at the coarsest resolution that tiles it exactly: whole settled days from day
rows, whole settled hours from hour rows, the edges and the last few minutes from minute rows
(``window_tiles``). Windows start on a minute boundary: ``since`` is rounded down.

On PostgreSQL a read sums its counters and merges its histograms in SQL, one row per agent,
dimension value or chart step; ``latency=False`` (or ``counts_only``) skips the histograms
where only counts and cost are shown. Nothing is cached: every read sees the rows as they are.

Folding (Celery, see cockpit.tasks):

- ``fold_pass()`` recomputes every (10-second slice, agent) bucket holding a run whose
  ``updated_at`` moved since the watermark, from the raw runs and spans of that slice, rewrites
  those minutes as the merge of their slices, marks their hours and days dirty and sends
  ``rollups_folded`` (after commit) with the agent ids.
- ``coarse_pass()`` recomputes dirty hour rows from minute rows, then dirty day rows from hour
  rows. Both passes are idempotent: running them twice, or on two workers, changes nothing.
- ``delete_expired_spans()`` drops raw spans older than COCKPIT_SPAN_RETENTION_DAYS in batches;
  runs and rollups keep the history.

To be told when rollups changed, connect to ``rollups_folded``:
``rollups_folded.connect(receiver)``; ``receiver(sender, agent_ids: set[int], **kwargs)`` is
called once per fold pass that changed something, after its transaction committed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q
from django.dispatch import Signal
from django.utils import timezone

from cockpit import histogram
from cockpit.models import FoldedRun, Rollup, RollupDirty, RollupSlice, RollupWatermark
from traces.models import Agent, Run, RunSearch, Span

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
RESOLUTION_SIZE = {
    Rollup.Resolution.MINUTE: MINUTE,
    Rollup.Resolution.HOUR: HOUR,
    Rollup.Resolution.DAY: DAY,
}
# Hour and day rows are rewritten by the coarse pass a little after their minutes change; a
# window reads them only for buckets that ended at least this long ago, minutes otherwise.
COARSE_SETTLE = timedelta(minutes=5)

# Sent after a fold pass commits, with agent_ids: the agents whose rollups changed.
rollups_folded = Signal()


# --- Reading -----------------------------------------------------------------------------------

COUNTERS = (
    "runs", "successes", "failures", "escalated", "abandoned", "unknown", "error_runs",
    "error_spans", "tool_errors_transient", "tool_errors_permanent", "spans", "llm_calls",
    "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
    "cost_unknown_runs",
)  # fmt: skip
HISTOGRAMS = ("run_hist", "llm_hist", "tool_hist")


@dataclass
class WindowStats:
    """Everything the rollups know about a set of runs: sums, and histograms to read from.

    Rates and percentiles are None when there is nothing to compute them from (no runs is not
    a 0 % success rate). Latencies are in milliseconds.
    """

    seconds: float = 0.0  # the window's length, for per-minute and per-hour rates
    runs: int = 0
    successes: int = 0
    failures: int = 0
    escalated: int = 0
    abandoned: int = 0
    unknown: int = 0
    error_runs: int = 0
    error_spans: int = 0
    tool_errors_transient: int = 0
    tool_errors_permanent: int = 0
    spans: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_unknown_runs: int = 0
    cost_usd: Decimal = Decimal(0)
    duration_ms_sum: float = 0.0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    run_hist: dict[int, int] = field(default_factory=dict)
    llm_hist: dict[int, int] = field(default_factory=dict)
    tool_hist: dict[int, int] = field(default_factory=dict)

    def add(self, row: dict) -> None:
        """Fold one rollup row (a dict of Rollup columns) into these stats."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + row.get(name, 0))
        self.cost_usd += row.get("cost_usd") or 0
        self.duration_ms_sum += row.get("duration_ms_sum") or 0
        for key, n in (row.get("errors_by_type") or {}).items():
            self.errors_by_type[key] = self.errors_by_type.get(key, 0) + n
        for name in HISTOGRAMS:
            source = row.get(name)
            if source:
                target = getattr(self, name)
                for key, n in source.items():
                    index = int(key)
                    target[index] = target.get(index, 0) + n

    # Rates ---------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        """Runs with a known ending (every outcome but unknown)."""
        return self.runs - self.unknown

    @property
    def success_rate(self) -> float | None:
        """Successful runs over finished runs."""
        return self.successes / self.finished if self.finished else None

    @property
    def error_rate(self) -> float | None:
        """Runs with status error over all runs."""
        return self.error_runs / self.runs if self.runs else None

    @property
    def runs_per_minute(self) -> float:
        return self.runs / (self.seconds / 60) if self.seconds else 0.0

    @property
    def cost_known(self) -> bool:
        """False when some run used a model without a price: cost_usd is then a floor."""
        return self.cost_unknown_runs == 0

    @property
    def cost_per_hour(self) -> Decimal:
        if not self.seconds:
            return Decimal(0)
        return self.cost_usd * Decimal(3600) / Decimal(str(self.seconds))

    @property
    def cost_per_run(self) -> Decimal | None:
        return self.cost_usd / self.runs if self.runs else None

    @property
    def cost_per_success(self) -> Decimal | None:
        return self.cost_usd / self.successes if self.successes else None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def mean_ms(self) -> float | None:
        return self.duration_ms_sum / self.runs if self.runs else None

    # Latency -------------------------------------------------------------------------------
    def quantiles(self, qs: Iterable[float], kind: str = "run") -> list[float | None]:
        """Quantiles of run durations (kind "run") or step durations ("llm", "tool")."""
        return histogram.percentiles(getattr(self, f"{kind}_hist"), qs)

    @property
    def p50(self) -> float | None:
        return histogram.percentile(self.run_hist, 0.50)

    @property
    def p95(self) -> float | None:
        return histogram.percentile(self.run_hist, 0.95)

    @property
    def p99(self) -> float | None:
        return histogram.percentile(self.run_hist, 0.99)

    def runs_within(self, threshold_ms: float) -> int:
        """Runs whose duration is <= threshold_ms, to the histogram's ~1 % (strict side)."""
        return histogram.count_at_most(self.run_hist, threshold_ms)


STAT_NAMES = frozenset(f.name for f in fields(WindowStats))


def _floor(moment: datetime, size: timedelta) -> datetime:
    moment = moment.astimezone(UTC)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch + ((moment - epoch) // size) * size


def _ceil(moment: datetime, size: timedelta) -> datetime:
    floored = _floor(moment, size)
    return floored if floored == moment else floored + size


def resolution_for(since: datetime, until: datetime) -> str:
    """The chart resolution for a window: 1m up to 6 h, 1h up to 7 days, 1d beyond."""
    length = until - since
    if length <= timedelta(hours=6):
        return Rollup.Resolution.MINUTE
    if length <= timedelta(days=7):
        return Rollup.Resolution.HOUR
    return Rollup.Resolution.DAY


def window_tiles(
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
    coarsest: str = Rollup.Resolution.DAY,
) -> list[tuple[str, datetime, datetime]]:
    """[(resolution, start, end)] covering [since, until) with as few rows as possible.

    Day and hour rows are used only for whole buckets that ended COARSE_SETTLE before now, and
    never coarser than `coarsest` (a chart with hourly steps cannot split a day row).
    """
    now = now or timezone.now()
    since = _floor(since, MINUTE)
    settled = now - COARSE_SETTLE
    order = [Rollup.Resolution.MINUTE, Rollup.Resolution.HOUR, Rollup.Resolution.DAY]
    levels = order[1 : order.index(coarsest) + 1][::-1]  # coarsest first

    def tile(start: datetime, end: datetime, remaining: list[str]) -> list:
        if start >= end:
            return []
        if not remaining:
            return [(Rollup.Resolution.MINUTE, start, end)]
        resolution, finer = remaining[0], remaining[1:]
        size = RESOLUTION_SIZE[resolution]
        first, last = _ceil(start, size), _floor(min(end, settled), size)
        if first >= last:
            return tile(start, end, finer)
        return [*tile(start, first, finer), (resolution, first, last), *tile(last, end, finer)]

    return tile(since, until, levels)


def _window_rows(tiles, *, dim_kind: str = "", agent_ids=None, columns: Iterable[str] = ()):
    """Rollup rows (dicts) of the tiles, in one query."""
    condition = Q()
    for resolution, start, end in tiles:
        condition |= Q(resolution=resolution, bucket_start__gte=start, bucket_start__lt=end)
    if not tiles:
        return []
    rows = Rollup.objects.filter(condition, dim_kind=dim_kind)
    if agent_ids is not None:
        rows = rows.filter(agent_id__in=list(agent_ids))
    return rows.order_by().values("agent_id", "bucket_start", "dim_value", *columns)


# Summed per group in SQL; the JSON columns (histograms, errors by type) are merged key by key.
SUMMED = (*COUNTERS, "cost_usd", "duration_ms_sum")


def _json_columns(steps: bool, latency: bool = True) -> list[str]:
    """The JSON columns a read needs: none for counts and cost only, run latency and error
    types for tiles and tables, and the LLM and tool step histograms when steps is set."""
    if not latency:
        return []
    columns = ["errors_by_type", "run_hist"]
    return columns + ["llm_hist", "tool_hist"] if steps else columns


def _columns(steps: bool) -> list[str]:
    return [*SUMMED, *_json_columns(steps)]


def _slot(moment: datetime, origin: datetime, step: timedelta) -> datetime:
    return origin + ((moment - origin) // step) * step


def _grouped_rows(
    tiles,
    group: tuple[str, ...],
    *,
    dim_kind: str = "",
    agent_ids=None,
    json_columns: Iterable[str] = (),
    step: timedelta | None = None,
    origin: datetime | None = None,
) -> list[tuple[tuple, dict]]:
    """[(group key, row)] of the tiles' rollup rows, in one query; a row feeds WindowStats.add.

    group names the key's parts: "agent_id", "dim_value" and "slot" (bucket_start floored to
    `step` from `origin`). On PostgreSQL each group comes back as one row, its counters summed
    and its JSON columns merged in SQL: decoding thousands of histograms in Python is what
    made the dashboards slow. Elsewhere (SQLite) the raw rows come back with their keys, and
    WindowStats.add merges them the same way.
    """
    rows = _grouped_windows(
        {"": tiles},
        group,
        dim_kind=dim_kind,
        agent_ids=agent_ids,
        json_columns=json_columns,
        step=step,
        origin=origin,
    )
    return [(key, row) for (_, key), row in rows]


def _grouped_windows(
    windows: dict[str, list],
    group: tuple[str, ...],
    *,
    dim_kind: str = "",
    agent_ids=None,
    json_columns: Iterable[str] = (),
    bare: Iterable[str] = (),
    dim_kinds: dict[str, str] | None = None,
    step: timedelta | None = None,
    origin: datetime | None = None,
) -> list[tuple[tuple[str, tuple], dict]]:
    """[((window name, group key), row)] for several windows' tiles at once: one query on
    PostgreSQL (see _grouped_rows), one per window elsewhere. The windows named in `bare`
    leave their JSON columns empty (they are read for counts and cost only); dim_kinds gives
    a window a dimension of its own ({window name: dim kind}, dim_kind otherwise)."""
    windows = {name: tiles for name, tiles in windows.items() if tiles}
    kinds = {name: (dim_kinds or {}).get(name, dim_kind) for name in windows}
    if not windows:
        return []
    json_columns = list(json_columns)
    if _aggregate_in_sql():
        return _grouped_sql(windows, group, kinds, agent_ids, json_columns, set(bare), step, origin)
    keys = {
        "agent_id": lambda row: row["agent_id"],
        "dim_value": lambda row: row["dim_value"],
        "slot": lambda row: _slot(row["bucket_start"], origin, step),
    }
    bare = set(bare)
    return [
        ((name, tuple(keys[part](row) for part in group)), row)
        for name, tiles in windows.items()
        for row in _window_rows(
            tiles,
            dim_kind=kinds[name],
            agent_ids=agent_ids,
            columns=[*SUMMED, *([] if name in bare else json_columns)],
        )
    ]


def _aggregate_in_sql() -> bool:
    """Sums and histogram merges in SQL on PostgreSQL; in Python elsewhere (SQLite)."""
    return connection.vendor == "postgresql"


def _grouped_sql(windows, group, kinds, agent_ids, json_columns, bare, step, origin):
    expressions = {
        "agent_id": ("agent_id", []),
        "dim_value": ("dim_value", []),
        "slot": ("date_bin(%s::interval, bucket_start, %s)", [step, origin]),
    }
    keys = ["w", *(f"g{i}" for i in range(len(group)))]
    selected, select_params = ["%s::text AS w"], []
    for key, name in zip(keys[1:], group, strict=True):
        expression, params = expressions[name]
        selected.append(f"{expression} AS {key}")
        select_params += params
    columns = ", ".join([*selected, *SUMMED, *json_columns])
    no_json = ", ".join([*selected, *SUMMED, *(f"NULL::jsonb AS {c}" for c in json_columns)])
    table = Rollup._meta.db_table
    # Each window selects its own rows (windows overlap), all in one scan of the CTE after.
    parts, params = [], []
    for name, tiles in windows.items():
        buckets = " OR ".join(
            "(resolution = %s AND bucket_start >= %s AND bucket_start < %s)" for _ in tiles
        )
        where = f"dim_kind = %s AND ({buckets})"
        params += [name, *select_params, kinds[name], *(value for tile in tiles for value in tile)]
        if agent_ids is not None:
            where += " AND agent_id = ANY(%s)"
            params.append(list(agent_ids))
        chosen = no_json if name in bare else columns
        parts.append(f"SELECT {chosen} FROM {table} WHERE {where}")  # noqa: S608
    key_list = ", ".join(keys)
    # SUM of an integer column is numeric in PostgreSQL: cast back so counters stay ints.
    sums = ", ".join(f"SUM({name})::bigint AS {name}" for name in COUNTERS)
    sums += ", SUM(cost_usd) AS cost_usd, SUM(duration_ms_sum) AS duration_ms_sum"
    # Only fixed column names go into the text; values travel as parameters.
    merged = "".join(
        f" LEFT JOIN (SELECT {key_list}, jsonb_object_agg(k, n)::text AS {name}"  # noqa: S608
        f" FROM (SELECT {key_list}, e.key AS k, SUM(e.value::bigint) AS n"
        f" FROM r, jsonb_each_text(r.{name}) AS e GROUP BY {key_list}, e.key) AS x"
        f" GROUP BY {key_list}) AS j_{name} USING ({key_list})"
        for name in json_columns
    )
    selections = " UNION ALL ".join(parts)
    sql = (
        f"WITH r AS MATERIALIZED ({selections})"  # noqa: S608
        f" SELECT c.*{''.join(f', j_{name}.{name}' for name in json_columns)}"
        f" FROM (SELECT {key_list}, {sums} FROM r GROUP BY {key_list}) AS c{merged}"
    )
    with connection.cursor() as cursor:
        # The planner guesses 100 keys per jsonb_each_text row, so a read of a few thousand
        # rows looks expensive enough to JIT-compile: 20-30 ms of compiling for a query that
        # runs in a few. SET LOCAL lasts to the end of this statement's implicit transaction
        # (or of the caller's), and costs no round trip of its own.
        cursor.execute(f"SET LOCAL jit = off; {sql}", params)
        cursor.nextset()
        names = [column.name for column in cursor.description]
        result = []
        for values in cursor.fetchall():
            row = dict(zip(names, values, strict=True))
            for name in json_columns:
                row[name] = json.loads(row[name]) if row[name] else {}
            window = row.pop("w")
            result.append(((window, tuple(row.pop(key) for key in keys[1:])), row))
    return result


def agent_window(
    agent_ids: Iterable[int] | None,
    since: datetime,
    until: datetime,
    *,
    steps: bool = False,
    latency: bool = True,
    now: datetime | None = None,
) -> dict[int, WindowStats]:
    """{agent id: stats over [since, until)} for the given agents (None: every agent with rows).

    Agents without runs in the window are present with empty stats when named in agent_ids.
    steps=True also loads the LLM and tool step histograms (not needed for tiles);
    latency=False leaves out every histogram and the error types, for reads of counts and
    cost only (budgets, runs per minute). One query.
    """
    seconds = (until - _floor(since, MINUTE)).total_seconds()
    ids = None if agent_ids is None else list(agent_ids)
    stats = {pk: WindowStats(seconds=seconds) for pk in ids or []}
    tiles = window_tiles(since, until, now=now)
    rows = _grouped_rows(
        tiles, ("agent_id",), agent_ids=ids, json_columns=_json_columns(steps, latency)
    )
    for (agent_id,), row in rows:
        stats.setdefault(agent_id, WindowStats(seconds=seconds)).add(row)
    return stats


def agent_windows(
    agent_ids: Iterable[int],
    windows: dict[str, tuple[datetime, datetime]],
    *,
    latency: bool = True,
    counts_only: Iterable[str] = (),
    now: datetime | None = None,
) -> dict[str, dict[int, WindowStats]]:
    """{window name: {agent id: stats}} for several windows {name: (since, until)} at once:
    agent_window for each, in one query (SLO burn windows, budget periods, fleet tiles).
    The windows named in counts_only are read as with latency=False."""
    ids = list(agent_ids)
    out: dict[str, dict[int, WindowStats]] = {}
    tiles = {}
    for name, (since, until) in windows.items():
        seconds = (until - _floor(since, MINUTE)).total_seconds()
        out[name] = {pk: WindowStats(seconds=seconds) for pk in ids}
        tiles[name] = window_tiles(since, until, now=now)
    rows = _grouped_windows(
        tiles,
        ("agent_id",),
        agent_ids=ids,
        json_columns=_json_columns(False, latency),
        bare=counts_only,
    )
    for (name, (agent_id,)), row in rows:
        out[name][agent_id].add(row)
    return out


def fleet_totals(
    since: datetime,
    until: datetime,
    *,
    agent_ids: Iterable[int] | None = None,
    steps: bool = False,
    now: datetime | None = None,
) -> WindowStats:
    """All agents' (or the given agents') stats over [since, until), merged. One query."""
    total = WindowStats(seconds=(until - _floor(since, MINUTE)).total_seconds())
    for stats in agent_window(agent_ids, since, until, steps=steps, now=now).values():
        total.add(stats.__dict__)
    return total


def _steps(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    start = _floor(since, step if step <= DAY else DAY)
    return [
        start + i * step for i in range((until - start) // step + 1) if start + i * step < until
    ]


def _coarsest_for(step: timedelta) -> str:
    if step >= DAY and step % DAY == timedelta(0):
        return Rollup.Resolution.DAY
    if step >= HOUR and step % HOUR == timedelta(0):
        return Rollup.Resolution.HOUR
    return Rollup.Resolution.MINUTE


def default_step(since: datetime, until: datetime) -> timedelta:
    return RESOLUTION_SIZE[resolution_for(since, until)]


def series(
    agent_id: int | None,
    since: datetime,
    until: datetime,
    step: timedelta | None = None,
    *,
    steps: bool = False,
    latency: bool = True,
    now: datetime | None = None,
) -> list[tuple[datetime, WindowStats]]:
    """[(step start, stats)] for one agent (None: the whole fleet), every step present.

    step defaults to resolution_for's bucket size (1 min up to 6 h, 1 h up to 7 d, then 1 day);
    any multiple of a minute works. latency=False leaves out the histograms. One query.
    """
    step = step or default_step(since, until)
    starts = _steps(since, until, step)
    out = {start: WindowStats(seconds=step.total_seconds()) for start in starts}
    if not starts:
        return []
    tiles = window_tiles(starts[0], until, now=now, coarsest=_coarsest_for(step))
    ids = None if agent_id is None else [agent_id]
    rows = _grouped_rows(
        tiles,
        ("slot",),
        agent_ids=ids,
        json_columns=_json_columns(steps, latency),
        step=step,
        origin=starts[0],
    )
    for (slot,), row in rows:
        if slot in out:
            out[slot].add(row)
    return list(out.items())


def timeseries(
    agent_id: int | None,
    metric: str,
    since: datetime,
    until: datetime,
    step: timedelta | None = None,
    *,
    now: datetime | None = None,
) -> list[tuple[datetime, object]]:
    """[(step start, value)] of one WindowStats attribute: "runs", "success_rate", "p95",
    "cost_usd", "runs_per_minute", … (any field or property of WindowStats)."""
    if metric not in STAT_NAMES and not isinstance(getattr(WindowStats, metric, None), property):
        raise ValueError(f"unknown metric {metric!r}")
    steps = metric.startswith(("llm", "tool")) and metric.endswith("hist")
    return [
        (start, getattr(stats, metric))
        for start, stats in series(agent_id, since, until, step, steps=steps, now=now)
    ]


def breakdown(
    agent_id: int | None,
    dim_kind: str,
    since: datetime,
    until: datetime,
    *,
    steps: bool = False,
    latency: bool = True,
    now: datetime | None = None,
) -> dict[str, WindowStats]:
    """{dimension value: stats over [since, until)} for one agent (None: the fleet).

    dim_kind is a Rollup.Dim: "model", "team", "task_type", "version", "environment". The
    value "" holds runs that did not say. Model rows count the runs that called the model, and
    only that model's LLM calls, tokens, cost, errors and LLM latencies; the other kinds
    partition the runs, so their rows add up to the agent's total. One query.
    """
    if dim_kind not in Rollup.Dim.values or dim_kind == Rollup.Dim.ALL:
        raise ValueError(f"unknown dimension {dim_kind!r}")
    seconds = (until - _floor(since, MINUTE)).total_seconds()
    out: dict[str, WindowStats] = {}
    ids = None if agent_id is None else [agent_id]
    tiles = window_tiles(since, until, now=now)
    rows = _grouped_rows(
        tiles,
        ("dim_value",),
        dim_kind=dim_kind,
        agent_ids=ids,
        json_columns=_json_columns(steps, latency),
    )
    for (value,), row in rows:
        out.setdefault(value, WindowStats(seconds=seconds)).add(row)
    return out


def breakdowns(
    agent_id: int | None,
    dim_kinds: Iterable[str],
    since: datetime,
    until: datetime,
    *,
    now: datetime | None = None,
) -> dict[str, dict[str, WindowStats]]:
    """{dim kind: breakdown(agent_id, dim kind, since, until)} for several kinds, in one
    query (the agent page's tables by model, task type and version)."""
    kinds = list(dim_kinds)
    for dim_kind in kinds:
        if dim_kind not in Rollup.Dim.values or dim_kind == Rollup.Dim.ALL:
            raise ValueError(f"unknown dimension {dim_kind!r}")
    seconds = (until - _floor(since, MINUTE)).total_seconds()
    out: dict[str, dict[str, WindowStats]] = {dim_kind: {} for dim_kind in kinds}
    tiles = window_tiles(since, until, now=now)
    rows = _grouped_windows(
        dict.fromkeys(kinds, tiles),
        ("dim_value",),
        agent_ids=None if agent_id is None else [agent_id],
        json_columns=_json_columns(False),
        dim_kinds={dim_kind: dim_kind for dim_kind in kinds},
    )
    for (dim_kind, (value,)), row in rows:
        out[dim_kind].setdefault(value, WindowStats(seconds=seconds)).add(row)
    return out


def breakdown_series(
    agent_id: int | None,
    dim_kind: str,
    since: datetime,
    until: datetime,
    step: timedelta | None = None,
    *,
    latency: bool = True,
    now: datetime | None = None,
) -> dict[str, list[tuple[datetime, WindowStats]]]:
    """{dimension value: [(step start, stats)]}, every step present: "tokens by model".
    latency=False leaves out the histograms. One query."""
    if dim_kind not in Rollup.Dim.values or dim_kind == Rollup.Dim.ALL:
        raise ValueError(f"unknown dimension {dim_kind!r}")
    step = step or default_step(since, until)
    starts = _steps(since, until, step)
    if not starts:
        return {}
    out: dict[str, dict[datetime, WindowStats]] = {}
    tiles = window_tiles(starts[0], until, now=now, coarsest=_coarsest_for(step))
    ids = None if agent_id is None else [agent_id]
    rows = _grouped_rows(
        tiles,
        ("dim_value", "slot"),
        dim_kind=dim_kind,
        agent_ids=ids,
        json_columns=_json_columns(False, latency),
        step=step,
        origin=starts[0],
    )
    for (value, slot), row in rows:
        slots = out.get(value)
        if slots is None:
            slots = out[value] = {s: WindowStats(seconds=step.total_seconds()) for s in starts}
        if slot in slots:
            slots[slot].add(row)
    return {value: list(slots.items()) for value, slots in out.items()}


def percentiles(
    agent_id: int | None,
    since: datetime,
    until: datetime,
    qs: Iterable[float] = (0.5, 0.95, 0.99),
    *,
    kind: str = "run",
    now: datetime | None = None,
) -> list[float | None]:
    """Quantiles (ms) of run durations (kind "run") or LLM/tool step durations ("llm",
    "tool") for one agent (None: the fleet) over [since, until). One query."""
    ids = None if agent_id is None else [agent_id]
    stats = fleet_totals(since, until, agent_ids=ids, steps=kind != "run", now=now)
    return stats.quantiles(qs, kind)


# --- Folding ---------------------------------------------------------------------------------

# Tool errors worth retrying as they are: a timeout, a rate limit, an overloaded or unreachable
# service (429, 502, 503, 504). Matched against error.type, case-insensitively; everything
# else (bad arguments, not found, permission denied, validation) is permanent. The SQL fold
# uses the same pattern (PostgreSQL's ~* and Python's re agree on this plain alternation).
TRANSIENT_ERROR_PATTERN = (
    r"timeout|timed.?out|deadline|rate.?limit|throttl|too.?many.?requests|429|502|503|504"
    r"|unavailable|overload|temporar|connection|retry"
)
_TRANSIENT = re.compile(TRANSIENT_ERROR_PATTERN, re.IGNORECASE)

FOLD_WATERMARK = "fold"
RETENTION_WATERMARK = "retention"
# Candidate runs read per pass; a backlog is worked off over several passes.
FOLD_BATCH = 50_000
# Run.updated_at is the ingest process's clock when its transaction began; the fold never moves
# its watermark past the start of a transaction still open (it could commit rows stamped
# earlier) minus this margin, which covers the gap before BEGIN and clock skew.
WATERMARK_MARGIN = timedelta(seconds=2)
# A transaction open longer than this is not ingest (its statements time out sooner): ignoring
# it keeps one forgotten session from holding the watermark back.
OPEN_TRANSACTION_LIMIT = timedelta(minutes=5)
DIMENSIONS = ("team", "task_type", "version", "environment")
# The unit the fold rebuilds from raw runs and spans: one agent's runs that started in a slice
# of a minute. A pass rereads at most one slice per agent of the current traffic (not the whole
# minute so far), and each minute row is the merge of its slices. 60 / SLICE slices a minute.
SLICE = timedelta(seconds=10)
# Slices are kept this long for cheap refolds of late spans; after that a late run's minute
# has no slices left and is rebuilt whole from raw runs and spans, as before slices existed.
SLICE_KEEP = timedelta(hours=1)


def is_transient_error(error_type: str) -> bool:
    """Whether a tool error is worth retrying as is (see TRANSIENT_ERROR_PATTERN)."""
    return bool(error_type and _TRANSIENT.search(error_type))


def _use_sql() -> bool:
    """The set-based SQL fold on PostgreSQL; the ORM one elsewhere (SQLite, embedded mode)."""
    return connection.vendor == "postgresql"


def fold_pass(*, now: datetime | None = None, broadcast: bool = True) -> set[int]:
    """Recompute the slices (and their minutes) touched since the watermark. Returns the agent
    ids folded (empty when nothing changed or another pass holds the watermark).

    One transaction: the watermark row is claimed FOR UPDATE SKIP LOCKED (a second worker or a
    second beat finds it locked and returns at once), slices and minutes are rewritten whole,
    the watermark advances, and rollups_folded is sent after commit.
    """
    now = now or timezone.now()
    with transaction.atomic():
        watermark = claim_watermark(FOLD_WATERMARK, now)
        if watermark is None:
            return set()
        horizon = safe_horizon(now)
        changed = list(
            Run.objects.filter(updated_at__gte=watermark.position, agent__isnull=False)
            .order_by("updated_at")
            .values_list("id", "agent_id", "started_at", "updated_at")[:FOLD_BATCH]
        )
        # Everything stamped before the horizon was visible to the read above; later stamps
        # are read again next time (refolding is idempotent). A full page continues from its
        # last row.
        full = len(changed) == FOLD_BATCH
        position = max(min(changed[-1][3], horizon) if full else horizon, watermark.position)
        # Past span retention a minute can no longer be rebuilt whole (its spans are gone):
        # its rows are history and stay as they are.
        cutoff = now - span_retention()
        buckets = {b for b in _buckets_to_refold(changed) if b[1] >= _floor(cutoff, MINUTE)}
        if buckets:
            fold_slices(buckets)
            _mark_dirty(Rollup.Resolution.HOUR, {(a, _floor(m, HOUR)) for a, m in buckets}, now)
        RollupWatermark.objects.filter(pk=watermark.pk).update(position=position, updated_at=now)
        agent_ids = {agent_id for agent_id, _ in buckets}
        if agent_ids and broadcast:
            transaction.on_commit(lambda: rollups_folded.send(sender=None, agent_ids=agent_ids))
    return agent_ids


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def claim_watermark(name: str, now: datetime) -> RollupWatermark | None:
    """The watermark row, locked for this transaction; None when another pass holds it."""
    # A new watermark starts at the epoch: the first passes fold the whole history, a page
    # at a time.
    RollupWatermark.objects.get_or_create(
        name=name, defaults={"position": EPOCH, "updated_at": now}
    )
    return (
        RollupWatermark.objects.select_for_update(skip_locked=True).filter(name=name).first()
        if connection.features.has_select_for_update_skip_locked
        else RollupWatermark.objects.get(name=name)
    )


def changed_rows_pass(name: str, rows, batch: int, work, now: datetime) -> int:
    """One pass over the rows of `rows` (a queryset of a model with updated_at) whose updated_at
    moved since the `name` watermark: claim it (a second pass finds it locked and returns 0),
    read up to `batch` ids in updated_at order plus every row stamped like the last one (so
    a burst stamped at one instant never stalls the watermark), call work(ids) `batch` at a
    time, and move the watermark as far as is safe. Returns how many rows were read.

    Used by passes that rebuild something off the ingest path (search documents and run
    profiles from runs, score rollups from scores); the rollup fold has its own, since it
    also tracks where runs were counted.
    """
    with transaction.atomic():
        watermark = claim_watermark(name, now)
        if watermark is None:
            return 0
        horizon = safe_horizon(now)
        changed = list(
            rows.filter(updated_at__gte=watermark.position)
            .order_by("updated_at")
            .values_list("pk", "updated_at")[:batch]
        )
        if len(changed) == batch:
            # A full batch: finish every row stamped like the last one, then continue after it.
            last = changed[-1][1]
            read = {pk for pk, _ in changed}
            changed += [
                row
                for row in rows.filter(updated_at=last).values_list("pk", "updated_at")
                if row[0] not in read
            ]
            position = min(last + timedelta(microseconds=1), horizon)
        else:
            position = horizon
        ids = [pk for pk, _ in changed]
        for start in range(0, len(ids), batch):
            work(ids[start : start + batch])
        RollupWatermark.objects.filter(pk=watermark.pk).update(
            position=max(position, watermark.position), updated_at=now
        )
    return len(ids)


def safe_horizon(now: datetime) -> datetime:
    """How far the watermark may move: no uncommitted run can carry an earlier updated_at."""
    horizon = now
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT min(xact_start) FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()
                  AND xact_start > now() - %s
                """,
                [OPEN_TRANSACTION_LIMIT],
            )
            oldest = cursor.fetchone()[0]
        if oldest is not None:
            horizon = min(horizon, oldest)
    return horizon - WATERMARK_MARGIN


def _buckets_to_refold(changed: list[tuple]) -> set[tuple[int, datetime]]:
    """The (agent, slice) buckets of the changed runs, and the ones they were counted in.

    Records where each run is counted now (FoldedRun), so that a later move is refolded too.
    """
    if not changed:
        return set()
    placed = {pk: (agent_id, _floor(started_at, SLICE)) for pk, agent_id, started_at, _ in changed}
    buckets = set(placed.values())
    unmoved = set()
    for pk, agent_id, start in FoldedRun.objects.filter(run_id__in=list(placed)).values_list(
        "run_id", "agent_id", "slice_start"
    ):
        if (agent_id, start) != placed[pk]:
            buckets.add((agent_id, start))
        else:
            unmoved.add(pk)
    # Most changed runs got spans in the slice they were counted in: nothing to record.
    FoldedRun.objects.bulk_create(
        [
            FoldedRun(run_id=pk, agent_id=a, slice_start=s)
            for pk, (a, s) in sorted(placed.items())
            if pk not in unmoved
        ],
        update_conflicts=True,
        unique_fields=["run_id"],
        update_fields=["agent_id", "slice_start"],
    )
    return buckets


def _mark_dirty(resolution: str, buckets: set[tuple[int, datetime]], now: datetime) -> None:
    # DO UPDATE (not DO NOTHING) takes the marker's row lock: a coarse pass that claimed the
    # marker before our rows commit is waited for, and the marker then comes back for the next.
    RollupDirty.objects.bulk_create(
        [
            RollupDirty(resolution=resolution, bucket_start=start, agent_id=agent_id, marked_at=now)
            for agent_id, start in sorted(buckets)
        ],
        update_conflicts=True,
        unique_fields=["resolution", "bucket_start", "agent"],
        update_fields=["marked_at"],
    )


def fold_buckets(buckets: Iterable[tuple[int, datetime]]) -> None:
    """Recompute the given (agent id, minute) buckets from raw runs and spans, whole."""
    minutes = {(agent_id, _floor(minute, MINUTE)) for agent_id, minute in buckets}
    fold_slices(_all_slices(minutes))


def _all_slices(minutes: Iterable[tuple[int, datetime]]) -> set[tuple[int, datetime]]:
    return {(a, m + i * SLICE) for a, m in minutes for i in range(MINUTE // SLICE)}


def fold_slices(slices: Iterable[tuple[int, datetime]]) -> None:
    """Recompute the given (agent id, slice) buckets from raw runs and spans, whole, then the
    minute rows they belong to from their slices."""
    slices = {(agent_id, _floor(start, SLICE)) for agent_id, start in slices}
    if not slices:
        return
    minutes = {(a, _floor(s, MINUTE)) for a, s in slices}
    with transaction.atomic():
        # A minute without slice rows was folded whole before slices existed, or its slices
        # were pruned: its other slices must be rebuilt too, or the merge would drop them.
        slices |= _all_slices(minutes - _minutes_with_slices(minutes))
        slices = sorted(slices)
        _delete_rows(RollupSlice.objects.all(), slices)
        if _use_sql():
            _tune_fold_transaction()
            _fold_sql(slices)
        else:
            RollupSlice.objects.bulk_create(_fold_python(slices), batch_size=500)
        _merge_minutes(sorted(minutes))


def _tune_fold_transaction() -> None:
    """Settings for the rest of the fold's transaction. The fold statements' cost estimates
    pass jit_above_cost, and compiling them costs more than running them (about 100 ms a
    pass); their sorts of a slice's spans need more than the default work_mem in memory."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL work_mem = '32MB'")


def _bucket_condition(buckets: list[tuple[int, datetime]], size: timedelta) -> Q:
    condition = Q()
    for agent_id, start in buckets:
        condition |= Q(agent_id=agent_id, bucket_start__gte=start, bucket_start__lt=start + size)
    return condition


def _minutes_with_slices(minutes: set[tuple[int, datetime]]) -> set[tuple[int, datetime]]:
    found = set()
    for chunk in _chunks(sorted(minutes), 500):
        rows = RollupSlice.objects.filter(_bucket_condition(chunk, MINUTE), dim_kind="")
        found |= {(a, _floor(s, MINUTE)) for a, s in rows.values_list("agent_id", "bucket_start")}
    return found


def _delete_rows(rows, buckets: list[tuple[int, datetime]]) -> None:
    for chunk in _chunks(buckets, 500):
        condition = Q()
        for agent_id, start in chunk:
            condition |= Q(agent_id=agent_id, bucket_start=start)
        rows.filter(condition, dim_kind__in=Rollup.Dim.values).delete()


def _merge_minutes(minutes: list[tuple[int, datetime]]) -> None:
    """Rewrite the given (agent, minute) rows as the merge of their slices."""
    # In Python on PostgreSQL too: merging the histograms key by key in SQL (jsonb_each, group,
    # jsonb_object_agg) measured two to three times slower than reading the rows and adding.
    _delete_rows(Rollup.objects.filter(resolution=Rollup.Resolution.MINUTE), minutes)
    merged: dict[tuple, dict] = {}
    for chunk in _chunks(minutes, 500):
        rows = RollupSlice.objects.filter(_bucket_condition(chunk, MINUTE)).order_by()
        for row in rows.values("project_id", "agent_id", "bucket_start", "dim_kind",
                               "dim_value", *_columns(True)):  # fmt: skip
            minute = _floor(row["bucket_start"], MINUTE)
            key = (row["agent_id"], minute, row["dim_kind"], row["dim_value"])
            if key not in merged:
                merged[key] = _empty_row(row["project_id"], *key)
            _add_row(merged[key], row)
    now = timezone.now()
    rows = [
        {
            **row,
            **{h: histogram.to_json(row[h]) for h in HISTOGRAMS},
            "resolution": Rollup.Resolution.MINUTE,
            "computed_at": now,
        }
        for row in merged.values()
    ]
    if _use_sql():
        _insert_minutes_sql(rows)
    else:
        Rollup.objects.bulk_create([Rollup(**row) for row in rows], batch_size=500)


MINUTE_COLUMNS = (
    "resolution", "bucket_start", "project_id", "agent_id", "dim_kind", "dim_value", *COUNTERS,
    "cost_usd", "duration_ms_sum", "errors_by_type", *HISTOGRAMS, "computed_at",
)  # fmt: skip
# One JSON document of all the rows: bulk_create's per-value quoting of the histograms cost
# about three times as much CPU in the worker (measured with 300 rows of ~130 buckets).
INSERT_MINUTES_SQL = f"""
INSERT INTO cockpit_rollup ({", ".join(MINUTE_COLUMNS)})
SELECT {", ".join(MINUTE_COLUMNS)} FROM jsonb_populate_recordset(NULL::cockpit_rollup, %s::jsonb)
"""  # noqa: S608 - only fixed column names go into the text


def _insert_minutes_sql(rows: list[dict]) -> None:
    payload = json.dumps(
        [{name: row[name] for name in MINUTE_COLUMNS} for row in rows], cls=DjangoJSONEncoder
    )
    with connection.cursor() as cursor:
        cursor.execute(INSERT_MINUTES_SQL, [payload])


def prune_slices(*, now: datetime | None = None) -> int:
    """Delete slice rows of minutes older than SLICE_KEEP. Returns the number deleted.

    Under the fold's watermark, so no pass merges a minute whose slices are half deleted; when
    a pass holds it, pruning waits for the next call.
    """
    now = now or timezone.now()
    with transaction.atomic():
        if claim_watermark(FOLD_WATERMARK, now) is None:
            return 0
        cutoff = _floor(now - SLICE_KEEP, MINUTE)
        return RollupSlice.objects.filter(bucket_start__lt=cutoff).delete()[0]


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _outcome_of(outcome: str, status: str) -> str:
    """success | failure | escalated | abandoned | unknown (see Rollup's outcome columns)."""
    if outcome:
        return outcome
    return {"ok": "success", "error": "failure"}.get(status, "unknown")


OUTCOME_COLUMN = {
    "success": "successes",
    "failure": "failures",
    "escalated": "escalated",
    "abandoned": "abandoned",
    "unknown": "unknown",
}


def _empty_row(project_id, agent_id, minute, dim_kind, dim_value) -> dict:
    row = dict.fromkeys(COUNTERS, 0)
    row.update(
        project_id=project_id,
        agent_id=agent_id,
        bucket_start=minute,
        dim_kind=dim_kind,
        dim_value=dim_value,
        cost_usd=Decimal(0),
        duration_ms_sum=0.0,
        errors_by_type={},
        run_hist={},
        llm_hist={},
        tool_hist={},
    )
    return row


def _count_run(row: dict, run: dict) -> None:
    row["runs"] += 1
    row[OUTCOME_COLUMN.get(_outcome_of(run["outcome"], run["status"]), "unknown")] += 1
    row["error_runs"] += run["status"] == Run.Status.ERROR
    row["duration_ms_sum"] += run["duration_ms"]
    index = histogram.bucket_of(run["duration_ms"])
    row["run_hist"][index] = row["run_hist"].get(index, 0) + 1


def _count_error(row: dict, span: dict) -> None:
    row["error_spans"] += 1
    row["errors_by_type"][span["error_type"]] = row["errors_by_type"].get(span["error_type"], 0) + 1
    if span["kind"] == Span.Kind.TOOL:
        if is_transient_error(span["error_type"]):
            row["tool_errors_transient"] += 1
        else:
            row["tool_errors_permanent"] += 1


def _count_step(row: dict, span: dict) -> None:
    name = f"{span['kind']}_hist"
    index = histogram.bucket_of(span["duration_ms"])
    row[name][index] = row[name].get(index, 0) + 1


RUN_FIELDS = (
    "id", "agent_id", "started_at", "outcome", "status", "duration_ms", "span_count",
    "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cost_usd", "cost_known", "team", "task_type", "version",
)  # fmt: skip
RUN_SUMS = (
    "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens",
)  # fmt: skip
SPAN_FIELDS = (
    "run_id", "kind", "status", "error_type", "model", "duration_ms", "input_tokens",
    "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "cost_known",
)  # fmt: skip


def _fold_python(buckets: list[tuple[int, datetime]]) -> list[RollupSlice]:
    """The portable fold of (agent, slice) buckets: the same rows as _fold_sql, from ORM reads."""
    agent_rows = Agent.objects.filter(pk__in={a for a, _ in buckets})
    agents, environments = {}, {}
    for pk, project_id, environment in agent_rows.values_list("pk", "project_id", "environment"):
        agents[pk], environments[pk] = project_id, environment
    runs = []
    for chunk in _chunks(buckets, 200):
        condition = Q()
        for agent_id, start in chunk:
            condition |= Q(agent_id=agent_id, started_at__gte=start, started_at__lt=start + SLICE)
        runs += list(Run.objects.filter(condition).order_by().values(*RUN_FIELDS))
    runs_by_id = {run["id"]: run for run in runs}
    rows: dict[tuple, dict] = {}

    def row_for(run, dim_kind, dim_value):
        key = (run["agent_id"], _floor(run["started_at"], SLICE), dim_kind, dim_value)
        if key not in rows:
            rows[key] = _empty_row(agents[run["agent_id"]], *key)
        return rows[key]

    for run in runs:
        run["environment"] = environments.get(run["agent_id"], "")
        for dim_kind, dim_value in [("", ""), *((d, run[d]) for d in DIMENSIONS)]:
            row = row_for(run, dim_kind, dim_value)
            _count_run(row, run)
            row["spans"] += run["span_count"]
            for name in RUN_SUMS:
                row[name] += run[name]
            row["cost_usd"] += run["cost_usd"]
            row["cost_unknown_runs"] += not run["cost_known"]
    model_runs: dict[tuple, set[int]] = {}
    unknown_cost_runs: dict[tuple, set[int]] = {}
    for chunk in _chunks(list(runs_by_id), 1000):
        spans = Span.objects.filter(run_id__in=chunk).filter(
            Q(kind__in=[Span.Kind.LLM, Span.Kind.TOOL]) | Q(status=Span.Status.ERROR)
        )
        for span in spans.order_by().values(*SPAN_FIELDS):
            run = runs_by_id[span["run_id"]]
            total = row_for(run, "", "")
            if span["status"] == Span.Status.ERROR:
                _count_error(total, span)
            if span["kind"] in (Span.Kind.LLM, Span.Kind.TOOL):
                _count_step(total, span)
            if span["kind"] != Span.Kind.LLM:
                continue
            row = row_for(run, Rollup.Dim.MODEL, span["model"])
            key = (run["agent_id"], row["bucket_start"], span["model"])
            model_runs.setdefault(key, set()).add(run["id"])
            row["spans"] += 1
            row["llm_calls"] += 1
            for name in RUN_SUMS[2:]:
                row[name] += span[name]
            row["cost_usd"] += span["cost_usd"] or 0
            if not span["cost_known"]:
                unknown_cost_runs.setdefault(key, set()).add(run["id"])
            if span["status"] == Span.Status.ERROR:
                _count_error(row, span)
            _count_step(row, span)
    for (agent_id, minute, model), run_ids in model_runs.items():
        row = rows[(agent_id, minute, Rollup.Dim.MODEL, model)]
        for run_id in run_ids:
            _count_run(row, runs_by_id[run_id])
        row["cost_unknown_runs"] = len(unknown_cost_runs.get((agent_id, minute, model), ()))
    now = timezone.now()
    return [
        RollupSlice(
            computed_at=now, **{**row, **{h: histogram.to_json(row[h]) for h in HISTOGRAMS}}
        )
        for row in rows.values()
    ]


def _bucket_sql(column: str) -> str:
    """cockpit.histogram.bucket_of in SQL."""
    return (
        f"CASE WHEN {column} <= {histogram.MIN_VALUE} THEN {histogram.ZERO_BUCKET} "
        f"ELSE ceil(ln({column}) / ln({histogram.GAMMA}))::int END"
    )


ROLLUP_INSERT_COLUMNS = (
    "runs", "successes", "failures", "escalated", "abandoned", "unknown", "error_runs",
    "spans", "llm_calls", "tool_calls", "input_tokens", "output_tokens", "cache_read_tokens",
    "cache_write_tokens", "cost_usd", "cost_unknown_runs", "duration_ms_sum",
)  # fmt: skip

# One statement rewrites every slice of the pass (`minute` below is the slice's start): the runs
# of each (agent, slice), exploded
# into one row per dimension; their LLM spans grouped by model; errors and step durations from
# the spans. Histograms are built as {bucket: count} with jsonb_object_agg.
FOLD_SQL = f"""
WITH b AS (
    SELECT DISTINCT agent_id, minute
    FROM unnest(%(agents)s::int8[], %(minutes)s::timestamptz[]) AS b(agent_id, minute)
),
r AS (
    SELECT run.id AS run_id, a.project_id, run.agent_id, b.minute, run.team, run.task_type,
        run.version, a.environment, run.outcome, run.status,
        CASE WHEN run.outcome <> '' THEN run.outcome
             WHEN run.status = 'ok' THEN 'success'
             WHEN run.status = 'error' THEN 'failure' ELSE 'unknown' END AS result,
        run.duration_ms, run.span_count, run.llm_calls, run.tool_calls, run.input_tokens,
        run.output_tokens, run.cache_read_tokens, run.cache_write_tokens, run.cost_usd,
        run.cost_known, {_bucket_sql("run.duration_ms")} AS bucket
    FROM b
    JOIN traces_agent a ON a.id = b.agent_id
    JOIN traces_run run ON run.agent_id = b.agent_id
        AND run.started_at >= b.minute AND run.started_at < b.minute + %(slice)s
),
d AS (
    SELECT r.*, dims.dim_kind, dims.dim_value
    FROM r CROSS JOIN LATERAL (VALUES ('', ''), ('team', r.team), ('task_type', r.task_type),
        ('version', r.version), ('environment', r.environment)) AS dims(dim_kind, dim_value)
),
s AS (
    SELECT r.run_id, r.agent_id, r.minute, sp.kind, sp.status, sp.error_type, sp.model,
        sp.input_tokens, sp.output_tokens, sp.cache_read_tokens, sp.cache_write_tokens,
        sp.cost_usd, sp.cost_known, {_bucket_sql("sp.duration_ms")} AS bucket,
        (sp.error_type ~* %(transient)s) AS transient
    -- Each run's spans through span_unique_in_run: the planner underestimates r and would hash
    -- join a scan of the whole span table. OFFSET 0 keeps the LATERAL subquery a nested loop.
    FROM r CROSS JOIN LATERAL (
        SELECT * FROM traces_span sp
        WHERE sp.run_id = r.run_id AND (sp.kind IN ('llm', 'tool') OR sp.status = 'error')
        OFFSET 0
    ) AS sp
),
sd AS (
    SELECT s.*, dims.dim_kind, dims.dim_value
    FROM s CROSS JOIN LATERAL (VALUES ('', ''), ('model', s.model)) AS dims(dim_kind, dim_value)
    WHERE dims.dim_kind = '' OR s.kind = 'llm'
),
rm AS (
    SELECT run_id, model, count(*) AS llm_calls, sum(input_tokens) AS input_tokens,
        sum(output_tokens) AS output_tokens, sum(cache_read_tokens) AS cache_read_tokens,
        sum(cache_write_tokens) AS cache_write_tokens, coalesce(sum(cost_usd), 0) AS cost_usd,
        bool_and(cost_known) AS cost_known
    FROM s WHERE kind = 'llm' GROUP BY run_id, model
),
run_rows AS (
    SELECT agent_id, minute, dim_kind, dim_value, min(project_id) AS project_id,
        count(*) AS runs,
        count(*) FILTER (WHERE result = 'success') AS successes,
        count(*) FILTER (WHERE result = 'failure') AS failures,
        count(*) FILTER (WHERE result = 'escalated') AS escalated,
        count(*) FILTER (WHERE result = 'abandoned') AS abandoned,
        count(*) FILTER (WHERE result = 'unknown') AS unknown,
        count(*) FILTER (WHERE status = 'error') AS error_runs,
        sum(span_count) AS spans, sum(llm_calls) AS llm_calls, sum(tool_calls) AS tool_calls,
        sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
        sum(cache_read_tokens) AS cache_read_tokens,
        sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
        count(*) FILTER (WHERE NOT cost_known) AS cost_unknown_runs,
        sum(duration_ms) AS duration_ms_sum
    FROM d GROUP BY agent_id, minute, dim_kind, dim_value
    UNION ALL
    SELECT r.agent_id, r.minute, 'model', rm.model, min(r.project_id),
        count(*),
        count(*) FILTER (WHERE r.result = 'success'),
        count(*) FILTER (WHERE r.result = 'failure'),
        count(*) FILTER (WHERE r.result = 'escalated'),
        count(*) FILTER (WHERE r.result = 'abandoned'),
        count(*) FILTER (WHERE r.result = 'unknown'),
        count(*) FILTER (WHERE r.status = 'error'),
        sum(rm.llm_calls), sum(rm.llm_calls), 0,
        sum(rm.input_tokens), sum(rm.output_tokens), sum(rm.cache_read_tokens),
        sum(rm.cache_write_tokens), sum(rm.cost_usd),
        count(*) FILTER (WHERE NOT rm.cost_known),
        sum(r.duration_ms)
    FROM rm JOIN r ON r.run_id = rm.run_id GROUP BY r.agent_id, r.minute, rm.model
),
run_hists AS (
    SELECT agent_id, minute, dim_kind, dim_value, jsonb_object_agg(bucket, n) AS run_hist
    FROM (
        SELECT agent_id, minute, dim_kind, dim_value, bucket, count(*) AS n FROM d
        GROUP BY agent_id, minute, dim_kind, dim_value, bucket
        UNION ALL
        SELECT r.agent_id, r.minute, 'model', rm.model, r.bucket, count(*)
        FROM rm JOIN r ON r.run_id = rm.run_id GROUP BY r.agent_id, r.minute, rm.model, r.bucket
    ) AS x
    GROUP BY agent_id, minute, dim_kind, dim_value
),
step_hists AS (
    SELECT agent_id, minute, dim_kind, dim_value,
        jsonb_object_agg(bucket, n) FILTER (WHERE kind = 'llm') AS llm_hist,
        jsonb_object_agg(bucket, n) FILTER (WHERE kind = 'tool') AS tool_hist
    FROM (
        SELECT agent_id, minute, dim_kind, dim_value, kind, bucket, count(*) AS n FROM sd
        WHERE kind IN ('llm', 'tool') GROUP BY agent_id, minute, dim_kind, dim_value, kind, bucket
    ) AS x
    GROUP BY agent_id, minute, dim_kind, dim_value
),
errors AS (
    SELECT agent_id, minute, dim_kind, dim_value, sum(n) AS error_spans,
        jsonb_object_agg(error_type, n) AS errors_by_type,
        sum(transient_tool) AS tool_errors_transient, sum(permanent_tool) AS tool_errors_permanent
    FROM (
        SELECT agent_id, minute, dim_kind, dim_value, error_type, count(*) AS n,
            count(*) FILTER (WHERE kind = 'tool' AND transient) AS transient_tool,
            count(*) FILTER (WHERE kind = 'tool' AND NOT transient) AS permanent_tool
        FROM sd WHERE status = 'error' GROUP BY agent_id, minute, dim_kind, dim_value, error_type
    ) AS x
    GROUP BY agent_id, minute, dim_kind, dim_value
)
INSERT INTO cockpit_rollupslice (bucket_start, project_id, agent_id, dim_kind, dim_value,
    {", ".join(ROLLUP_INSERT_COLUMNS)}, error_spans, errors_by_type, tool_errors_transient,
    tool_errors_permanent, run_hist, llm_hist, tool_hist, computed_at)
SELECT rr.minute, rr.project_id, rr.agent_id, rr.dim_kind, rr.dim_value,
    {", ".join(f"rr.{c}" for c in ROLLUP_INSERT_COLUMNS)},
    coalesce(e.error_spans, 0), coalesce(e.errors_by_type, '{{}}'),
    coalesce(e.tool_errors_transient, 0), coalesce(e.tool_errors_permanent, 0),
    coalesce(h.run_hist, '{{}}'), coalesce(sh.llm_hist, '{{}}'), coalesce(sh.tool_hist, '{{}}'),
    %(now)s
FROM run_rows rr
LEFT JOIN run_hists h USING (agent_id, minute, dim_kind, dim_value)
LEFT JOIN step_hists sh USING (agent_id, minute, dim_kind, dim_value)
LEFT JOIN errors e USING (agent_id, minute, dim_kind, dim_value)
"""  # noqa: S608 - only fixed column names and numeric constants go into the text


def _fold_sql(buckets: list[tuple[int, datetime]]) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            FOLD_SQL,
            {
                "agents": [a for a, _ in buckets],
                "minutes": [m for _, m in buckets],
                "transient": TRANSIENT_ERROR_PATTERN,
                "slice": SLICE,
                "now": timezone.now(),
            },
        )


# --- Hours and days ---------------------------------------------------------------------------

COARSER = {Rollup.Resolution.HOUR: Rollup.Resolution.DAY, Rollup.Resolution.DAY: None}
FINER = {
    Rollup.Resolution.HOUR: Rollup.Resolution.MINUTE,
    Rollup.Resolution.DAY: Rollup.Resolution.HOUR,
}


def coarse_pass(*, limit: int = 500, now: datetime | None = None) -> int:
    """Recompute dirty hour rows from minutes, then dirty day rows from hours. Returns the
    number of buckets rewritten."""
    now = now or timezone.now()
    done = 0
    for resolution in (Rollup.Resolution.HOUR, Rollup.Resolution.DAY):
        with transaction.atomic():
            claimed = _claim_dirty(resolution, limit)
            for agent_id, start in claimed:
                _rebuild_coarse(resolution, agent_id, start, now)
            coarser = COARSER[resolution]
            if coarser and claimed:
                size = RESOLUTION_SIZE[coarser]
                _mark_dirty(coarser, {(a, _floor(s, size)) for a, s in claimed}, now)
            done += len(claimed)
    return done


def _claim_dirty(resolution: str, limit: int) -> list[tuple[int, datetime]]:
    """Take up to `limit` dirty markers; the caller's transaction deletes them on commit."""
    markers = RollupDirty.objects.filter(resolution=resolution).order_by("bucket_start")
    if connection.features.has_select_for_update_skip_locked:
        markers = markers.select_for_update(skip_locked=True)
    claimed = list(markers.values_list("pk", "agent_id", "bucket_start")[:limit])
    RollupDirty.objects.filter(pk__in=[pk for pk, _, _ in claimed]).delete()
    return [(agent_id, start) for _, agent_id, start in claimed]


def _rebuild_coarse(resolution: str, agent_id: int, start: datetime, now: datetime) -> None:
    """Rewrite one agent's hour (or day) rows as the sum of its minute (or hour) rows."""
    end = start + RESOLUTION_SIZE[resolution]
    finer = Rollup.objects.filter(
        resolution=FINER[resolution],
        dim_kind__in=Rollup.Dim.values,
        agent_id=agent_id,
        bucket_start__gte=start,
        bucket_start__lt=end,
    )
    merged: dict[tuple[str, str], dict] = {}
    for row in finer.order_by().values("project_id", "dim_kind", "dim_value", *_columns(True)):
        key = (row["dim_kind"], row["dim_value"])
        if key not in merged:
            merged[key] = _empty_row(row["project_id"], agent_id, start, *key)
        _add_row(merged[key], row)
    Rollup.objects.filter(
        resolution=resolution,
        dim_kind__in=Rollup.Dim.values,
        agent_id=agent_id,
        bucket_start=start,
    ).delete()
    Rollup.objects.bulk_create(
        [
            Rollup(
                resolution=resolution,
                computed_at=now,
                **{**row, **{h: histogram.to_json(row[h]) for h in HISTOGRAMS}},
            )
            for row in merged.values()
        ]
    )


def _add_row(target: dict, row: dict) -> None:
    for name in COUNTERS:
        target[name] += row[name]
    target["cost_usd"] += row["cost_usd"]
    target["duration_ms_sum"] += row["duration_ms_sum"]
    for name in ("errors_by_type", *HISTOGRAMS):
        merged = target[name]
        for key, n in row[name].items():
            key = key if name == "errors_by_type" else int(key)
            merged[key] = merged.get(key, 0) + n


# --- Retention --------------------------------------------------------------------------------


def span_retention() -> timedelta:
    return timedelta(days=getattr(settings, "COCKPIT_SPAN_RETENTION_DAYS", 30))


def delete_expired_spans(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Delete the spans of runs that started before the retention cutoff, `batch_size` runs
    per transaction, oldest first. Returns how many spans were deleted.

    Spans have no index on their own start (every index costs ingest), so retention walks runs
    by start time (run_recent_idx) and deletes their spans by run (span_unique_in_run). A watermark
    remembers how far it got, since the runs themselves stay.
    """
    now = now or timezone.now()
    cutoff = now - span_retention()
    deleted = 0
    while True:
        with transaction.atomic():
            watermark = claim_watermark(RETENTION_WATERMARK, now)
            if watermark is None:
                return deleted
            runs = list(
                Run.objects.filter(started_at__gte=watermark.position, started_at__lt=cutoff)
                .order_by("started_at")
                .values_list("id", "started_at")[:batch_size]
            )
            if not runs:
                return deleted
            run_ids = [pk for pk, _ in runs]
            deleted += Span.objects.filter(run_id__in=run_ids).delete()[0]
            # The content is gone, so a search must no longer find it.
            RunSearch.objects.filter(run_id__in=run_ids).delete()
            RollupWatermark.objects.filter(pk=watermark.pk).update(
                position=runs[-1][1], updated_at=now
            )
        if len(runs) < batch_size:
            return deleted
