"""Click parameter types for the history filters: ``6-8`` ranges, ``512x768`` sizes and dates
like ``7d`` or ``2026-11-01``. A bad value is a usage error naming the option and the forms
allowed."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

import click

from sdfarm.db.models import utcnow
from sdfarm.params import Param

_RANGE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:(?:-|\.\.)\s*([0-9]*\.?[0-9]+)\s*)?$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class NumberRange(click.ParamType):
    """``7`` or ``6-8`` (also ``6..8``), inclusive; as a (low, high) pair."""

    def __init__(self, kind: type = float) -> None:
        self.kind = kind
        self.name = "value or range" if kind is float else "integer or range"

    @classmethod
    def of(cls, param: Param) -> NumberRange:
        """Ranges of a number parameter of the table, typed as it is."""
        return cls(int if param.kind == "int" else float)

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = _RANGE.match(str(value))
        number = "a number" if self.kind is float else "an integer"
        if m is None or (self.kind is int and "." in str(value)):
            self.fail(f"{value!r} is not {number} or a range like 6-8", param, ctx)
        low = self.kind(m.group(1))
        high = self.kind(m.group(2)) if m.group(2) is not None else low
        if high < low:
            self.fail(f"range {value!r} goes down; write it low-high", param, ctx)
        return low, high


class Size(click.ParamType):
    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        m = _SIZE.match(str(value))
        if m is None:
            self.fail(f"{value!r} is not a size like 512x768", param, ctx)
        return int(m.group(1)), int(m.group(2))


class When(click.ParamType):
    """A time ago (``90m``, ``12h``, ``7d``, ``2w``) or a UTC date or date and time
    (``2026-11-01``, ``2026-11-01T18:30``); as naive UTC, like the stored timestamps.

    For an upper bound (``end_of_day``) a bare date means the end of that day.
    """

    name = "when"

    def __init__(self, *, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value, param, ctx):
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        ago = _AGO.match(text)
        if ago is not None:
            return utcnow() - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
        try:
            day = date.fromisoformat(text)
        except ValueError:
            day = None
        if day is not None:
            start = datetime(day.year, day.month, day.day)
            return start + timedelta(days=1) if self.end_of_day else start
        try:
            moment = datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            self.fail(f"{value!r} is not a time ago like 7d, 12h, 30m, 2w or a UTC date like "
                      "2026-11-01 or 2026-11-01T18:30", param, ctx)
        if moment.tzinfo is not None:  # 2026-11-01T18:30+01:00
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
        return moment
