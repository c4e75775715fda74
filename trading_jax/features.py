"""Feature functions for :func:`trading_jax.market.build_market` (docs/semantics.md §1.4).

A feature function receives one timeframe's resampled bars (index named ``timestamp`` holding the
bar labels, columns ``open, high, low, close, volume, *aux``) and returns a frame with a
``timestamp`` column and ``features_*`` columns; only the ``features_*`` columns are kept, in order.

* :func:`zscore_ohlcv` -- the PPO example's preprocessing, bit-exact with the reference: statistics
  over ALL bars of the frame it is given, so they include future bars (docs/semantics.md Q8). Use it for parity.
* :func:`fit_zscore` -- the causal alternative: statistics frozen from the bars that close by
  ``fit_end``, returned as picklable, hashable callables that can be reused on a train market and on a
  test market built from a different slice of data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from trading_jax.ohlcv import OHLCV_COLUMNS, load_ohlcv, resample_bars
from trading_jax.timeframes import Timeframe, normalize_timeframes

__all__ = ["ZScore", "zscore_ohlcv", "fit_zscore", "FEATURE_FUNCTIONS"]

_EPS = np.finfo(np.float64).eps


def _column_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale per column like sklearn's StandardScaler: float64, population std (ddof=0),
    NaN ignored, and a (near-)constant column gets scale 1.

    Args:
        x: ``[N, C]`` float64.

    Returns:
        ``(mean [C], scale [C])`` float64.
    """
    n = np.sum(~np.isnan(x), axis=0)
    if (n == 0).any():
        raise ValueError("cannot fit z-score statistics: a column has no (non-NaN) values")
    if np.isnan(x).any():
        mean = np.nanmean(x, axis=0)
        var = np.nanvar(x, axis=0)
    else:
        mean = np.mean(x, axis=0)
        var = np.var(x, axis=0)
    scale = np.sqrt(var)
    # sklearn: constant features (variance within rounding of 0) are not scaled.
    constant = var <= n * _EPS * var + (n * mean * _EPS) ** 2
    scale = np.where(constant | (scale < 10 * _EPS), 1.0, scale)
    return mean, scale


def _transform(frame: pd.DataFrame, columns: Sequence[str], mean: np.ndarray, scale: np.ndarray) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"z-score: the frame has no column(s) {missing}; it has {list(frame.columns)}. "
            "Fit on the same columns the bars carry."
        )
    df = frame.copy().reset_index()
    names = [f"features_{c}" for c in columns]
    x = df[list(columns)].to_numpy(dtype=np.float64, na_value=np.nan)
    z = (x - mean) / scale
    for i, name in enumerate(names):
        df[name] = z[:, i]
    return df.fillna(0)


def zscore_ohlcv(frame: pd.DataFrame) -> pd.DataFrame:
    """The reference PPO example's preprocessing (``custom_preprocessing``), bit-exact.

    Copies the frame, turns the index into a ``timestamp`` column, and adds ``features_open,
    features_high, features_low, features_close, features_volume`` = ``(x - mean) / std`` over all
    rows of this frame (float64, population std; a (near-)zero std is replaced by 1), then fills NaN
    with 0. Aux columns are kept in the returned frame but, not being ``features_*``, are not emitted.

    Args:
        frame: ``[R, 5 + n_aux]`` resampled bars with a ``timestamp`` index.

    Returns:
        ``[R, 1 + 5 + n_aux + 5]`` frame (``timestamp`` column first).
    """
    cols = list(OHLCV_COLUMNS)
    mean, scale = _column_stats(frame[cols].to_numpy(dtype=np.float64, na_value=np.nan))
    return _transform(frame, cols, mean, scale)


