"""Kubernetes time stamps (metav1.Time: RFC 3339, UTC, whole seconds) without reading the clock."""

from __future__ import annotations

from datetime import UTC, datetime

ZERO = datetime(1, 1, 1, tzinfo=UTC)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime:
    """A stored time stamp; absent or empty is the zero time, as in Go."""
    if not text:
        return ZERO
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def is_zero(text: str | None) -> bool:
    return parse_time(text) == ZERO
