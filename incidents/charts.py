"""Plotly figures of the incidents page, built on the server like cockpit.charts: plain figure
dicts, embedded as JSON and drawn by static/cockpit/charts.js."""

from __future__ import annotations

from datetime import timedelta

from cockpit.charts import PALETTE, base_layout, label, line
from incidents.metrics import MEASURES

SEVERITY_COLOURS = {"SEV1": "#b91c1c", "SEV2": "#f59e0b", "SEV3": "#0284c7", "SEV4": "#64748b"}
MEASURE_DASH = {"detect": "dot", "acknowledge": "dashdot", "mitigate": "dash", "resolve": "solid"}


def metrics_figures(weekly: dict, stats: dict) -> dict[str, dict]:
    """Time to X by severity over time (weekly medians), time to X by failure class, and the
    failure classes ranked."""
    weeks = weekly["weeks"]
    over_time = [
        line(
            f"{severity} · {measure}",
            weeks,
            [round(v, 1) if v is not None else None for v in values],
            SEVERITY_COLOURS[severity],
            mode="lines+markers",
            line={"color": SEVERITY_COLOURS[severity], "width": 1.8, "dash": MEASURE_DASH[measure]},
            # Resolve is shown at first; the others are a click on the legend away.
            visible=True if measure == "resolve" else "legendonly",
        )
        for (measure, severity), values in sorted(
            weekly["series"].items(), key=lambda kv: (kv[0][1], kv[0][0])
        )
    ]
    over_time_layout = base_layout("median minutes")
    # Weekly points: whole weeks on the axis, with half a week of room either side.
    if weeks:
        over_time_layout["xaxis"].update(
            tickformat="%b %d",
            dtick=7 * 24 * 3600 * 1000,
            range=[weeks[0] - timedelta(days=4), weeks[-1] + timedelta(days=4)],
        )
    over_time_layout["height"] = 280
    over_time_layout["legend"] = {"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 10}}
    over_time_layout["margin"]["r"] = 150

    classes = list(weekly["by_class"])
    by_class = [
        {
            "type": "bar",
            "name": title,
            "x": [label(c) for c in classes],
            "y": [
                round(weekly["by_class"][c][key], 1)
                if weekly["by_class"][c][key] is not None
                else None
                for c in classes
            ],
            "marker": {"color": PALETTE[i]},
        }
        for i, (key, _, title) in enumerate(MEASURES)
    ]
    by_class_layout = base_layout("median minutes")
    by_class_layout.update({"barmode": "group", "height": 280})
    by_class_layout["xaxis"] = {"type": "category", "linecolor": "#cbd5e1"}

    ranked = list(reversed(stats["ranked"]))
    ranked_fig = {
        "data": [
            {
                "type": "bar",
                "orientation": "h",
                "name": "incidents",
                "y": [label(r.label) for r in ranked],
                "x": [r.count - r.near_misses for r in ranked],
                "marker": {"color": "#0284c7"},
            },
            {
                "type": "bar",
                "orientation": "h",
                "name": "near misses",
                "y": [label(r.label) for r in ranked],
                "x": [r.near_misses for r in ranked],
                "marker": {"color": "#f59e0b"},
            },
        ],
        "layout": {
            **base_layout("incidents"),
            "barmode": "stack",
            "height": max(160, 40 + 34 * len(ranked)),
            "xaxis": {"type": "linear", "gridcolor": "#eef2f6", "dtick": 1, "rangemode": "tozero"},
            "yaxis": {"type": "category", "automargin": True},
            "hovermode": "y unified",
        },
    }
    return {
        "chart-incident-times": {"data": over_time, "layout": over_time_layout},
        "chart-incident-classes": {"data": by_class if classes else [], "layout": by_class_layout},
        "chart-incident-ranked": ranked_fig
        if ranked
        else {"data": [], "layout": ranked_fig["layout"]},
    }