@dataclass(frozen=True)
class ZScore:
    """A z-score feature function with FROZEN statistics (picklable, hashable).

    ``ZScore(...)(frame)`` returns ``frame`` plus ``features_{c} = (frame[c] - mean_c) / scale_c`` for
    each ``c`` in ``columns`` (NaN -> 0), the same output layout as :func:`zscore_ohlcv`.

    Attributes:
        columns: the input columns, in output order.
        mean, scale: float64 statistics per column (scale 1 for a constant column).
        timeframe: the timeframe key they were fitted on (informational).
        fit_end: bars that close at or before this instant were used (None: all bars).
        num_bars: number of bars the statistics were fitted on.
    """

    columns: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    timeframe: str | None = None
    fit_end: pd.Timestamp | None = None
    num_bars: int = 0

    def __post_init__(self) -> None:
        if not (len(self.columns) == len(self.mean) == len(self.scale)):
            raise ValueError("ZScore: columns, mean and scale must have the same length")
        if any(not np.isfinite(s) or s <= 0 for s in self.scale):
            raise ValueError(f"ZScore: every scale must be finite and > 0, got {self.scale}")

    @classmethod
    def fit(cls, bars: pd.DataFrame, columns: Sequence[str] = OHLCV_COLUMNS, **info: Any) -> ZScore:
        """Fit on all rows of ``bars`` (``[N, C]``); ``info`` fills the informational fields."""
        cols = tuple(columns)
        missing = [c for c in cols if c not in bars.columns]
        if missing:
            raise ValueError(f"z-score fit: no column(s) {missing} in the bars ({list(bars.columns)}).")
        mean, scale = _column_stats(bars[list(cols)].to_numpy(dtype=np.float64, na_value=np.nan))
        return cls(
            columns=cols,
            mean=tuple(float(m) for m in mean),
            scale=tuple(float(s) for s in scale),
            num_bars=len(bars),
            **info,
        )

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        return _transform(frame, self.columns, np.asarray(self.mean, np.float64), np.asarray(self.scale, np.float64))


def _as_naive_utc(t: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def fit_zscore(
    data: Any,
    time_frames: str | Timeframe | Sequence[str | Timeframe],
    execute_on: str | Timeframe,
    fit_end: Any = None,
    *,
    columns: Sequence[str] = OHLCV_COLUMNS,
    allow_missing: bool = False,
) -> tuple[ZScore, ...]:
    """Causal z-score: fit frozen mean/std per timeframe on bars that are complete by ``fit_end``.

    The bars are those :func:`build_market` gives the feature function (same resampling, same labels:
    START labels, END labels for timeframes coarser than ``execute_on``). A bar is used iff its whole
    bin lies before ``fit_end``: bin end ``= label + P_tf`` for START-labelled bars, ``= label`` for
    END-labelled ones, and bin end ``<= fit_end``. So no value at or after ``fit_end`` enters the
    statistics, even when ``fit_end`` is not on a bar boundary.

    Args:
        data: anything :func:`~trading_jax.ohlcv.load_ohlcv` accepts (typically the training slice,
            or the full history together with ``fit_end``).
        time_frames: the timeframes of the market(s) these functions will be used with.
        execute_on: the execution timeframe (decides which frames are END-labelled).
        fit_end: exclusive end of the fitting span (str / Timestamp; tz-aware is converted to UTC).
            ``None``: every bar of ``data`` (then each function equals :func:`zscore_ohlcv` on
            ``data``'s bars).
        columns: the bar columns to z-score (default OHLCV; aux columns may be added).
        allow_missing: forwarded to ``load_ohlcv``.

    Returns:
        One :class:`ZScore` per timeframe, in ``time_frames`` order: pass the tuple as ``features=``
        to :func:`build_market` for the train market AND the test market.

    Raises:
        ValueError: no complete bar before ``fit_end`` for some timeframe, or an unknown column.
    """
    tfs, _, exec_tf = normalize_timeframes(time_frames, 1, execute_on)
    frame = load_ohlcv(data, allow_missing=allow_missing)
    end = None if fit_end is None else _as_naive_utc(fit_end)
    out = []
    for tf in tfs:
        bars = resample_bars(frame, tf, exec_tf)
        if end is not None:
            bin_end = bars.index if tf > exec_tf else bars.index + tf.timedelta
            bars = bars.loc[bin_end <= end]
            if len(bars) == 0:
                raise ValueError(
                    f"fit_zscore: no complete {tf.key} bar ends at or before fit_end={end} (data starts "
                    f"{frame.index[0]}); move fit_end later or give more data."
                )
        out.append(ZScore.fit(bars, columns, timeframe=tf.key, fit_end=end))
    return tuple(out)


#: Feature functions addressable by name in ``build_market(features=...)`` (e.g. from a config file).
FEATURE_FUNCTIONS = {"zscore_ohlcv": zscore_ohlcv}
