"""An injectable clock: sweeps and rules take `now` from here, so tests never sleep."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stays where it is put. `advance()` moves it forward."""

    def __init__(self, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = now

    def now(self) -> datetime:
        return self._now

    def set(self, now: datetime) -> None:
        self._now = now

    def advance(self, delta: timedelta) -> None:
        self._now += delta


def today(clock: Clock) -> date:
    """Today's date in Japan, where every deadline of this platform is counted."""
    from zoneinfo import ZoneInfo

    return clock.now().astimezone(ZoneInfo("Asia/Tokyo")).date()
