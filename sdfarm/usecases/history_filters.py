"""The history filters read from text: ``6-8`` ranges, ``512x768`` sizes, dates like ``7d`` or
``2026-11-01``, and a whole :class:`HistoryQuery` from named strings (a URL's query parameters,
the CLI's option names). ``sdfarm history``'s click types and ``/api/history`` both call these,
so a bad value reads the same on both: a :class:`~sdfarm.errors.BadFilter` naming the filter
and the forms allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone

from sdfarm.db.history import HistoryQuery
from sdfarm.db.models import JobStatus, utcnow
from sdfarm.errors import BadFilter
from sdfarm.params import PARAMS as P

_RANGE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(?:(?:-|\.\.)\s*([0-9]*\.?[0-9]+)\s*)?$")
_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

#: Default page size, as ``sdfarm history``'s ``--limit``.
DEFAULT_LIMIT = 20
#: The names :func:`history_query` takes (the CLI's options, without dashes).
NAMES = ("prompt", "negative", "seed", "model", "sampler", "schedule", "cfg", "steps", "size",
         "family", "lora", "sweep", "status", "since", "until", "limit", "offset", "missing")


def number_range(text: str, kind: type = float, *, name: str = "value") -> tuple:
    """``7`` or ``6-8`` (also ``6..8``), inclusive; as a (low, high) pair of ``kind``."""
    m = _RANGE.match(str(text))
    number = "a number" if kind is float else "an integer"
    if m is None or (kind is int and "." in str(text)):
        raise BadFilter(name, f"{text!r} is not {number} or a range like 6-8")
    low = kind(m.group(1))
    high = kind(m.group(2)) if m.group(2) is not None else low
    if high < low:
        raise BadFilter(name, f"range {text!r} goes down; write it low-high")
    return low, high


def size(text: str, *, name: str = "size") -> tuple[int, int]:
    """``512x768`` (also ``X`` or ``×``) as (width, height)."""
    m = _SIZE.match(str(text))
    if m is None:
        raise BadFilter(name, f"{text!r} is not a size like 512x768")
    return int(m.group(1)), int(m.group(2))


def when(text: str, end_of_day: bool = False, *, name: str = "when") -> datetime:
    """A time ago (``90m``, ``12h``, ``7d``, ``2w``) or a UTC date or date and time
    (``2026-11-01``, ``2026-11-01T18:30``); as naive UTC, like the stored timestamps.

    For an upper bound (``end_of_day``) a bare date means the end of that day.
    """
    text = str(text).strip()
    ago = _AGO.match(text)
    if ago is not None:
        return utcnow() - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
    try:
        day = date.fromisoformat(text)
    except ValueError:
        day = None
    if day is not None:
        start = datetime(day.year, day.month, day.day)
        return start + timedelta(days=1) if end_of_day else start
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    except ValueError:
        raise BadFilter(name, f"{text!r} is not a time ago like 7d, 12h, 30m, 2w or a UTC date "
                              "like 2026-11-01 or 2026-11-01T18:30") from None
    if moment.tzinfo is not None:  # 2026-11-01T18:30+01:00
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment


def integer(text: str, *, name: str, low: int | None = None) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise BadFilter(name, f"{text!r} is not an integer") from None
    if low is not None and value < low:
        raise BadFilter(name, f"{value} is below {low}")
    return value


def flag(text: str, *, name: str) -> bool:
    word = str(text).strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise BadFilter(name, f"{text!r} is not true or false")


def choice(text: str, choices: tuple[str, ...], *, name: str) -> str:
    word = str(text).strip().lower()
    if word not in {c.lower() for c in choices}:
        raise BadFilter(name, f"{text!r} is not one of {', '.join(choices)}")
    return word


def history_query(params: Mapping[str, str | list[str]]
                  ) -> tuple[HistoryQuery, int | None, int]:
    """(query, limit, offset) from the CLI's filter names; an empty value is no filter.

    ``limit`` 0 means every match (``None``), as ``--limit 0``; ``status`` may repeat;
    ``missing`` is checked here and read by :func:`wants_missing`. Unknown names are refused,
    so a typo (``cgf=7``) is not a silently ignored filter.
    """
    unknown = sorted(set(params) - set(NAMES))
    if unknown:
        raise BadFilter(unknown[0], f"unknown filter; the filters are {', '.join(NAMES)}")

    def values(name: str) -> list[str]:
        given = params.get(name)
        listed = given if isinstance(given, list | tuple) else [] if given is None else [given]
        return [v for v in (str(v).strip() for v in listed) if v]

    def one(name: str) -> str | None:
        given = values(name)
        if len(given) > 1:
            raise BadFilter(name, f"given {len(given)} times; give it once")
        return given[0] if given else None

    def parsed(name: str, parse):
        text = one(name)
        return None if text is None else parse(text)

    statuses = []
    for text in values("status"):
        statuses.append(JobStatus(choice(text, tuple(s.value for s in JobStatus),
                                         name="status")))
    family = parsed("family", lambda t: choice(t, P["family"].choices, name="family"))
    query = HistoryQuery(
        prompt=one("prompt"), negative=one("negative"),
        seed=parsed("seed", lambda t: integer(t, name="seed")),
        model=one("model"), sampler=one("sampler"), schedule=one("schedule"),
        cfg=parsed("cfg", lambda t: number_range(t, _kind("cfg"), name="cfg")),
        steps=parsed("steps", lambda t: number_range(t, _kind("steps"), name="steps")),
        size=parsed("size", lambda t: size(t, name="size")),
        family=family, lora=one("lora"),
        sweep_id=parsed("sweep", lambda t: integer(t, name="sweep")),
        statuses=tuple(statuses),
        since=parsed("since", lambda t: when(t, name="since")),
        until=parsed("until", lambda t: when(t, end_of_day=True, name="until")),
    )
    limit = parsed("limit", lambda t: integer(t, name="limit", low=0))
    offset = parsed("offset", lambda t: integer(t, name="offset", low=0)) or 0
    wants_missing(params)
    return query, DEFAULT_LIMIT if limit is None else (limit or None), offset


def wants_missing(params: Mapping[str, str | list[str]]) -> bool:
    """Whether ``missing`` asks for done jobs whose image file is gone (``missing=1``, ``on``
    from a checkbox); empty is no filter, like every other."""
    given = params.get("missing")
    listed = given if isinstance(given, list | tuple) else [] if given is None else [given]
    return any(flag(v, name="missing") for v in listed if str(v).strip())


def _kind(name: str) -> type:
    return int if P[name].kind == "int" else float
