"""The oracle's minimal execution-bar builder (§1.2, §1.3, §1.5): the one deliberate second implementation
of the execution timeline of `trading_jax`, for golden replay. No JAX."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

_UNITS = {
    "min": 1, "minute": 1, "minutes": 1, "m": 1,
    "hour": 60, "hours": 60, "h": 60, "hr": 60,
    "day": 1440, "days": 1440, "d": 1440,
}  # fmt: skip


def parse_timeframe(tf: str) -> tuple[int, int, str]:
    """``"5Min"`` -> ``(minutes, value, pandas_freq)``."""
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]+)\s*", str(tf))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"timeframe {tf!r}: expected '<int><unit>' with unit min/hour/day")
    v, per = int(m.group(1)), _UNITS[m.group(2).lower()]
    freq = {1: f"{v}min", 60: f"{v}h", 1440: f"{v}D"}[per]
    return v * per, v, freq


def _prepare(frame: pd.DataFrame) -> pd.DataFrame:
    df = frame.copy()
    if "timestamp" in df.columns:
        df["timestamp"] = pd.to_datetime(df["timestamp"], errors="coerce")
        df = df.set_index("timestamp")
    return df.sort_index(kind="stable")[["open", "high", "low", "close", "volume"]].astype(np.float64)


def _agg(df: pd.DataFrame, freq: str) -> pd.DataFrame:
    r = df.resample(freq)
    return pd.DataFrame(
        {"open": r["open"].first(), "high": r["high"].max(), "low": r["low"].min(),
         "close": r["close"].last(), "volume": r["volume"].sum()}
    )  # fmt: skip


def build_exec_bars(
    frame: pd.DataFrame,
    time_frames: Sequence[str] | str,
    window_sizes: Sequence[int] | int,
    execute_on: str,
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Execution bars ``[T, 4]`` float32 (open, high, low, close) and their start labels ``[T]``.

    ``frame``: OHLCV with a ``timestamp`` column (or a DatetimeIndex). Follows §1.3 (only the first kept
    label per timeframe is needed) and §1.5 (min_start_time, per-field fill, float32 cast last).
    """
    tfs = [time_frames] if isinstance(time_frames, str) else list(time_frames)
    ws = [int(window_sizes)] * len(tfs) if isinstance(window_sizes, int) else [int(w) for w in window_sizes]
    if len(ws) != len(tfs):
        raise ValueError(f"window_sizes={window_sizes}: need one per timeframe ({len(tfs)})")
    df = _prepare(frame)
    p_e, _, freq_e = parse_timeframe(execute_on)
    first_labels, lookbacks, offsets = [], [], [0]
    for tf, w in zip(tfs, ws, strict=True):
        p, _, freq = parse_timeframe(tf)
        kept = _agg(df, freq).dropna(subset=["open", "high", "low", "close", "volume"])
        if kept.empty:
            raise ValueError(f"time_frames: {tf} has no complete bar")
        lab = kept.index[0]
        if p > p_e:
            lab = lab + pd.Timedelta(minutes=p)
            offsets.append(p)
        first_labels.append(lab)
        lookbacks.append(p * w)
    min_start = max(first_labels) + pd.Timedelta(minutes=max(lookbacks)) + pd.Timedelta(minutes=max(offsets))
    raw = _agg(df, freq_e)
    fill = raw.ffill()
    close = fill["close"].to_numpy()
    o = raw["open"].to_numpy().copy()
    h = raw["high"].to_numpy().copy()
    lo = raw["low"].to_numpy().copy()
    for x in (o, h, lo):
        nan = np.isnan(x)
        x[nan] = close[nan]
    h = np.maximum(h, o)
    lo = np.minimum(lo, o)
    close = np.minimum(np.maximum(close, lo), h)
    keep = raw.index >= min_start
    if not keep.any():
        raise ValueError("window duration too large: no execution bar after the lookback (T_total == 0)")
    bars = np.stack([o, h, lo, close], axis=1)[keep].astype(np.float32)
    return bars, raw.index[keep]
