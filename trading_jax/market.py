"""The market tables: the execution timeline and the per-timeframe observation tables (docs/semantics.md §1.3–§1.6).

Everything here runs once, on the host, with pandas + numpy; the raw bars come from
:mod:`trading_jax.ohlcv`. The result is a :class:`Market` whose ``data`` field (:class:`MarketData`) is a
small pytree of device arrays; inside ``jit`` a window is a single dynamic slice::

    j = data.row_index[k][i]                       # newest visible row of timeframe k at exec bar i
    window = data.features[k][j + 1 : j + 1 + w_k]  # [w_k, F_k] oldest first (zero rows = left padding)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from trading_jax.features import FEATURE_FUNCTIONS
from trading_jax.ohlcv import OHLCV_COLUMNS, PRICE_COLUMNS, execution_bars, load_ohlcv, resample_bars
from trading_jax.timeframes import Timeframe, normalize_timeframes

__all__ = [
    "OHLCV_COLUMNS",
    "MarketData",
    "Market",
    "load_ohlcv",
    "build_market",
    "observation_key",
    "resample_bars",
    "execution_bars",
]

FEATURE_PREFIX = "features_"

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]
FeaturesArg = None | str | FeatureFn | Sequence[None | str | FeatureFn]


def observation_key(tf: Timeframe, window: int) -> str:
    """The observation key of one timeframe's window, ``market_data_{key}_{w}`` (docs/semantics.md §1.7)."""
    return f"market_data_{tf.key}_{window}"


# ------------------------------------------------------------------------------------------------
# Containers
# ------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class MarketData:
    """Device-side market tables (a pytree; lives in ``EnvParams``).

    Attributes:
        ohlc: ``[T, 4]`` float32 execution bars (open, high, low, close), docs/semantics.md §1.5.
        features: per timeframe k, ``[w_k + R_k, F_k]`` float32; the first ``w_k`` rows are zero (left
            padding), then the ``R_k`` feature rows in time order.
        row_index: per timeframe k, ``[T]`` int32: ``j`` = newest visible feature row at each execution
            bar (0-based, UNPADDED index into the ``R_k`` rows; ``j - w_k + 1`` may be negative on
            gappy data, then the window starts with zero rows).

    Window k at exec index i: ``features[k][row_index[k][i] + 1 : row_index[k][i] + 1 + w_k]``.
    """

    ohlc: jax.Array
    features: tuple[jax.Array, ...]
    row_index: tuple[jax.Array, ...]


@dataclass(frozen=True, eq=False)
class Market:
    """Host-side result of :func:`build_market`.

    Attributes:
        data: the device tables (:class:`MarketData`).
        exec_times: ``[T]`` execution bar START labels (``exec_times[0]`` is the first exec time).
        time_frames, window_sizes, execute_on: the normalised timeframe config.
        feature_names: per timeframe, the feature column names (window column order).
        feature_frames: per timeframe, the ``[R_k, F_k]`` float32 feature rows (unpadded) indexed by
            their label (START labels, END labels for frames coarser than ``execute_on``).
        exec_bars: ``[T]`` rows: open, high, low, close (float32, the values in ``data.ohlc``) and
            volume (float64, 0 for an empty bin), indexed by ``exec_times``.
        min_start_time: the first admissible execution label (§1.5).
    """

    data: MarketData
    exec_times: pd.DatetimeIndex
    time_frames: tuple[Timeframe, ...]
    window_sizes: tuple[int, ...]
    execute_on: Timeframe
    feature_names: tuple[tuple[str, ...], ...]
    feature_frames: tuple[pd.DataFrame, ...]
    exec_bars: pd.DataFrame
    min_start_time: pd.Timestamp

    @property
    def num_bars(self) -> int:
        """``T``: number of execution bars."""
        return len(self.exec_times)

    @property
    def obs_keys(self) -> tuple[str, ...]:
        """Observation keys (:func:`observation_key`), in ``time_frames`` order."""
        return tuple(observation_key(tf, w) for tf, w in zip(self.time_frames, self.window_sizes, strict=True))

    @property
    def window_shapes(self) -> tuple[tuple[int, int], ...]:
        """Per timeframe ``(w_k, F_k)``."""
        return tuple((w, len(n)) for w, n in zip(self.window_sizes, self.feature_names, strict=True))

    def windows_at(self, i: int) -> dict[str, np.ndarray]:
        """Host helper: the observation windows at exec index ``i`` as ``{key: [w, F] float32}``."""
        if not 0 <= i < self.num_bars:
            raise IndexError(f"exec index {i} out of range [0, {self.num_bars})")
        out = {}
        for key, w, feats, rows in zip(
            self.obs_keys, self.window_sizes, self.data.features, self.data.row_index, strict=True
        ):
            j = int(rows[i])
            out[key] = np.asarray(feats[j + 1 : j + 1 + w])
        return out


