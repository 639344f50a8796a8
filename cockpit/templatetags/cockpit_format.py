"""Number formats shared by the fleet, agent and cost pages: durations, rates, money, percents.

Each filter shows "—" for a missing value, so a tile without traffic reads as "no data", not 0.
"""

from decimal import Decimal

from django import template
from django.contrib.humanize.templatetags.humanize import intcomma

from traces.views import format_duration

register = template.Library()

DASH = "—"


@register.filter
def duration(ms) -> str:
    return format_duration(ms)


@register.filter
def pct(value) -> str:
    """A fraction (0..1) as a percentage: 99.5%, 100%, 0.04%."""
    if value is None:
        return DASH
    value = 100 * float(value)
    if value == 100 or value == 0:
        return f"{value:.0f}%"
    if abs(value) < 0.1:
        return f"{value:.2f}%"
    return f"{value:.1f}%"


@register.filter
def rate(value) -> str:
    """Runs per minute: 0.2, 3.5, 42, 1,204."""
    if value is None:
        return DASH
    value = float(value)
    if value == 0:
        return "0"
    if value < 10:
        return f"{value:.1f}"
    return intcomma(round(value))


@register.filter
def usd(value) -> str:
    """Dollars: $0.0042 for sub-cent amounts, $12.34, $1,204."""
    if value is None:
        return DASH
    amount = Decimal(value)
    if amount == 0:
        return "$0"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount < Decimal("0.01"):
        return f"{sign}${amount:.4f}"
    if amount < 1000:
        return f"{sign}${amount:.2f}"
    return f"{sign}${intcomma(round(amount))}"


@register.filter
def compact(value) -> str:
    """Large counts: 950, 12.3k, 4.5M."""
    if value is None:
        return DASH
    value = float(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"
