"""Host-side market data pipeline: load and validate OHLCV, resample, build the execution timeline and
the per-timeframe observation tables (spec §1.1, §1.3-§1.6).

Everything here runs once, on the host, with pandas + numpy. The result is a :class:`Market` whose
``data`` field (:class:`MarketData`) is a small pytree of device arrays; inside ``jit`` a window is a
single dynamic slice::

    j = data.row_index[k][i]                       # newest visible row of timeframe k at exec bar i
    window = data.features[k][j + 1 : j + 1 + w_k]  # [w_k, F_k] oldest first (zero rows = left padding)

Missing data. By default :func:`load_ohlcv` rejects NaN in the OHLCV columns. TorchTrade itself
accepts rows with single missing price fields (they pass its checks; the observation frames drop
the bins with a NaN and the execution bar is filled per field from the close, §1.5). Pass
``allow_missing=True`` to :func:`load_ohlcv` / :func:`build_market` to get exactly that behaviour
(the golden case ``pad_gappy_start`` needs it).
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from trading_jax.timeframes import Timeframe, normalize_timeframes

__all__ = [
    "OHLCV_COLUMNS",
    "MarketData",
    "Market",
    "load_ohlcv",
    "build_market",
    "resample_bars",
    "execution_bars",
]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", *OHLCV_COLUMNS)
FEATURE_PREFIX = "features_"
_OHLCV_AGG = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}

# Common alternative spellings, used only to suggest a rename in error messages.
_ALIASES = {
    "timestamp": ("time", "date", "datetime", "ts", "open_time", "opentime", "time_stamp", "date_time"),
    "open": ("o", "opening", "open_price"),
    "high": ("h", "hi", "max", "high_price"),
    "low": ("l", "lo", "min", "low_price"),
    "close": ("c", "closing", "close_price", "last", "price"),
    "volume": ("v", "vol", "volumes", "base_volume", "qty", "amount"),
}

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]
FeaturesArg = None | str | FeatureFn | Sequence[None | str | FeatureFn]


# ------------------------------------------------------------------------------------------------
# Containers
# ------------------------------------------------------------------------------------------------
@flax.struct.dataclass
class MarketData:
    """Device-side market tables (a pytree; lives in ``EnvParams``).

    Attributes:
        ohlc: ``[T, 4]`` float32 execution bars (open, high, low, close), spec §1.5.
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
        """Observation keys ``market_data_{key}_{w}``, in ``time_frames`` order."""
        return tuple(f"market_data_{tf.key}_{w}" for tf, w in zip(self.time_frames, self.window_sizes, strict=True))

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
# Loading and validation (§1.1)
# ------------------------------------------------------------------------------------------------
def _read_source(source: Any) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name.lower()
        if not path.exists():
            raise FileNotFoundError(f"OHLCV file not found: {str(path)!r}")
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        raise ValueError(
            f"Unsupported OHLCV file type {path.name!r}: use .csv, .csv.gz or .parquet, "
            "or load it yourself and pass a pandas DataFrame."
        )
    raise ValueError(
        f"OHLCV source must be a pandas DataFrame or a path to a .csv/.csv.gz/.parquet file, got "
        f"{type(source).__name__}."
    )


def _suggest(missing: str, present: list[str], taken: set[str]) -> str | None:
    candidates = [c for c in present if c not in taken and c not in REQUIRED_COLUMNS]
    for c in candidates:  # same name up to case / spaces / underscores
        if c.strip().lower().replace(" ", "").replace("_", "") == missing.replace("_", ""):
            return c
    for c in candidates:
        if c.strip().lower() in _ALIASES.get(missing, ()):
            return c
    lowered = {c.strip().lower(): c for c in candidates}
    close = difflib.get_close_matches(missing, list(lowered), n=1, cutoff=0.75)
    return lowered[close[0]] if close else None


def _normalize_columns(df: pd.DataFrame) -> pd.DataFrame:
    # A timestamp held in the index (e.g. a frame returned by load_ohlcv) becomes a column.
    if "timestamp" not in df.columns and (df.index.name == "timestamp" or isinstance(df.index, pd.DatetimeIndex)):
        df = df.rename_axis("timestamp").reset_index()
    cols = [str(c) for c in df.columns]
    dup = sorted({c for c in cols if cols.count(c) > 1})
    if dup:
        raise ValueError(f"OHLCV data has duplicate column name(s) {dup}; every column name must be unique.")
    df.columns = cols
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        hints: dict[str, str] = {}
        for m in missing:
            s = _suggest(m, cols, set(hints))
            if s is not None:
                hints[s] = m
        msg = (
            f"OHLCV data is missing required column(s) {missing} (names are exact and lower case: "
            f"{list(REQUIRED_COLUMNS)}). Found columns: {cols}."
        )
        if hints:
            pairs = ", ".join(f"{old!r} -> {new!r}" for old, new in hints.items())
            msg += f" Did you mean {pairs}? Rename them, e.g. df.rename(columns={hints!r})."
        raise ValueError(msg)
    return df


