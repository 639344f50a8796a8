"""Month-end spend forecast: a straight line through the recent daily spend, with an interval.

Ordinary least squares on the last N complete days (x = day number, y = that day's spend).
The remaining days of the month are predicted from the line; their sum gets a prediction
interval that accounts for both the uncertainty of the line and each future day's own noise:

    Var(sum of m future days) = s² · (m + m²/n + m² · (x̄_future − x̄)² / Sxx)

with s² the residual variance (n − 2 degrees of freedom), and Student's t for the width.
Neither numpy nor scipy is installed; the statistics module and a t table are enough here.
"""

from __future__ import annotations

import calendar
import math
import statistics
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

# Two-sided 95 % quantiles of Student's t, t(0.975, df), for df = 1..30 (standard tables).
# Past 30 degrees of freedom the normal quantile is within 4 % and is used instead.
T_975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip
Z_975 = statistics.NormalDist().inv_cdf(0.975)

# Days of history the trend is fitted on.
TREND_DAYS = 14


def t_quantile_975(df: int) -> float:
    if df < 1:
        raise ValueError("Student's t needs at least one degree of freedom")
    return T_975[df - 1] if df <= len(T_975) else Z_975


@dataclass(frozen=True)
class Line:
    intercept: float
    slope: float
    residual_sd: float  # s, the standard error of the regression
    n: int
    x_mean: float
    sxx: float

    def at(self, x: float) -> float:
        return self.intercept + self.slope * x


def fit_line(xs: list[float], ys: list[float]) -> Line:
    """Least-squares line through (xs, ys); needs at least three points for a residual spread."""
    n = len(xs)
    if n != len(ys) or n < 3:
        raise ValueError("a trend needs at least three points")
    slope, intercept = statistics.linear_regression(xs, ys)
    x_mean = statistics.fmean(xs)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    residuals = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return Line(intercept, slope, math.sqrt(residuals / (n - 2)), n, x_mean, sxx)


def sum_prediction_interval(line: Line, future_xs: list[float]) -> tuple[float, float]:
    """The predicted sum of y over future_xs and the half-width of its 95 % interval."""
    m = len(future_xs)
    if not m:
        return 0.0, 0.0
    predicted = sum(line.at(x) for x in future_xs)
    future_mean = statistics.fmean(future_xs)
    leverage = m * m / line.n + (
        m * m * (future_mean - line.x_mean) ** 2 / line.sxx if line.sxx else 0.0
    )
    spread = line.residual_sd * math.sqrt(m + leverage)
    return predicted, t_quantile_975(line.n - 2) * spread


@dataclass(frozen=True)
class MonthForecast:
    month_to_date: Decimal
    expected: Decimal
    low: Decimal
    high: Decimal
    days_left: int
    days_of_history: int
    daily_trend: Decimal  # the line's change in daily spend per day

    @property
    def has_interval(self) -> bool:
        return self.low != self.high


def forecast_month_end(daily_spend: dict[date, Decimal], today: date) -> MonthForecast:
    """Forecast this month's total spend from the spend per day (missing days spent nothing).

    Today counts as a remaining day: its spend so far is in month_to_date, and the forecast
    adds the line's value for today minus nothing (a partial day would bias the trend down,
    so the fit uses complete days only, and today's partial spend is kept as a floor).
    """
    first = today.replace(day=1)
    last_day = calendar.monthrange(today.year, today.month)[1]
    month_end = today.replace(day=last_day)
    month_to_date = sum(
        (amount for day, amount in daily_spend.items() if first <= day <= today), Decimal(0)
    )
    spent_today = float(daily_spend.get(today, Decimal(0)))
    history = [today - timedelta(days=back) for back in range(TREND_DAYS, 0, -1)]
    xs = [float((day - today).days) for day in history]
    ys = [float(daily_spend.get(day, Decimal(0))) for day in history]
    future_xs = [float(offset) for offset in range((month_end - today).days + 1)]
    days_left = len(future_xs)
    seen = [x for x, y in zip(xs, ys, strict=True) if y]
    if len(seen) < 3:
        # Too little history for a trend: assume the average day seen so far, no interval.
        average = statistics.fmean(ys) if any(ys) else 0.0
        rest = max(average * days_left - spent_today, 0.0)
        expected = month_to_date + _money(rest)
        return MonthForecast(month_to_date, expected, expected, expected, days_left, 0, Decimal(0))
    # Fit only from the first day with spend: an agent that started last week has no zeros
    # before it, and counting them would invent a steep upward trend.
    start = xs.index(seen[0])
    line = fit_line(xs[start:], ys[start:])
    predicted, half_width = sum_prediction_interval(line, future_xs)
    # Spend never goes below zero, and today's spend so far has already happened.
    predicted_rest = max(predicted - spent_today, 0.0)
    low_rest = max(predicted - half_width - spent_today, 0.0)
    high_rest = max(predicted + half_width - spent_today, 0.0)
    return MonthForecast(
        month_to_date=month_to_date,
        expected=month_to_date + _money(predicted_rest),
        low=month_to_date + _money(low_rest),
        high=month_to_date + _money(high_rest),
        days_left=days_left,
        days_of_history=line.n,
        daily_trend=_money(line.slope),
    )


def _money(value: float) -> Decimal:
    return Decimal(str(round(value, 4)))
