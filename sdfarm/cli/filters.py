"""Click parameter types for the history filters: ``6-8`` ranges, ``512x768`` sizes and dates
like ``7d`` or ``2026-11-01``. The parsing is :mod:`sdfarm.usecases.history_filters` (the web
API's too); here a bad value becomes a usage error naming the option and the forms allowed."""

from __future__ import annotations

from datetime import datetime

import click

from sdfarm.errors import BadFilter
from sdfarm.params import Param
from sdfarm.usecases import history_filters


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
        try:
            return history_filters.number_range(value, self.kind)
        except BadFilter as exc:
            self.fail(exc.problem, param, ctx)


class Size(click.ParamType):
    name = "WxH"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return history_filters.size(value)
        except BadFilter as exc:
            self.fail(exc.problem, param, ctx)


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
        try:
            return history_filters.when(value, self.end_of_day)
        except BadFilter as exc:
            self.fail(exc.problem, param, ctx)