# ------------------------------------------------------------------------------------------------
# Features (§1.4)
# ------------------------------------------------------------------------------------------------
def _resolve_feature_entry(entry: Any, where: str) -> FeatureFn | None:
    if entry is None:
        return None
    if isinstance(entry, str):
        if entry not in FEATURE_FUNCTIONS:
            raise ValueError(
                f"{where}: unknown feature function name {entry!r}; known names: "
                f"{sorted(FEATURE_FUNCTIONS)} (or pass a callable fn(frame) -> frame, or None for raw OHLCV)."
            )
        return FEATURE_FUNCTIONS[entry]
    if callable(entry):
        return entry
    raise ValueError(
        f"{where}: expected None, a callable fn(frame) -> frame or a feature function name, got "
        f"{type(entry).__name__} {entry!r}."
    )


def _normalize_features(features: FeaturesArg, tfs: tuple[Timeframe, ...]) -> list[FeatureFn | None]:
    if features is None or isinstance(features, str) or callable(features):
        fn = _resolve_feature_entry(features, "features")
        return [fn] * len(tfs)
    try:
        entries = list(features)
    except TypeError:
        raise ValueError(
            f"features must be None, a callable, a name, or one entry per timeframe; got {type(features).__name__}."
        ) from None
    if len(entries) != len(tfs):
        raise ValueError(
            f"features has {len(entries)} entries but time_frames has {len(tfs)} "
            f"({[t.key for t in tfs]}); give one entry (callable or None) per timeframe, "
            "or a single callable."
        )
    return [
        _resolve_feature_entry(e, f"features[{i}] ({tf.key})")
        for i, (e, tf) in enumerate(zip(entries, tfs, strict=True))
    ]


def _apply_feature_fn(fn: FeatureFn, bars: pd.DataFrame, tf: Timeframe) -> pd.DataFrame:
    name = getattr(fn, "__name__", type(fn).__name__)
    out = fn(bars.copy())
    if not isinstance(out, pd.DataFrame):
        raise ValueError(
            f"feature function {name!r} for timeframe {tf.key} returned {type(out).__name__}; it must "
            "return a DataFrame with a 'timestamp' column and 'features_*' columns."
        )
    cols = [c for c in out.columns if isinstance(c, str) and c.startswith(FEATURE_PREFIX)]
    if not cols:
        raise ValueError(
            f"feature function {name!r} for timeframe {tf.key} produced no columns starting with "
            f"'{FEATURE_PREFIX}'. Add columns like 'features_close', 'features_volume'."
        )
    if "timestamp" in out.columns:
        labels = out["timestamp"]
    elif out.index.name == "timestamp":
        labels = out.index
    else:
        raise ValueError(
            f"feature function {name!r} for timeframe {tf.key} returned no 'timestamp' column; keep the "
            "bar labels, e.g. start with df = df.copy().reset_index()."
        )
    try:
        labels = pd.DatetimeIndex(labels, name="timestamp").as_unit("ns")
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"feature function {name!r} for timeframe {tf.key}: its 'timestamp' values are not datetimes ({err})."
        ) from None
    ok = labels.notna().all() and labels.is_monotonic_increasing and labels.is_unique
    if not ok:
        raise ValueError(
            f"feature function {name!r} for timeframe {tf.key} returned 'timestamp' values that are not "
            "strictly increasing (or are missing); keep one row per bar, in time order."
        )
    feats = out[cols].copy()
    feats.index = labels
    return feats


