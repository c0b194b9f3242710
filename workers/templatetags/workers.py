from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def gib(value: int | None) -> str:
    return "–" if value is None else f"{value / 1024**3:.1f}"


@register.filter
def mb(value: int | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value / 1024**2:.{digits}f}"


@register.simple_tag
def percent(part: float | None, whole: float | None) -> str:
    if part is None or not whole:
        return "0"
    return f"{min(max(part / whole, 0.0), 1.0) * 100:.0f}"
