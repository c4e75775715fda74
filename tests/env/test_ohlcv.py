"""Loading raw OHLCV data (`trading_jax.ohlcv.load_ohlcv`, docs/semantics.md §1.1): sources, normalisation, and a clear
ValueError for every bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.support.env_testlib import make_ohlcv
from trading_jax.ohlcv import load_ohlcv


# ------------------------------------------------------------------------------------------------
# load_ohlcv: sources and normalisation
# ------------------------------------------------------------------------------------------------
def test_load_sources_roundtrip(tmp_path):
    df = make_ohlcv(50)
    df["funding"] = np.arange(50.0)
    ref = load_ohlcv(df)
    assert list(ref.columns) == ["open", "high", "low", "close", "volume", "funding"]
    assert ref.index.name == "timestamp" and ref.index.tz is None and ref.index.is_monotonic_increasing
    assert all(ref[c].dtype == np.float64 for c in ["open", "high", "low", "close", "volume"])
    df.to_csv(tmp_path / "a.csv", index=False)
    df.to_csv(tmp_path / "a.csv.gz", index=False)
    df.to_parquet(tmp_path / "a.parquet", index=False)
    for name in ["a.csv", "a.csv.gz", "a.parquet"]:
        pd.testing.assert_frame_equal(load_ohlcv(tmp_path / name), ref, check_index_type=False, check_freq=False)
        pd.testing.assert_frame_equal(load_ohlcv(str(tmp_path / name)), ref, check_freq=False)
    # idempotent on its own output (timestamp in the index)
    pd.testing.assert_frame_equal(load_ohlcv(ref), ref)
    ref.to_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(load_ohlcv(tmp_path / "b.parquet"), ref, check_freq=False)


def test_load_column_order_and_sorting():
    df = make_ohlcv(30)
    df = df[["volume", "close", "timestamp", "low", "open", "high"]].assign(oi=1.0)
    df.insert(0, "funding", 0.5)
    shuffled = df.sample(frac=1.0, random_state=1)
    out = load_ohlcv(shuffled)
    assert list(out.columns) == ["open", "high", "low", "close", "volume", "funding", "oi"]
    assert out.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(out, load_ohlcv(df))


def test_tz_aware_timestamps_become_naive_utc():
    df = make_ohlcv(5)
    as_z = df.assign(timestamp=df.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    out = load_ohlcv(as_z)
    assert out.index.tz is None and out.index[0] == pd.Timestamp("2024-01-01 00:00:00")
    offset = df.assign(timestamp=df.timestamp.dt.strftime("%Y-%m-%dT%H:%M:%S+02:00"))
    assert load_ohlcv(offset).index[0] == pd.Timestamp("2023-12-31 22:00:00")
    aware = df.assign(timestamp=df.timestamp.dt.tz_localize("Europe/Berlin"))
    assert load_ohlcv(aware).index[0] == pd.Timestamp("2023-12-31 23:00:00")


def test_allow_missing_keeps_nan_fields():
    df = make_ohlcv(10)
    df.loc[3, "open"] = np.nan
    with pytest.raises(ValueError, match=r"column 'open' has a missing \(NaN\) value at row 3"):
        load_ohlcv(df)
    out = load_ohlcv(df, allow_missing=True)
    assert np.isnan(out["open"].iloc[3])


# ------------------------------------------------------------------------------------------------
# load_ohlcv: every bad input gets a clear ValueError
# ------------------------------------------------------------------------------------------------
def _bad(mutate):
    """``make_ohlcv(20)`` changed by ``mutate`` (which may return a new frame or edit in place)."""
    df = make_ohlcv(20)
    out = mutate(df)
    return df if out is None else out


@pytest.mark.parametrize(
    "frame, match",
    [
        (
            _bad(lambda d: d.rename(columns={"close": "Close"})),
            r"missing required column\(s\) \['close'\].*'Close' -> 'close'.*df\.rename",
        ),
        (
            _bad(lambda d: d.rename(columns={"timestamp": "date", "volume": "Vol"})),
            r"missing required column\(s\) \['timestamp', 'volume'\]"
            r".*'date' -> 'timestamp'.*'Vol' -> 'volume'",
        ),
        (_bad(lambda d: d.drop(columns=["high"])), r"missing required column\(s\) \['high'\]"),
        (
            _bad(lambda d: d.__setitem__("close", d["close"].where(d.index != 7))),
            r"column 'close' has a missing \(NaN\) value at row 7 \(timestamp 2024-01-01 00:07:00\)"
            r".*allow_missing=True",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((4, "high"), np.inf)),
            r"column 'high' has an infinite value at row 4 \(timestamp 2024-01-01 00:04:00\)",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((5, "volume"), -np.inf)),
            r"column 'volume' has an infinite value at row 5",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((2, "low"), 0.0)),
            r"column 'low' has a non-positive price 0\.0 at row 2 \(timestamp 2024-01-01 00:02:00\)"
            r".*must be > 0",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((9, "open"), -1.0)),
            r"column 'open' has a non-positive price -1\.0 at row 9",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((6, "volume"), -2.0)),
            r"column 'volume' has a negative value -2\.0 at row 6",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((11, "high"), d.loc[11, "low"])),
            r"column 'high' is below max\(open, close\) at row 11 \(timestamp 2024-01-01 00:11:00\)",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((12, "low"), d.loc[12, "high"])),
            r"column 'low' is above min\(open, close\) at row 12 \(timestamp 2024-01-01 00:12:00\)",
        ),
        (
            _bad(lambda d: d.loc.__setitem__((8, "timestamp"), d.loc[7, "timestamp"])),
            r"column 'timestamp' has duplicate value 2024-01-01 00:07:00 at rows 7, 8.*drop_duplicates",
        ),
        (
            _bad(lambda d: d.__setitem__("timestamp", d.timestamp.astype(str).where(d.index != 3, "not a date"))),
            r"column 'timestamp' has 1 missing or unparseable value\(s\) \(row 3: 'not a date'\).*ISO 8601",
        ),
        (
            _bad(lambda d: d.__setitem__("timestamp", d.timestamp.astype("int64") // 10**6)),
            r"column 'timestamp' is numeric.*unit='ms'",
        ),
        (
            _bad(lambda d: d.__setitem__("close", d.close.astype(object).where(d.index != 2, "n/a"))),
            r"column 'close' has a non-numeric value 'n/a' at row 2",
        ),
        (make_ohlcv(0), r"has no rows"),
    ],
    ids=[
        "misnamed_Close",
        "misnamed_date_Vol",
        "missing_high",
        "nan_close",
        "inf_high",
        "inf_volume",
        "zero_low",
        "negative_open",
        "negative_volume",
        "high_below_body",
        "low_above_body",
        "duplicate_timestamp",
        "unparseable_timestamp",
        "numeric_timestamp",
        "non_numeric_price",
        "empty",
    ],
)
def test_load_rejects_bad_input(frame, match):
    with pytest.raises(ValueError, match=match):
        load_ohlcv(frame)


def test_nan_open_does_not_hide_a_bad_high():
    df = make_ohlcv(10)
    df.loc[4, "open"] = np.nan
    df.loc[4, "high"] = df.loc[4, "close"] * 0.99
    with pytest.raises(ValueError, match=r"column 'high' is below max\(open, close\) at row 4"):
        load_ohlcv(df, allow_missing=True)


def test_unsupported_sources(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(ValueError, match=r"Unsupported OHLCV file type 'a\.json': use \.csv, \.csv\.gz or \.parquet"):
        load_ohlcv(tmp_path / "a.json")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_ohlcv(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="must be a pandas DataFrame or a path"):
        load_ohlcv(np.zeros((3, 6)))