def _to_float32(frame: pd.DataFrame, tf: Timeframe, raw: bool) -> np.ndarray:
    cols = []
    for name in frame.columns:
        col = frame[name]
        try:
            cols.append(col.to_numpy(dtype=np.float32, na_value=np.nan))
        except (TypeError, ValueError):
            fix = (
                "drop it or pass a features= function that drops it"
                if raw
                else "make the feature function return numbers"
            )
            raise ValueError(
                f"timeframe {tf.key}: column {name!r} ({col.dtype}) cannot be converted to float32 features; {fix}."
            ) from None
    arr = np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0), np.float32)
    nonfinite = [str(n) for n, c in zip(frame.columns, cols, strict=True) if not np.isfinite(c).all()]
    if nonfinite:
        warnings.warn(
            f"timeframe {tf.key}: feature column(s) {nonfinite} contain NaN or inf; they will reach the "
            "observations unchanged. Fill them in the feature function (e.g. df.fillna(0)).",
            UserWarning,
            stacklevel=4,  # build_market's caller
        )
    return arr


# ------------------------------------------------------------------------------------------------
# build_market (§1.3-§1.6)
# ------------------------------------------------------------------------------------------------
def build_market(
    frame_or_source: Any,
    time_frames: str | Timeframe | Sequence[str | Timeframe] = "1Hour",
    window_sizes: int | Sequence[int] = 10,
    execute_on: str | Timeframe = "1Hour",
    features: FeaturesArg = None,
    *,
    allow_missing: bool = False,
) -> Market:
    """Build the execution timeline and observation tables.

    Args:
        frame_or_source: anything :func:`load_ohlcv` accepts (it is validated again here).
        time_frames: one timeframe or a list (``"1Hour"``, ``["5Min", "1Hour"]``).
        window_sizes: an int (broadcast) or one int >= 1 per timeframe.
        execute_on: the execution timeframe.
        features: ``None`` (raw OHLCV + aux columns, the reference default), a callable
            ``fn(frame) -> frame`` applied to every timeframe, a built-in name (``"zscore_ohlcv"``),
            or a sequence with one entry (callable, name or None) per timeframe (docs/semantics.md §1.4).
        allow_missing: forwarded to :func:`load_ohlcv`.

    Returns:
        :class:`Market`; ``market.data.ohlc`` is ``[T, 4]`` float32.

    Raises:
        ValueError: invalid data (see :func:`load_ohlcv`), invalid timeframe/window/features
            arguments, a feature function output without ``features_*`` columns, or too little data
            for the requested windows (no execution bar at or after ``min_start_time``).
    """
    tfs, ws, exec_tf = normalize_timeframes(time_frames, window_sizes, execute_on)
    fns = _normalize_features(features, tfs)
    frame = load_ohlcv(frame_or_source, allow_missing=allow_missing)
    _check_float32_prices(frame[list(PRICE_COLUMNS)].to_numpy(np.float64))
    feat_frames, feat_arrays = _feature_tables(frame, tfs, exec_tf, fns)
    bars_kept, min_start_time = _execution_timeline(frame, tfs, ws, exec_tf, feat_frames)
    ohlc64 = bars_kept[list(PRICE_COLUMNS)].to_numpy(np.float64)
    if not np.isfinite(ohlc64).all():  # cannot happen after validation; guard the invariant anyway
        raise ValueError("internal: non-finite execution bar after min_start_time; please report this.")
    ohlc = ohlc64.astype(np.float32)  # cast last (§1.5)
    exec_times = pd.DatetimeIndex(bars_kept.index, name="timestamp")
    row_index = _row_index(exec_times, tfs, exec_tf, feat_frames)
    padded = [
        np.concatenate([np.zeros((w, arr.shape[1]), np.float32), arr], axis=0)
        for w, arr in zip(ws, feat_arrays, strict=True)
    ]

    exec_frame = pd.DataFrame(ohlc, index=exec_times, columns=list(PRICE_COLUMNS))
    exec_frame["volume"] = bars_kept["volume"].to_numpy(np.float64)
    data = MarketData(
        ohlc=jnp.asarray(ohlc),
        features=tuple(jnp.asarray(p) for p in padded),
        row_index=tuple(jnp.asarray(r) for r in row_index),
    )
    return Market(
        data=data,
        exec_times=exec_times,
        time_frames=tfs,
        window_sizes=ws,
        execute_on=exec_tf,
        feature_names=tuple(tuple(f.columns) for f in feat_frames),
        feature_frames=tuple(feat_frames),
        exec_bars=exec_frame,
        min_start_time=min_start_time,
    )


