"""Plotly figures for the agent page and the cost explorer, built on the server.

Figures are plain Plotly figure dicts serialised with json.dumps: building graph_objects
validates every point (about 25 ms per 1,440-point figure), and even plotly.io.to_json's
encoder spends ~30 ms on the agent page's five figures (it re-parses what it wrote to clean
it), against ~1 ms for json.dumps. The dicts use only attributes plotly.js documents, and only
JSON types, datetimes (ISO 8601, as plotly writes them) and Decimals.

Plotly renders a small HTML subset in trace names and annotations, so every agent-supplied
string that becomes a label (model names, versions) is HTML-escaped here; the JSON embedded in
the page is escaped for a <script type="application/json"> block by `figure_script`.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

# Colours of the cockpit stylesheet, so charts and tiles agree.
BLUE = "#0284c7"
GREEN = "#15803d"
RED = "#b91c1c"
AMBER = "#b45309"
SLATE = "#64748b"
PALETTE = ["#0284c7", "#8b5cf6", "#14b8a6", "#f59e0b", "#ec4899", "#64748b", "#84cc16", "#ef4444"]

# What plotly.js needs escaped inside a <script> element (same as Django's json_script).
_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


@dataclass(frozen=True)
class Point:
    """One time bucket of an agent's (or the fleet's) traffic, as the charts need it."""

    at: datetime
    runs: int
    succeeded: int
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    cost_usd: float

    @property
    def success_pct(self) -> float | None:
        return 100 * self.succeeded / self.runs if self.runs else None

    @property
    def error_pct(self) -> float | None:
        return 100 * self.errors / self.runs if self.runs else None


@dataclass(frozen=True)
class Marker:
    """A release drawn as a vertical line."""

    at: datetime
    label: str


def label(text: str) -> str:
    """An agent-supplied string made safe for Plotly's HTML-subset labels."""
    return html.escape(text or "(none)", quote=False)


def base_layout(y_title: str, *, markers: Sequence[Marker] = (), y_suffix: str = "") -> dict:
    layout = {
        "height": 240,
        "margin": {"l": 52, "r": 12, "t": 16, "b": 32},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 11},
        "hovermode": "x unified",
        "showlegend": True,
        # Top right, so release labels (top, at their line) rarely sit on it.
        "legend": {"orientation": "h", "y": 1.14, "x": 1, "xanchor": "right", "font": {"size": 11}},
        "xaxis": {"type": "date", "gridcolor": "#eef2f6", "linecolor": "#cbd5e1"},
        "yaxis": {
            "title": {"text": y_title, "font": {"size": 11, "color": SLATE}},
            "gridcolor": "#eef2f6",
            "zerolinecolor": "#e2e8f0",
            "rangemode": "tozero",
            "ticksuffix": y_suffix,
        },
    }
    if markers:
        layout["shapes"] = [
            {
                "type": "line",
                "xref": "x",
                "yref": "paper",
                "x0": marker.at,
                "x1": marker.at,
                "y0": 0,
                "y1": 1,
                "line": {"color": AMBER, "width": 1.5, "dash": "dot"},
            }
            for marker in markers
        ]
        layout["annotations"] = [
            {
                "x": marker.at,
                "xref": "x",
                "y": 1,
                "yref": "paper",
                "yanchor": "top",
                "xanchor": "left",
                "text": label(marker.label),
                "showarrow": False,
                "font": {"size": 10, "color": AMBER},
                "bgcolor": "rgba(255,255,255,0.85)",
            }
            for marker in markers
        ]
    return layout


def line(name: str, xs: list, ys: list, color: str, **extra) -> dict:
    trace = {
        "type": "scatter",
        "mode": "lines",
        "name": label(name),
        "x": xs,
        "y": ys,
        "line": {"color": color, "width": 1.8, "shape": "linear"},
        "connectgaps": False,
    }
    trace.update(extra)
    return trace