def _where(ts: pd.Series | pd.DatetimeIndex, positions: np.ndarray, limit: int = 3) -> str:
    """'row 5 (timestamp 2024-01-01 00:05:00), row 9 (...) and 4 more' (0-based input rows)."""
    parts = []
    for p in positions[:limit]:
        t = ts[int(p)] if isinstance(ts, pd.DatetimeIndex) else ts.iloc[int(p)]
        parts.append(f"row {int(p)} (timestamp {t})")
    more = len(positions) - limit
    return ", ".join(parts) + (f" and {more} more" if more > 0 else "")


def _parse_timestamps(raw: pd.Series) -> pd.DatetimeIndex:
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        raise ValueError(
            f"column 'timestamp' is numeric ({raw.dtype}, first value {raw.iloc[0]!r}); epoch numbers are "
            "ambiguous. Convert it first, e.g. df['timestamp'] = pd.to_datetime(df['timestamp'], unit='ms')."
        )
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        ts = raw.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        ts = raw
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # format-inference chatter; failures are reported below
            ts = pd.to_datetime(raw, errors="coerce", utc=True)
            if (ts.isna() & raw.notna()).any():
                ts = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        ts = ts.dt.tz_localize(None)
    bad = np.flatnonzero(ts.isna().to_numpy())
    if len(bad):
        shown = ", ".join(f"row {int(p)}: {raw.iloc[int(p)]!r}" for p in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(
            f"column 'timestamp' has {len(bad)} missing or unparseable value(s) ({shown}{more}). "
            "Use ISO 8601 datetimes such as '2024-01-01 00:00:00' or '2024-01-01T00:00:00Z', "
            "or drop those rows."
        )
    return pd.DatetimeIndex(ts, name="timestamp").as_unit("ns")


def load_ohlcv(source: Any, *, allow_missing: bool = False) -> pd.DataFrame:
    """Load and validate OHLCV bars (spec §1.1).

    Args:
        source: a DataFrame (``timestamp`` as a column or as a DatetimeIndex) or a path to a
            ``.csv``, ``.csv.gz`` or ``.parquet`` file. Required columns (exact, lower case):
            ``timestamp, open, high, low, close, volume``; any other column is auxiliary and is
            kept, in input order.
        allow_missing: accept NaN in individual OHLCV fields (TorchTrade's behaviour: such bins
            drop out of the observation frames, execution bars are filled per field, §1.5).
            Default False: any NaN in OHLCV is an error.

    Returns:
        DataFrame indexed by a tz-naive ``DatetimeIndex`` named ``"timestamp"`` (tz-aware input is
        converted to UTC, then made naive), stably sorted by time, columns
        ``["open", "high", "low", "close", "volume", *aux]`` with float64 OHLCV.

    Raises:
        ValueError: missing/misnamed columns (with rename suggestions), unparseable or missing
            timestamps, non-numeric / NaN (unless ``allow_missing``) / infinite OHLCV values,
            non-positive prices, negative volume, malformed bars (``high < max(open, close)`` or
            ``low > min(open, close)``), duplicate timestamps, or no rows. Each message names
            the column and the (0-based, input-order) row with its timestamp.
    """
    df = _normalize_columns(_read_source(source))
    if len(df) == 0:
        raise ValueError("OHLCV data has no rows; provide at least one bar.")
    ts = _parse_timestamps(df["timestamp"].reset_index(drop=True))

    values: dict[str, np.ndarray] = {}
    for col in OHLCV_COLUMNS:
        s = df[col].reset_index(drop=True)
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            num = pd.to_numeric(s, errors="coerce")
            bad = np.flatnonzero((num.isna() & s.notna()).to_numpy())
            if len(bad):
                p = int(bad[0])
                raise ValueError(
                    f"column {col!r} has a non-numeric value {s.iloc[p]!r} at {_where(ts, bad[:1])}"
                    f"{f' ({len(bad)} such values)' if len(bad) > 1 else ''}; prices and volume must "
                    "be numbers. Fix or drop those rows."
                )
            s = num
        values[col] = s.to_numpy(dtype=np.float64, na_value=np.nan)

    for col in OHLCV_COLUMNS:
        bad = np.flatnonzero(np.isinf(values[col]))
        if len(bad):
            raise ValueError(f"column {col!r} has an infinite value at {_where(ts, bad)}; replace or drop those rows.")
    if not allow_missing:
        for col in OHLCV_COLUMNS:
            bad = np.flatnonzero(np.isnan(values[col]))
            if len(bad):
                total = sum(int(np.isnan(values[c]).sum()) for c in OHLCV_COLUMNS)
                raise ValueError(
                    f"column {col!r} has a missing (NaN) value at {_where(ts, bad)} ({total} missing "
                    "OHLCV value(s) in total). Fill or drop those rows, or pass allow_missing=True to "
                    "keep them with TorchTrade's semantics (the bin drops out of the observation frames "
                    "and the execution bar is filled from its close, spec §1.5)."
                )
    for col in PRICE_COLUMNS:
        bad = np.flatnonzero(values[col] <= 0)
        if len(bad):
            p = int(bad[0])
            raise ValueError(
                f"column {col!r} has a non-positive price {float(values[col][p])!r} at "
                f"{_where(ts, bad)}; prices must be > 0. Fix or drop those rows."
            )
    bad = np.flatnonzero(values["volume"] < 0)
    if len(bad):
        p = int(bad[0])
        raise ValueError(
            f"column 'volume' has a negative value {float(values['volume'][p])!r} at "
            f"{_where(ts, bad)}; volume must be >= 0. Fix or drop those rows."
        )
    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    with np.errstate(invalid="ignore"):
        top = np.fmax(o, c)  # NaN-skipping: a missing open/close does not hide a bad high
        bottom = np.fmin(o, c)
        bad_hi = np.flatnonzero(h < top)
        bad_lo = np.flatnonzero(lo > bottom)
    if len(bad_hi):
        p = int(bad_hi[0])
        raise ValueError(
            f"column 'high' is below max(open, close) at {_where(ts, bad_hi)}: high={float(h[p])!r}, "
            f"open={float(o[p])!r}, close={float(c[p])!r}. A bar needs high >= max(open, close) and "
            "low <= min(open, close); fix or drop those rows."
        )
    if len(bad_lo):
        p = int(bad_lo[0])
        raise ValueError(
            f"column 'low' is above min(open, close) at {_where(ts, bad_lo)}: low={float(lo[p])!r}, "
            f"open={float(o[p])!r}, close={float(c[p])!r}. A bar needs high >= max(open, close) and "
            "low <= min(open, close); fix or drop those rows."
        )

    dup_mask = ts.duplicated(keep=False)
    if dup_mask.any():
        first_dup = ts[dup_mask][0]
        rows = np.flatnonzero(ts == first_dup)
        n_dup = int(ts.duplicated().sum())
        raise ValueError(
            f"column 'timestamp' has duplicate value {first_dup} at rows "
            f"{', '.join(str(int(r)) for r in rows[:5])} ({n_dup} duplicated timestamp(s) in total). "
            "Each bar needs a unique timestamp: drop duplicates, e.g. "
            "df.drop_duplicates('timestamp', keep='last'), or aggregate them."
        )

    aux = [col for col in df.columns if col not in REQUIRED_COLUMNS]
    out = pd.DataFrame(values, index=ts)
    for col in aux:
        out[col] = df[col].to_numpy()
    out.index.name = "timestamp"
    return out.sort_index(kind="stable")


# ------------------------------------------------------------------------------------------------
# Resampling (§1.3) and execution bars (§1.5)
# ------------------------------------------------------------------------------------------------
def resample_bars(frame: pd.DataFrame, tf: Timeframe, execute_on: Timeframe) -> pd.DataFrame:
    """One observation timeframe's bars, exactly as a feature function receives them (spec §1.3).

    ``frame`` is a validated frame from :func:`load_ohlcv`. Bins (left-closed, start-labelled,
    anchored at midnight of the first day) are aggregated open=first, high=max, low=min, close=last,
    volume=sum, aux=last; bins with a NaN in OHLCV (empty bins) are dropped; aux columns are
    forward-filled, then leading NaN -> 0. A timeframe coarser than ``execute_on`` is relabelled by
    bin END (``start + P_tf``).

    Returns:
        DataFrame ``[R, 5 + n_aux]`` indexed by labels named ``"timestamp"``.

    Raises:
        ValueError: no complete bin at this timeframe.
    """
    aux = [c for c in frame.columns if c not in OHLCV_COLUMNS]
    agg = {**_OHLCV_AGG, **{c: "last" for c in aux}}
    bars = frame.resample(tf.pandas_freq).agg(agg).dropna(subset=list(OHLCV_COLUMNS))
    if aux:
        bars[aux] = bars[aux].ffill().fillna(0)
    if len(bars) == 0:
        raise ValueError(
            f"timeframe {tf.key}: no complete bar (every {tf.key} bin has a missing OHLCV field); "
            "provide more data or fill the missing fields."
        )
    if tf > execute_on:
        bars.index = bars.index + tf.timedelta
    bars.index.name = "timestamp"
    return bars


def execution_bars(frame: pd.DataFrame, execute_on: Timeframe) -> pd.DataFrame:
    """Execution bars over the FULL ``execute_on`` grid, empty bins included (spec §1.5), float64.

    Per bin: OHLCV aggregated as in :func:`resample_bars` (aux ignored); ``close`` forward-filled down
    the grid; each missing open/high/low taken from that close; ``high = max(high, open)``,
    ``low = min(low, open)``; ``close`` clipped into ``[low, high]``; volume 0 for an empty bin.
    Leading bins before the first close stay NaN (they always precede ``min_start_time``).

    Returns:
        DataFrame ``[G, 5]`` (open, high, low, close, volume) plus a bool column ``missing_close``
        (the bin had no close of its own), indexed by bin START labels.
    """
    raw = frame[list(OHLCV_COLUMNS)].resample(execute_on.pandas_freq).agg(_OHLCV_AGG)
    filled = raw.ffill()
    close = filled["close"].to_numpy(np.float64)
    cols = {}
    for x in ("open", "high", "low"):
        v = raw[x].to_numpy(np.float64)
        cols[x] = np.where(np.isnan(v), close, v)
    high = np.maximum(cols["high"], cols["open"])
    low = np.minimum(cols["low"], cols["open"])
    close = np.minimum(np.maximum(close, low), high)
    out = pd.DataFrame(
        {
            "open": cols["open"],
            "high": high,
            "low": low,
            "close": close,
            "volume": filled["volume"].to_numpy(np.float64),
            "missing_close": raw["close"].isna().to_numpy(),
        },
        index=raw.index,
    )
    out.index.name = "timestamp"
    return out


# ------------------------------------------------------------------------------------------------
# Features (§1.4)
# ------------------------------------------------------------------------------------------------
def _resolve_feature_entry(entry: Any, where: str) -> FeatureFn | None:
    if entry is None:
        return None
    if isinstance(entry, str):
        from trading_jax.features import FEATURE_FUNCTIONS  # local import: features imports market

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
            stacklevel=3,
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
            or a sequence with one entry (callable, name or None) per timeframe (spec §1.4).
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

    # §1.5: min_start_time (the coarse offset is counted twice, Q12) and the execution timeline.
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
            "empty), and the agent steps through them (spec §1.5, Q14).",
            UserWarning,
            stacklevel=2,
        )
    ohlc64 = bars_kept[list(PRICE_COLUMNS)].to_numpy(np.float64)
    if not np.isfinite(ohlc64).all():  # cannot happen after validation; guard the invariant anyway
        raise ValueError("internal: non-finite execution bar after min_start_time; please report this.")
    ohlc = ohlc64.astype(np.float32)  # cast last (§1.5)
    exec_times = pd.DatetimeIndex(bars_kept.index, name="timestamp")

    # §1.6: row index per timeframe, j = searchsorted(labels, key, 'right') - 1.
    exec_ns = exec_times.as_unit("ns").asi8
    p_e_ns = exec_tf.timedelta.value
    row_index: list[np.ndarray] = []
    padded: list[np.ndarray] = []
    for tf, w, ff, arr in zip(tfs, ws, feat_frames, feat_arrays, strict=True):
        labels_ns = pd.DatetimeIndex(ff.index).as_unit("ns").asi8
        key = exec_ns + p_e_ns - tf.timedelta.value if tf < exec_tf else exec_ns
        j = np.searchsorted(labels_ns, key, side="right") - 1
        row_index.append(j.astype(np.int32))
        padded.append(np.concatenate([np.zeros((w, arr.shape[1]), np.float32), arr], axis=0))

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
