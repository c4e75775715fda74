"""Feature functions: the reference z-score (docs/semantics.md §1.4) and the causal, frozen-statistics z-score (Q8).

Bit-exactness of ``zscore_ohlcv`` against torchtrade is checked on the golden cases
``features_zscore_2tf_aux`` and ``features_fnlist_aux_raw`` in test_market.py.
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from trading_jax.features import ZScore, fit_zscore, zscore_ohlcv
from trading_jax.market import OHLCV_COLUMNS, build_market, load_ohlcv, resample_bars
from trading_jax.timeframes import parse_timeframe

SPLIT = pd.Timestamp("2024-01-02 12:00")
TFS = ["1Hour", "4Hour"]  # 4Hour is coarser than execution: END-labelled
EXEC = "1Hour"


def _frame(n: int = 3 * 1440, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return load_ohlcv(
        pd.DataFrame(
            {
                "timestamp": pd.date_range("2024-01-01", periods=n, freq="1min"),
                "open": open_,
                "high": np.maximum(open_, close) * 1.0005,
                "low": np.minimum(open_, close) * 0.9995,
                "close": close,
                "volume": rng.uniform(1, 10, n),
            }
        )
    )


def _with_future_regime(df: pd.DataFrame, factor: float) -> pd.DataFrame:
    """Scale every bar at or after SPLIT: prices by ``factor``, volume by ``factor**2``."""
    out = df.copy()
    late = out.index >= SPLIT
    out.loc[late, ["open", "high", "low", "close"]] *= factor
    out.loc[late, "volume"] *= factor**2
    return out


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return _frame()


# ------------------------------------------------------------------------------------------------
# zscore_ohlcv (reference)
# ------------------------------------------------------------------------------------------------
def test_zscore_ohlcv_layout_and_stats(df):
    bars = resample_bars(df, parse_timeframe("1Hour"), parse_timeframe("1Hour")).assign(funding=1.0)
    out = zscore_ohlcv(bars)
    names = [f"features_{c}" for c in OHLCV_COLUMNS]
    assert list(out.columns) == ["timestamp", *OHLCV_COLUMNS, "funding", *names]
    z = out[names].to_numpy()
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), 1.0, rtol=1e-12)
    x = bars["close"].to_numpy()
    np.testing.assert_array_equal(out["features_close"].to_numpy(), (x - x.mean()) / x.std())
    pd.testing.assert_frame_equal(
        bars, resample_bars(df, parse_timeframe("1Hour"), parse_timeframe("1Hour")).assign(funding=1.0)
    )


def test_zscore_constant_column_gets_scale_one():
    idx = pd.date_range("2024-01-01", periods=4, freq="1h", name="timestamp")
    bars = pd.DataFrame({"open": 5.0, "high": 5.0, "low": 5.0, "close": [5.0, 6.0, 7.0, 8.0], "volume": 0.0}, index=idx)
    out = zscore_ohlcv(bars)
    assert (out["features_open"] == 0.0).all() and (out["features_volume"] == 0.0).all()
    assert out["features_close"].abs().max() > 1.0


# ------------------------------------------------------------------------------------------------
# fit_zscore (causal, frozen)
# ------------------------------------------------------------------------------------------------
def test_fit_without_end_equals_reference_bit_exact(df):
    frozen = fit_zscore(df, TFS, EXEC)
    a = build_market(df, TFS, [3, 2], EXEC, features=frozen)
    b = build_market(df, TFS, [3, 2], EXEC, features="zscore_ohlcv")
    for fa, fb in zip(a.data.features, b.data.features, strict=True):
        np.testing.assert_array_equal(np.asarray(fa), np.asarray(fb))
    assert a.feature_names == b.feature_names


def test_fit_uses_only_bars_complete_by_fit_end(df):
    frozen = fit_zscore(df, TFS, EXEC, fit_end=SPLIT)
    # 1) equals fitting on the training slice alone
    train_only = fit_zscore(df[df.index < SPLIT], TFS, EXEC)
    for f, t in zip(frozen, train_only, strict=True):
        assert f.mean == t.mean and f.scale == t.scale and f.num_bars == t.num_bars
    # 36 hourly bars before 12:00 on day 2; 4h bars (END labels 04:00 .. 12:00 on day 2) = 9
    assert [f.num_bars for f in frozen] == [36, 9]
    # 2) no leak: rewriting the future changes nothing ...
    for factor in (10.0, 0.1):
        moved = fit_zscore(_with_future_regime(df, factor), TFS, EXEC, fit_end=SPLIT)
        assert moved == frozen
    # ... while the reference (whole-history) statistics do move (so the check above has teeth)
    full_ref = zscore_ohlcv(resample_bars(df, parse_timeframe("1Hour"), parse_timeframe("1Hour")))
    moved_ref = zscore_ohlcv(
        resample_bars(_with_future_regime(df, 10.0), parse_timeframe("1Hour"), parse_timeframe("1Hour"))
    )
    assert not np.allclose(full_ref["features_close"].iloc[:36], moved_ref["features_close"].iloc[:36])
    # 3) a bar that straddles fit_end is excluded: 12:30 is inside [12:00, 13:00)
    assert fit_zscore(df, TFS, EXEC, fit_end="2024-01-02 12:30") == tuple(
        ZScore(f.columns, f.mean, f.scale, f.timeframe, pd.Timestamp("2024-01-02 12:30"), f.num_bars) for f in frozen
    )
    # tz-aware fit_end is read as UTC
    assert fit_zscore(df, TFS, EXEC, fit_end="2024-01-02T13:00:00+01:00") == frozen


def test_train_and_test_markets_share_train_statistics(df):
    data = _with_future_regime(df, 3.0)
    frozen = fit_zscore(data, TFS, EXEC, fit_end=SPLIT)
    train = build_market(data[data.index < SPLIT], TFS, [3, 2], EXEC, features=frozen)
    test = build_market(data[data.index >= SPLIT], TFS, [3, 2], EXEC, features=frozen)
    assert train.num_bars > 0 and test.num_bars > 0
    e = parse_timeframe(EXEC)
    for k, (tf, z) in enumerate(zip(TFS, frozen, strict=True)):
        bars = resample_bars(data[data.index >= SPLIT], parse_timeframe(tf), e)
        x = bars[list(OHLCV_COLUMNS)].to_numpy()
        want = ((x - np.asarray(z.mean)) / np.asarray(z.scale)).astype(np.float32)
        np.testing.assert_array_equal(test.feature_frames[k].to_numpy(), want)
    # the test regime is 3x the training prices: with frozen stats the test features sit far from 0
    assert test.feature_frames[0]["features_close"].mean() > 10.0
    own = build_market(data[data.index >= SPLIT], TFS, [3, 2], EXEC, features="zscore_ohlcv")
    assert abs(own.feature_frames[0]["features_close"].mean()) < 1e-5


def test_frozen_zscore_is_picklable_hashable_and_validated(df):
    frozen = fit_zscore(df, TFS, EXEC, fit_end=SPLIT, columns=("close", "volume"))
    assert pickle.loads(pickle.dumps(frozen)) == frozen
    assert len({hash(f) for f in frozen}) == 2
    assert frozen[0].timeframe == "1Hour" and frozen[1].timeframe == "4Hour"
    out = frozen[0](resample_bars(df, parse_timeframe("1Hour"), parse_timeframe("1Hour")))
    assert [c for c in out.columns if c.startswith("features_")] == ["features_close", "features_volume"]
    with pytest.raises(ValueError, match="every scale must be finite and > 0"):
        ZScore(("close",), (1.0,), (0.0,))
    with pytest.raises(ValueError, match="same length"):
        ZScore(("close",), (1.0, 2.0), (1.0,))
    with pytest.raises(ValueError, match=r"no column\(s\) \['funding'\]"):
        fit_zscore(df, TFS, EXEC, columns=("close", "funding"))


def test_fit_end_before_any_complete_bar(df):
    with pytest.raises(ValueError, match=r"no complete 4Hour bar ends at or before fit_end=2024-01-01 03:00:00"):
        fit_zscore(df, TFS, EXEC, fit_end="2024-01-01 03:00")