def _check_float32_prices(prices: np.ndarray) -> None:
    """Bars are stored as float32 (§1.5): every price must be a normal float32 number."""
    f32 = np.finfo(np.float32)
    lo, hi = float(np.nanmin(prices)), float(np.nanmax(prices))
    if lo < float(f32.tiny) or hi > float(f32.max):
        raise ValueError(
            f"prices range from {lo:.3g} to {hi:.3g}, outside float32's normal range "
            f"[{f32.tiny:.3g}, {f32.max:.3g}]: bars are stored as float32 (docs/semantics.md §1.5). Rescale the "
            "prices (e.g. quote them in another unit)."
        )


def _feature_tables(frame, tfs, exec_tf, fns) -> tuple[list[pd.DataFrame], list[np.ndarray]]:
    """Per timeframe: the feature rows as a labelled frame and as a ``[R_k, F_k]`` float32 array (§1.3–1.4)."""
    feat_frames: list[pd.DataFrame] = []
    feat_arrays: list[np.ndarray] = []
    for tf, fn in zip(tfs, fns, strict=True):
        bars = resample_bars(frame, tf, exec_tf)
        feats = bars if fn is None else _apply_feature_fn(fn, bars, tf)
        if len(feats) == 0:
            raise ValueError(f"timeframe {tf.key}: the feature function returned no rows.")
        arr = _to_float32(feats, tf, raw=fn is None)
        feat_arrays.append(arr)
        feat_frames.append(pd.DataFrame(arr, index=feats.index, columns=[str(c) for c in feats.columns]))
    return feat_frames, feat_arrays


def _execution_timeline(frame, tfs, ws, exec_tf, feat_frames) -> tuple[pd.DataFrame, pd.Timestamp]:
    """The execution bars from ``min_start_time`` on, and ``min_start_time`` (§1.5).

    ``min_start_time`` counts the coarse offset twice, as the reference does (Q12).
    """
    first_labels = [f.index[0] for f in feat_frames]
    max_lookback = max(tf.timedelta * w for tf, w in zip(tfs, ws, strict=True))
    coarse = [tf.timedelta for tf in tfs if tf > exec_tf]
    max_offset = max(coarse) if coarse else pd.Timedelta(0)
    latest_first = max(first_labels)
    min_start_time = latest_first + max_lookback + max_offset

    grid_bars = execution_bars(frame, exec_tf)
    grid = grid_bars.index
    keep = grid >= min_start_time
    if not keep.any():
        p_e = exec_tf.timedelta
        needed = int(-((min_start_time - grid[0]) // -p_e)) + 1  # ceil, then the first exec bar itself
        detail = ", ".join(f"{tf.key} x {w}" for tf, w in zip(tfs, ws, strict=True))
        raise ValueError(
            f"not enough data for the requested windows ({detail}; execute_on={exec_tf.key}): the first "
            f"execution bar must start at or after {min_start_time} (latest first bar {latest_first} + "
            f"lookback {max_lookback} + coarse offset {max_offset}), i.e. at least {needed} {exec_tf.key} "
            f"bars of data are needed, but only {len(grid)} are available ({grid[0]} .. {grid[-1]}). "
            "Provide more data or reduce window_sizes / the timeframes."
        )
    bars_kept = grid_bars.loc[keep]
    n_gap = int(bars_kept["missing_close"].sum())
    if n_gap:
        first_gap = bars_kept.index[bars_kept["missing_close"].to_numpy()][0]
        warnings.warn(
            f"{n_gap} of {len(bars_kept)} execution bins ({exec_tf.key}) have no close (first at "
            f"{first_gap}); they become bars at the previous close (flat with volume 0 when the bin is "
            "empty), and the agent steps through them (docs/semantics.md §1.5, Q14).",
            UserWarning,
            stacklevel=3,  # build_market's caller
        )
    return bars_kept, min_start_time


def _row_index(exec_times, tfs, exec_tf, feat_frames) -> list[np.ndarray]:
    """Per timeframe, the newest visible feature row at each execution bar (§1.6):
    ``j = searchsorted(labels, key, 'right') - 1``."""
    exec_ns = exec_times.as_unit("ns").asi8
    p_e_ns = exec_tf.timedelta.value
    row_index: list[np.ndarray] = []
    for tf, ff in zip(tfs, feat_frames, strict=True):
        labels_ns = pd.DatetimeIndex(ff.index).as_unit("ns").asi8
        key = exec_ns + p_e_ns - tf.timedelta.value if tf < exec_tf else exec_ns
        j = np.searchsorted(labels_ns, key, side="right") - 1
        row_index.append(j.astype(np.int32))
    return row_index