def agent_figures(
    points: Sequence[Point],
    tokens_by_model: dict[str, list[tuple[datetime, int]]],
    markers: Sequence[Marker],
    *,
    bucket_minutes: int,
    x_range: tuple[datetime, datetime] | None = None,
) -> dict[str, dict]:
    """The agent page's charts, keyed by the id of their <script> data block."""
    xs = [point.at for point in points]
    per_minute = 1 / bucket_minutes
    per_hour = 60 / bucket_minutes
    figures = {
        "chart-throughput": {
            "data": [
                line(
                    "runs/min",
                    xs,
                    [round(point.runs * per_minute, 3) for point in points],
                    BLUE,
                    fill="tozeroy",
                    fillcolor="rgba(2,132,199,0.10)",
                )
            ],
            "layout": base_layout("runs / min", markers=markers),
        },
        "chart-outcomes": {
            "data": [
                line("success", xs, [_round(point.success_pct) for point in points], GREEN),
                line("errors", xs, [_round(point.error_pct) for point in points], RED),
            ],
            "layout": _percent_layout(markers),
        },
        "chart-latency": {
            "data": [
                line("p50", xs, [_round(point.p50_ms) for point in points], BLUE),
                line("p95", xs, [_round(point.p95_ms) for point in points], AMBER),
                line("p99", xs, [_round(point.p99_ms) for point in points], RED),
            ],
            "layout": base_layout("ms", markers=markers),
        },
        "chart-cost": {
            "data": [
                line(
                    "$ / hour",
                    xs,
                    [round(point.cost_usd * per_hour, 4) for point in points],
                    "#8b5cf6",
                    fill="tozeroy",
                    fillcolor="rgba(139,92,246,0.10)",
                )
            ],
            "layout": base_layout("USD / hour", markers=markers),
        },
        "chart-tokens": {
            "data": [
                {
                    "type": "bar",
                    "name": label(model),
                    "x": [at for at, _ in series],
                    "y": [tokens for _, tokens in series],
                    "marker": {"color": PALETTE[i % len(PALETTE)]},
                }
                for i, (model, series) in enumerate(sorted(tokens_by_model.items()))
            ],
            "layout": {**base_layout("tokens", markers=markers), "barmode": "stack"},
        },
    }
    if x_range:
        # Every chart spans the whole window, even where (or when) nothing ran.
        for figure in figures.values():
            figure["layout"]["xaxis"]["range"] = list(x_range)
    return figures


def daily_spend_figure(
    days: Sequence[tuple[datetime, float]], forecast_line: Sequence[tuple[datetime, float]] = ()
) -> dict:
    """The cost explorer's spend per day, with the trend the forecast follows."""
    data = [
        {
            "type": "bar",
            "name": "spend",
            "x": [day for day, _ in days],
            "y": [round(amount, 4) for _, amount in days],
            "marker": {"color": BLUE},
        }
    ]
    if forecast_line:
        data.append(
            line(
                "trend",
                [day for day, _ in forecast_line],
                [round(amount, 4) for _, amount in forecast_line],
                AMBER,
                line={"color": AMBER, "width": 2, "dash": "dash"},
            )
        )
    layout = base_layout("USD / day")
    layout["hovermode"] = "x"
    layout["yaxis"]["tickprefix"] = "$"
    return {"data": data, "layout": layout}


def _percent_layout(markers: Sequence[Marker]) -> dict:
    layout = base_layout("% of runs", markers=markers, y_suffix="%")
    layout["yaxis"]["range"] = [0, 100]
    layout["yaxis"]["rangemode"] = "normal"
    return layout


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _json_default(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} does not belong in a figure")


def to_json(figure: dict) -> str:
    return json.dumps(figure, default=_json_default, separators=(",", ":"))


def figure_script(element_id: str, figure: dict) -> SafeString:
    """A <script type="application/json"> block holding the figure, safe inside HTML."""
    # With <, > and & escaped, no string in the JSON can close the script element.
    payload = mark_safe(to_json(figure).translate(_SCRIPT_ESCAPES))  # noqa: S308
    return format_html('<script type="application/json" id="{}">{}</script>', element_id, payload)


def figure_scripts(figures: dict[str, dict]) -> SafeString:
    return format_html_join(
        "\n", "{}", ((figure_script(key, figure),) for key, figure in figures.items())
    )


def figures_json(figures: Iterable[tuple[str, dict]]) -> str:
    """{"figures": {id: figure}} for the live refresh (application/json, no escaping needed)."""
    body = ",".join(f'"{key}":{to_json(figure)}' for key, figure in figures)
    return '{"figures":{' + body + "}}"
