"""Walk-forward window spans: pure functions of the data's extent and the `walkforward` group.

Every span is half-open, `[start, end)`, in the data's (naive UTC) timestamps. Window i:

* rolling (`anchored=false`): train `[s + i*step, s + i*step + train)`; anchored: train `[s, s + i*step + train)`;
* test `[train_end, train_end + test)`: it starts where its own train span ends, so the two never overlap;
* val (`val_days > 0`): the last `val_days` of the train span, `[train_end - val, train_end)`; the agent trains
  (and its features are fitted) on the rest, `fit = [train_start, train_end - val)`.

With `step_days < test_days` the test spans of consecutive windows overlap one another (never their own train
span); the report notes that the windows are then not independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from train.config import ConfigError

Span = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class WindowSpan:
    index: int
    train: Span  # [start, end): the whole train span, val tail included
    test: Span  # [train end, train end + test_days)
    val: Span | None  # the train span's last val_days, or None

    @property
    def fit(self) -> Span:
        """What the agent trains on and the features are fitted on: the train span without its val tail."""
        return (self.train[0], self.val[0] if self.val is not None else self.train[1])


def _timestamp(value) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts


def data_extent(index: pd.DatetimeIndex) -> Span:
    """`[first bar, last bar + one bar period)` of a sorted bar index."""
    if len(index) < 2:
        raise ConfigError(f"walk-forward needs at least 2 bars of data, got {len(index)}")
    return index[0], index[-1] + (index[-1] - index[-2])


def window_spans(
    extent: Span,
    *,
    train_days: float,
    test_days: float,
    step_days: float | None = None,
    num_windows: int | None = None,
    anchored: bool = False,
    val_days: float = 0.0,
    start=None,
    end=None,
) -> list[WindowSpan]:
    """The windows inside `extent` (the data's `[first, end)`), as described in the module doc."""
    lo, hi = extent
    first = lo if start is None else _timestamp(start)
    last = hi if end is None else _timestamp(end)
    if first < lo or last > hi or first >= last:
        raise ConfigError(
            f"walkforward.start={start} / walkforward.end={end} must give a span inside the data "
            f"({lo} .. {hi}) with start < end"
        )
    day = pd.Timedelta(days=1)
    train, test = train_days * day, test_days * day
    step = (test_days if step_days is None else step_days) * day
    val = val_days * day
    room = last - first - train - test
    fit = 0 if room < pd.Timedelta(0) else int(room // step) + 1
    if fit < 1 or (num_windows is not None and num_windows > fit):
        want = 1 if num_windows is None else num_windows
        raise ConfigError(
            f"{want} window(s) of walkforward.train_days={train_days} + test_days={test_days}, stepping "
            f"{step / day:g} days, do not fit in {first} .. {last} ({(last - first) / day:.4g} days); "
            f"{fit} fit: lower walkforward.num_windows, train_days or test_days, or widen start/end"
        )
    out = []
    for i in range(fit if num_windows is None else num_windows):
        train_end = first + i * step + train
        train_start = first if anchored else train_end - train
        out.append(
            WindowSpan(
                index=i,
                train=(train_start, train_end),
                test=(train_end, train_end + test),
                val=(train_end - val, train_end) if val_days > 0 else None,
            )
        )
    return out


def spans_from_config(index: pd.DatetimeIndex, wf) -> list[WindowSpan]:
    """`window_spans` of a bar index and a `walkforward` config group."""
    return window_spans(
        data_extent(index),
        train_days=float(wf.train_days),
        test_days=float(wf.test_days),
        step_days=None if wf.step_days is None else float(wf.step_days),
        num_windows=wf.num_windows,
        anchored=bool(wf.anchored),
        val_days=float(wf.val_days),
        start=wf.start,
        end=wf.end,
    )


def overlapping_test_spans(spans: list[WindowSpan]) -> bool:
    """Whether some test span starts before the previous one ends (step_days < test_days)."""
    return any(b.test[0] < a.test[1] for a, b in zip(spans, spans[1:], strict=False))


def slice_span(frame: pd.DataFrame, span: Span) -> pd.DataFrame:
    """The rows of `frame` with `span[0] <= timestamp < span[1]`."""
    return frame[(frame.index >= span[0]) & (frame.index < span[1])]
