"""Raw OHLCV bars: loading, validation and resampling (docs/semantics.md §1.1, §1.3, §1.5).

Everything here runs once, on the host, with pandas + numpy.

Missing data. By default :func:`load_ohlcv` rejects NaN in the OHLCV columns. TorchTrade itself
accepts rows with single missing price fields (they pass its checks; the observation frames drop
the bins with a NaN and the execution bar is filled per field from the close, §1.5). Pass
``allow_missing=True`` to :func:`load_ohlcv` (or :func:`~trading_jax.market.build_market`) to get exactly
that behaviour (the golden case ``pad_gappy_start`` needs it).
"""

from __future__ import annotations

import difflib
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from trading_jax.timeframes import Timeframe

__all__ = ["OHLCV_COLUMNS", "PRICE_COLUMNS", "REQUIRED_COLUMNS", "load_ohlcv", "resample_bars", "execution_bars"]

OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp", *OHLCV_COLUMNS)
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


# ------------------------------------------------------------------------------------------------
# Reading and column names (§1.1)
# ------------------------------------------------------------------------------------------------
# What pandas / pyarrow raise on a file that is not what its name says: a bad or truncated gzip (OSError,
# EOFError, zlib.error), binary or badly encoded text (UnicodeDecodeError, pandas' ParserError), a broken
# Parquet file (pyarrow's ArrowInvalid, a ValueError).
_UNREADABLE = (OSError, EOFError, zlib.error, UnicodeDecodeError, pd.errors.ParserError, ValueError)


def _read_file(path: Path) -> pd.DataFrame:
    """Read a .csv / .csv.gz / .parquet file; every failure is one error that names the file."""
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"OHLCV file not found: {str(path)!r}")
    if path.is_dir():
        raise ValueError(f"OHLCV path {str(path)!r} is a directory; give a .csv, .csv.gz or .parquet file.")
    if name.endswith((".csv", ".csv.gz")):
        kind, read = "CSV" + (" (gzip)" if name.endswith(".gz") else ""), pd.read_csv
    elif name.endswith((".parquet", ".pq")):
        kind, read = "Parquet", pd.read_parquet
    else:
        raise ValueError(
            f"Unsupported OHLCV file type {path.name!r}: use .csv, .csv.gz or .parquet, "
            "or load it yourself and pass a pandas DataFrame."
        )
    try:
        return read(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"OHLCV file {str(path)!r} is empty: it has no header and no rows.") from None
    except _UNREADABLE as err:
        reason = f"{type(err).__name__}: {err}".strip().rstrip(".")
        raise ValueError(f"cannot read OHLCV file {str(path)!r} as {kind} ({reason}).") from None


def _read_source(source: Any) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        return source.copy()
    if isinstance(source, (str, os.PathLike)):
        return _read_file(Path(source))
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


# ------------------------------------------------------------------------------------------------
# Validation (§1.1)
# ------------------------------------------------------------------------------------------------
def _numeric_values(df: pd.DataFrame, ts: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """The OHLCV columns as float64 arrays (NaN where missing); a value that is not a number is an error."""
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
    return values


class _Check(NamedTuple):
    """One rule of the value table: the rows of `column` where `fails(values, column)` is True are an error.

    `message` is formatted with the column, its first failing row's value, that row's open and close, the
    rows (`where`) and the number of NaN OHLCV fields (`nan_total`).
    """

    columns: tuple[str, ...]
    fails: Callable[[dict[str, np.ndarray], str], np.ndarray]
    message: str
    skipped_if_missing_allowed: bool = False


_BAR_RULE = "A bar needs high >= max(open, close) and low <= min(open, close); fix or drop those rows."

# Checked in this order, each column in turn; the first failure raises.
_VALUE_CHECKS = (
    _Check(
        OHLCV_COLUMNS,
        lambda v, col: np.isinf(v[col]),
        "column {col!r} has an infinite value at {where}; replace or drop those rows.",
    ),
    _Check(
        OHLCV_COLUMNS,
        lambda v, col: np.isnan(v[col]),
        "column {col!r} has a missing (NaN) value at {where} ({nan_total} missing OHLCV value(s) in total). "
        "Fill or drop those rows, or pass allow_missing=True to keep them with TorchTrade's semantics (the bin "
        "drops out of the observation frames and the execution bar is filled from its close, docs/semantics.md §1.5).",
        skipped_if_missing_allowed=True,
    ),
    _Check(
        PRICE_COLUMNS,
        lambda v, col: v[col] <= 0,
        "column {col!r} has a non-positive price {value!r} at {where}; prices must be > 0. Fix or drop those rows.",
    ),
    _Check(
        ("volume",),
        lambda v, col: v[col] < 0,
        "column {col!r} has a negative value {value!r} at {where}; volume must be >= 0. Fix or drop those rows.",
    ),
    _Check(  # NaN-skipping max: a missing open/close does not hide a bad high
        ("high",),
        lambda v, col: v[col] < np.fmax(v["open"], v["close"]),
        "column {col!r} is below max(open, close) at {where}: high={value!r}, open={open!r}, close={close!r}. "
        + _BAR_RULE,
    ),
    _Check(
        ("low",),
        lambda v, col: v[col] > np.fmin(v["open"], v["close"]),
        "column {col!r} is above min(open, close) at {where}: low={value!r}, open={open!r}, close={close!r}. "
        + _BAR_RULE,
    ),
)


def _check_values(values: dict[str, np.ndarray], ts: pd.DatetimeIndex, allow_missing: bool) -> None:
    for check in _VALUE_CHECKS:
        if allow_missing and check.skipped_if_missing_allowed:
            continue
        for col in check.columns:
            with np.errstate(invalid="ignore"):
                bad = np.flatnonzero(check.fails(values, col))
            if len(bad):
                p = int(bad[0])
                raise ValueError(
                    check.message.format(
                        col=col,
                        where=_where(ts, bad),
                        value=float(values[col][p]),
                        open=float(values["open"][p]),
                        close=float(values["close"][p]),
                        nan_total=sum(int(np.isnan(values[c]).sum()) for c in OHLCV_COLUMNS),
                    )
                )


def _check_unique_timestamps(ts: pd.DatetimeIndex) -> None:
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


def load_ohlcv(source: Any, *, allow_missing: bool = False) -> pd.DataFrame:
    """Load and validate OHLCV bars (docs/semantics.md §1.1).

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
    df = _read_source(source)
    try:
        df = _normalize_columns(df)
        if len(df) == 0:
            raise ValueError("OHLCV data has no rows; provide at least one bar.")
        ts = _parse_timestamps(df["timestamp"].reset_index(drop=True))
        values = _numeric_values(df, ts)
        _check_values(values, ts, allow_missing)
        _check_unique_timestamps(ts)
    except ValueError as err:
        if isinstance(source, (str, os.PathLike)):  # name the file in the one-line message
            raise ValueError(f"{os.fspath(source)}: {err}") from None
        raise

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
    """One observation timeframe's bars, exactly as a feature function receives them (docs/semantics.md §1.3).

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
    """Execution bars over the FULL ``execute_on`` grid, empty bins included (docs/semantics.md §1.5), float64.

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


