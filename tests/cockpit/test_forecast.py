"""The month-end forecast: least squares and its prediction interval against known values."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from cockpit import forecast

# A textbook data set: y = 2.2 + 0.6x, residual sum of squares 2.4 on 3 degrees of freedom.
XS = [1.0, 2.0, 3.0, 4.0, 5.0]
YS = [2.0, 4.0, 5.0, 4.0, 5.0]


def test_the_line_is_the_least_squares_fit():
    line = forecast.fit_line(XS, YS)

    assert line.slope == pytest.approx(0.6)
    assert line.intercept == pytest.approx(2.2)
    assert line.residual_sd == pytest.approx(0.894427, rel=1e-6)  # sqrt(2.4 / 3)
    assert line.sxx == pytest.approx(10.0)


def test_a_single_future_point_gets_the_textbook_prediction_interval():
    line = forecast.fit_line(XS, YS)

    predicted, half_width = forecast.sum_prediction_interval(line, [6.0])

    assert predicted == pytest.approx(5.8)
    # t(0.975, 3) · s · sqrt(1 + 1/5 + (6 − 3)² / 10)
    assert half_width == pytest.approx(3.182 * 0.894427 * 2.1**0.5, rel=1e-5)


def test_the_interval_of_a_sum_widens_with_the_days_summed():
    line = forecast.fit_line(XS, YS)

    predicted, half_width = forecast.sum_prediction_interval(line, [6.0, 7.0])

    assert predicted == pytest.approx(5.8 + 6.4)
    # m = 2, mean future x = 6.5: sqrt(2 + 4/5 + 4 · 3.5² / 10)
    assert half_width == pytest.approx(3.182 * 0.894427 * (2 + 0.8 + 4.9) ** 0.5, rel=1e-5)


def test_students_t_comes_from_the_table_then_the_normal():
    assert forecast.t_quantile_975(1) == 12.706
    assert forecast.t_quantile_975(30) == 2.042
    assert forecast.t_quantile_975(200) == pytest.approx(1.959964, rel=1e-6)
    with pytest.raises(ValueError):
        forecast.t_quantile_975(0)


def test_a_line_needs_three_points():
    with pytest.raises(ValueError):
        forecast.fit_line([1.0, 2.0], [1.0, 2.0])


def test_a_steady_rising_trend_is_projected_to_the_end_of_the_month():
    today = date(2026, 3, 10)
    # $10 a day rising by $1 a day, exactly: the line fits perfectly, so no interval.
    spend = {today - timedelta(days=back): Decimal(10 + 14 - back) for back in range(14, 0, -1)}
    spend[today] = Decimal(5)  # today so far

    result = forecast.forecast_month_end(spend, today)

    month_to_date = sum(Decimal(10 + 14 - back) for back in range(9, 0, -1)) + 5
    assert result.month_to_date == month_to_date
    # Today's line value is 24; days 10..31 sum 24 + 25 + … + 45, less the 5 already spent.
    assert result.expected == month_to_date + Decimal(sum(range(24, 46)) - 5)
    assert result.low == result.high == result.expected
    assert not result.has_interval
    assert result.days_left == 22
    assert result.daily_trend == Decimal(1)


def test_noisy_spend_gets_an_interval_around_the_expected_total():
    today = date(2026, 4, 20)
    noise = [3, -2, 1, -4, 2, 0, -1, 4, -3, 1, 2, -2, 0, -1]
    spend = {today - timedelta(days=14 - i): Decimal(50 + n) for i, n in enumerate(noise)}

    result = forecast.forecast_month_end(spend, today)

    assert result.has_interval
    assert result.low < result.expected < result.high
    assert result.days_of_history == 14
    # Around $50 a day for the 11 days left, on top of what April has spent.
    assert result.expected - result.month_to_date == pytest.approx(Decimal(550), abs=40)


def test_spend_never_forecasts_below_what_is_already_spent():
    today = date(2026, 4, 20)
    falling = {today - timedelta(days=back): Decimal(back * 3) for back in range(14, 0, -1)}

    result = forecast.forecast_month_end(falling, today)

    assert result.low >= result.month_to_date
    assert result.expected >= result.month_to_date


def test_a_new_agent_without_history_assumes_its_average_day():
    today = date(2026, 4, 20)
    spend = {today - timedelta(days=1): Decimal(14)}

    result = forecast.forecast_month_end(spend, today)

    # One day of $14 in 14: a $1 day on average, for the 11 days left.
    assert result.expected == Decimal(14) + Decimal(11)
    assert result.days_of_history == 0
