"""Timeframes: parsing ``"5Min"`` / ``"1Hour"`` / ``"1D"``, durations and pandas frequencies (docs/semantics.md §1.2).

A :class:`Timeframe` is ``(value, unit)`` with ``unit`` one of ``"Minute"``, ``"Hour"``, ``"Day"``.

* Equality (and hashing) compares ``(value, unit)``: ``60Minute != 1Hour``. The spelling is
  visible in the observation key (``market_data_60Minute_24`` vs ``market_data_1Hour_24``).
* Ordering (``<``, ``<=``, ``>``, ``>=``) compares the duration in minutes, so ``60Minute`` and
  ``1Hour`` are neither ``<`` nor ``>`` each other: the market builder treats such a pair as
  "same duration".
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = ["Timeframe", "parse_timeframe", "normalize_timeframes", "normalize_window_sizes", "UNITS"]

#: canonical unit name -> minutes per unit
UNITS: dict[str, int] = {"Minute": 1, "Hour": 60, "Day": 1440}

_PANDAS_FREQ_SUFFIX = {"Minute": "min", "Hour": "h", "Day": "D"}

# Accepted spellings (case-insensitive), as in TorchTrade's parser.
_UNIT_ALIASES: dict[str, str] = {
    "min": "Minute",
    "minute": "Minute",
    "minutes": "Minute",
    "m": "Minute",
    "hour": "Hour",
    "hours": "Hour",
    "h": "Hour",
    "hr": "Hour",
    "day": "Day",
    "days": "Day",
    "d": "Day",
}

_PATTERN = re.compile(r"^(\d+)\s*([A-Za-z]+)$")


@dataclass(frozen=True)
class Timeframe:
    """A bar duration ``value`` x ``unit`` (``unit`` in ``"Minute" | "Hour" | "Day"``).

    Build one with :func:`parse_timeframe` (``parse_timeframe("5Min")``) or directly
    (``Timeframe(5, "Minute")``).
    """

    value: int
    unit: str

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise ValueError(
                f"Timeframe value must be a positive int, got {self.value!r} "
                f"({type(self.value).__name__}); e.g. Timeframe(5, 'Minute')."
            )
        if self.value < 1:
            raise ValueError(f"Timeframe value must be >= 1, got {self.value}; e.g. Timeframe(5, 'Minute').")
        if self.unit not in UNITS:
            raise ValueError(
                f"Unknown Timeframe unit {self.unit!r}; use one of {sorted(UNITS)} "
                "(or parse_timeframe('5Min') to accept the usual spellings)."
            )

    # -- derived quantities ---------------------------------------------------------------------
    @property
    def minutes(self) -> int:
        """Duration in whole minutes."""
        return self.value * UNITS[self.unit]

    @property
    def key(self) -> str:
        """Observation-key spelling, e.g. ``"1Hour"``, ``"60Minute"``, ``"1Day"``."""
        return f"{self.value}{self.unit}"

    @property
    def pandas_freq(self) -> str:
        """pandas frequency string: ``"{v}min"``, ``"{v}h"`` or ``"{v}D"``."""
        return f"{self.value}{_PANDAS_FREQ_SUFFIX[self.unit]}"

    @property
    def timedelta(self) -> pd.Timedelta:
        """Duration as a ``pd.Timedelta``."""
        return pd.Timedelta(minutes=self.minutes)

    def __str__(self) -> str:
        return self.key

    # -- ordering by duration (equality stays (value, unit)) ------------------------------------
    def _check(self, other: object) -> bool:
        return isinstance(other, Timeframe)

    def __lt__(self, other: object) -> bool:
        if not self._check(other):
            return NotImplemented
        return self.minutes < other.minutes  # type: ignore[attr-defined]

    def __le__(self, other: object) -> bool:
        if not self._check(other):
            return NotImplemented
        return self.minutes <= other.minutes  # type: ignore[attr-defined]

    def __gt__(self, other: object) -> bool:
        if not self._check(other):
            return NotImplemented
        return self.minutes > other.minutes  # type: ignore[attr-defined]

    def __ge__(self, other: object) -> bool:
        if not self._check(other):
            return NotImplemented
        return self.minutes >= other.minutes  # type: ignore[attr-defined]


def _canonical_suggestion(value: int, unit: str) -> tuple[int, str] | None:
    """The larger-unit spelling of the same duration, if there is one (60Minute -> 1Hour)."""
    if unit == "Minute":
        if value % 1440 == 0:
            return value // 1440, "Day"
        if value % 60 == 0:
            return value // 60, "Hour"
    elif unit == "Hour" and value % 24 == 0:
        return value // 24, "Day"
    return None


def parse_timeframe(tf: str | Timeframe) -> Timeframe:
    """Parse ``"<int><optional spaces><unit>"`` (unit case-insensitive) into a :class:`Timeframe`.

    Units: ``min|minute|minutes|m`` -> Minute, ``hour|hours|h|hr`` -> Hour, ``day|days|d`` -> Day.
    A :class:`Timeframe` is returned unchanged. A duration that has a larger-unit spelling
    (``"60min"``, ``"24h"``) is accepted with a ``UserWarning`` suggesting the canonical form:
    the observation key keeps the given spelling (``60Minute``), the data sampled is identical.

    Raises:
        ValueError: malformed string, unknown unit, or value < 1.
    """
    if isinstance(tf, Timeframe):
        return tf
    if not isinstance(tf, str):
        raise ValueError(
            f"A timeframe must be a string like '5Min', '1Hour', '1D' or a Timeframe, got {tf!r} ({type(tf).__name__})."
        )
    s = tf.strip()
    match = _PATTERN.match(s)
    if match is None:
        raise ValueError(
            f"Invalid timeframe {tf!r}: expected '<number><unit>', e.g. '5Min', '1Hour', '15 minutes', '1D'."
        )
    value = int(match.group(1))
    unit_str = match.group(2)
    unit = _UNIT_ALIASES.get(unit_str.lower())
    if unit is None:
        raise ValueError(
            f"Unknown time unit {unit_str!r} in timeframe {tf!r}; supported units: "
            "min/minute/minutes/m, hour/hours/h/hr, day/days/d (case-insensitive)."
        )
    if value < 1:
        raise ValueError(f"Timeframe {tf!r} has value {value}; it must be >= 1 (e.g. '1{unit_str}').")
    canon = _canonical_suggestion(value, unit)
    if canon is not None:
        cv, cu = canon
        warnings.warn(
            f"Timeframe {tf!r} creates observation key '{value}{unit}'. Consider '{cv}{cu}' for the "
            f"cleaner key '{cv}{cu}'. The data sampled is identical, but the keys differ, so models "
            "trained with one spelling will not load observations built with the other.",
            UserWarning,
            stacklevel=2,
        )
    return Timeframe(value, unit)


def normalize_timeframes(
    time_frames: str | Timeframe | Sequence[str | Timeframe],
    window_sizes: int | Sequence[int],
    execute_on: str | Timeframe,
) -> tuple[tuple[Timeframe, ...], tuple[int, ...], Timeframe]:
    """Validate and normalise the (time_frames, window_sizes, execute_on) triple (docs/semantics.md §1.2).

    ``time_frames`` may be one timeframe or a sequence; ``window_sizes`` an int (broadcast) or a
    sequence of the same length. Returns ``(tuple of Timeframe, tuple of int, Timeframe)``.

    Raises:
        ValueError: empty ``time_frames``, a window < 1 or not an int, mismatched lengths,
            duplicate timeframes, or any parse error of :func:`parse_timeframe`.
    """
    if isinstance(time_frames, (str, Timeframe)):
        tf_list = [time_frames]
    else:
        try:
            tf_list = list(time_frames)
        except TypeError:
            raise ValueError(
                f"time_frames must be a timeframe ('1Hour') or a list of them, got {time_frames!r}."
            ) from None
    if not tf_list:
        raise ValueError("time_frames is empty; give at least one timeframe, e.g. time_frames=['1Hour'].")
    tfs = tuple(parse_timeframe(t) for t in tf_list)
    exec_tf = parse_timeframe(execute_on)

    ws = normalize_window_sizes(window_sizes, [t.key for t in tfs])

    seen: dict[str, int] = {}
    for i, tf in enumerate(tfs):
        if tf.key in seen:
            raise ValueError(
                f"time_frames lists {tf.key} twice (positions {seen[tf.key]} and {i}); each timeframe "
                "may appear once (its observation key would collide)."
            )
        seen[tf.key] = i
    return tfs, ws, exec_tf


def normalize_window_sizes(window_sizes: int | Sequence[int], time_frames: Sequence[str]) -> tuple[int, ...]:
    """One window size per timeframe, each an int >= 1 (docs/semantics.md §1.2); an int is broadcast to every timeframe.

    ``time_frames`` only names the timeframes in the messages. An integral float (``3.0``) is accepted.

    Raises:
        ValueError: a window that is not an int or is < 1, or a count that differs from ``time_frames``.
    """
    if isinstance(window_sizes, bool):
        raise ValueError(f"window_sizes must be an int >= 1 or a list of them, got {window_sizes!r}.")
    if isinstance(window_sizes, int) or hasattr(window_sizes, "__index__"):
        ws_list = [window_sizes] * len(time_frames)
    else:
        try:
            ws_list = list(window_sizes)
        except TypeError:
            raise ValueError(f"window_sizes must be an int >= 1 or a list of them, got {window_sizes!r}.") from None
    if len(ws_list) != len(time_frames):
        raise ValueError(
            f"window_sizes has {len(ws_list)} entries but time_frames has {len(time_frames)} "
            f"({list(time_frames)}); give one window per timeframe or a single int."
        )
    ws: list[int] = []
    for tf, w in zip(time_frames, ws_list, strict=True):
        if isinstance(w, bool) or not hasattr(w, "__index__"):
            if isinstance(w, float) and w.is_integer() and w >= 1:
                w = int(w)
            else:
                raise ValueError(f"window_sizes must hold ints >= 1: the window for timeframe {tf} is {w!r}.")
        w = int(w)
        if w < 1:
            raise ValueError(f"window size for timeframe {tf} must be >= 1, got {w} (window_sizes must all be >= 1).")
        ws.append(w)
    return tuple(ws)
