"""Pure: when unattended runs may take a VM down (`MaintenanceWindow`, e.g. `Sat 01:00-05:00
UTC`), and the timer schedules' 6-field NCRONTAB check (`validate_ncrontab`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


_WINDOW = re.compile(
    r"^\s*(?:(?P<days>[A-Za-z]+(?:\s*[-,]\s*[A-Za-z]+)*)\s+)?"
    r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"(?:\s+(?P<tz>[A-Za-z_][A-Za-z0-9_+\-/]*))?\s*$"
)


def _parse_days(text: str | None) -> frozenset[int]:
    if text is None or text.strip().lower() in ("daily", "everyday", "*"):
        return frozenset(range(7))
    days: set[int] = set()
    for part in re.split(r"\s*,\s*", text.strip()):
        bounds = [b.strip().lower()[:3] for b in part.split("-")]
        if any(b not in _DAYS for b in bounds) or len(bounds) > 2:
            raise ValueError(f"unknown day {part!r} (use Mon..Sun, ranges like Mon-Fri, or daily)")
        first = _DAYS.index(bounds[0])
        last = _DAYS.index(bounds[-1])
        span = (last - first) % 7
        days.update((first + i) % 7 for i in range(span + 1))
    return frozenset(days)


def _parse_clock(text: str, *, allow_24: bool) -> time | None:
    hours, minutes = (int(x) for x in text.split(":"))
    if allow_24 and hours == 24 and minutes == 0:
        return None  # end of day
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise ValueError(f"{text!r} is not a time of day (HH:MM, 00:00-23:59)")
    return time(hours, minutes)


def _parse_zone(name: str | None) -> tzinfo:
    if name is None or name.upper() in ("UTC", "Z", "GMT"):
        return UTC
    try:
        from zoneinfo import ZoneInfo  # stdlib; reads the system tz database

        return ZoneInfo(name)
    except Exception:  # noqa: BLE001 - ZoneInfo raises several types for bad names
        raise ValueError(f"unknown time zone {name!r} (use UTC or an IANA name)") from None


@dataclass(frozen=True, slots=True)
class _WindowPart:
    days: frozenset[int]  # weekday the window *starts* on (Mon=0)
    start: time
    duration: timedelta
    zone: tzinfo


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    """When unattended runs may deallocate a VM, e.g. `Sat 01:00-05:00 UTC`.

    Grammar: one or more parts separated by `;`, each `[DAYS] HH:MM-HH:MM [ZONE]`; DAYS is
    `Mon`, `Sat,Sun`, `Mon-Fri` or `daily` (default); ZONE is `UTC` (default) or an IANA name.
    A window whose end is not after its start crosses midnight (`Fri 22:00-02:00` ends Saturday
    02:00); `24:00` means end of day.
    """

    text: str
    parts: tuple[_WindowPart, ...]

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("maintenance window is empty")
        parts = []
        for chunk in text.split(";"):
            if not chunk.strip():
                continue
            match = _WINDOW.match(chunk)
            if not match:
                raise ValueError(
                    f"{chunk.strip()!r} is not '[DAYS] HH:MM-HH:MM [ZONE]', "
                    "e.g. 'Sat 01:00-05:00 UTC'"
                )
            days = _parse_days(match.group("days"))
            start = _parse_clock(match.group("start"), allow_24=False)
            end = _parse_clock(match.group("end"), allow_24=True)
            assert start is not None
            start_min = start.hour * 60 + start.minute
            end_min = 24 * 60 if end is None else end.hour * 60 + end.minute
            if end_min == start_min:
                raise ValueError(f"{chunk.strip()!r}: window has zero length")
            duration = (end_min - start_min) % (24 * 60) or 24 * 60
            parts.append(
                _WindowPart(
                    days, start, timedelta(minutes=duration), _parse_zone(match.group("tz"))
                )
            )
        if not parts:
            raise ValueError("maintenance window is empty")
        return cls(text.strip(), tuple(parts))

    def is_open(self, now: datetime) -> bool:
        """Is `now` (timezone-aware) inside the window?"""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("is_open() needs a timezone-aware datetime")
        for part in self.parts:
            local = now.astimezone(part.zone)
            # A window that started today or yesterday (crossing midnight) may contain `now`.
            for back in (0, 1):
                day = local.date() - timedelta(days=back)
                if day.weekday() not in part.days:
                    continue
                begin = datetime.combine(day, part.start, tzinfo=part.zone)
                if begin <= local < begin + part.duration:
                    return True
        return False

    def __str__(self) -> str:
        return self.text


_CRON_FIELD = re.compile(
    r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/\d+)?)*$"
)


def validate_ncrontab(expression: str) -> str:
    """Azure Functions timer schedules have six fields: second minute hour day month weekday."""
    parts = expression.split()
    if len(parts) != 6:
        raise ValueError(
            f"{expression!r} has {len(parts)} fields; NCRONTAB needs 6 "
            "(second minute hour day month day-of-week), e.g. '0 0 */6 * * *'"
        )
    for part in parts:
        if not _CRON_FIELD.match(part):
            raise ValueError(f"{expression!r}: field {part!r} is not a cron field")
    return " ".join(parts)
