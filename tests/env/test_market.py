"""Market tables: golden parity (every case), `build_market` argument errors, timeline and look-ahead rules.

Spec §1.1, §1.3-§1.6. The golden cases are traces recorded from torchtrade 0.1.0 (tests/golden/README.md);
the data side (timeline, execution bars, windows) is checked bit-exactly for every case, SLTP included.
"""

from __future__ import annotations

import warnings
from functools import cache

import jax
import numpy as np
import pandas as pd
import pytest

from tests.support.env_testlib import make_ohlcv
from tests.support.golden_cases import CASES, GOLDEN, load_json
from trading_jax.market import Market, MarketData, build_market


# ------------------------------------------------------------------------------------------------
# Golden parity
# ------------------------------------------------------------------------------------------------
@cache
def _golden(case: str) -> tuple[dict, Market]:
    rec = load_json(case)
    cfg = rec["config"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gap warnings are expected on the gappy cases
        market = build_market(
            GOLDEN / f"{case}.csv.gz",
            cfg["time_frames"],
            cfg["window_sizes"],
            cfg["execute_on"],
            features=rec.get("feature_fn"),
            allow_missing=True,  # pad_gappy_start has single missing price fields (legitimate, §1.5)
        )
    return rec, market


def _windows(market: Market, idx: np.ndarray) -> dict[str, np.ndarray]:
    """Windows at exec indices ``idx [S]`` -> ``{key: [S, w, F]}`` via the contract's slicing rule."""
    out = {}
    for key, w, feats, rows in zip(
        market.obs_keys, market.window_sizes, market.data.features, market.data.row_index, strict=True
    ):
        feats, rows = np.asarray(feats), np.asarray(rows)
        start = rows[idx] + 1  # [S]
        out[key] = feats[start[:, None] + np.arange(w)[None, :]]
    return out


@pytest.mark.parametrize("case", CASES)
def test_golden_timeline_and_windows(case):
    rec, market = _golden(case)
    cfg = rec["config"]
    assert market.num_bars == rec["T_total"]
    assert str(market.exec_times[0]) == rec["first_exec_time"]
    assert str(market.exec_times[-1]) == rec["last_exec_time"]
    ohlc = np.asarray(market.data.ohlc)
    assert ohlc.dtype == np.float32 and ohlc.shape == (rec["T_total"], 4)
    np.testing.assert_array_equal(ohlc[:5], np.asarray(rec["exec_bars_ohlc_first5"], np.float32))

    # reset: exec index 0
    reset_windows = _windows(market, np.array([0]))
    assert set(reset_windows) == set(rec["reset"]["windows"])
    for key, win in rec["reset"]["windows"].items():
        np.testing.assert_array_equal(reset_windows[key][0], np.asarray(win, np.float32), err_msg=key)
    if "bar_ohlc" in rec["reset"]:
        np.testing.assert_array_equal(ohlc[0], np.asarray(rec["reset"]["bar_ohlc"], np.float32))

    # every step: step t reads exec index t; exhausted steps repeat the last bar of the episode
    end = rec["T_total"] if cfg.get("max_traj_length") is None else min(rec["T_total"], cfg["max_traj_length"])
    steps = rec["steps"]
    idx = np.array([min(s["t"], end - 1) for s in steps])
    if "bar_ohlc" in steps[0]:
        want = np.asarray([s["bar_ohlc"] for s in steps], np.float32)
        np.testing.assert_array_equal(ohlc[idx], want)
    step_windows = _windows(market, idx)
    for key in market.obs_keys:
        want = np.asarray([s["windows"][key] for s in steps], np.float32)
        np.testing.assert_array_equal(step_windows[key], want, err_msg=key)


def test_golden_covers_all_cases():
    assert len(CASES) == 27


def test_market_data_is_a_pytree_with_contract_shapes():
    rec, market = _golden("features_fnlist_aux_raw")  # 1Min z-scored (F=5) + 15Min raw with 2 aux (F=7)
    data = market.data
    assert isinstance(data, MarketData)
    leaves = jax.tree_util.tree_leaves(data)
    assert len(leaves) == 1 + 2 + 2
    assert market.obs_keys == ("market_data_1Minute_10", "market_data_15Minute_4")
    assert market.feature_names[1] == ("open", "high", "low", "close", "volume", "funding", "oi")
    assert market.feature_names[0] == tuple(f"features_{c}" for c in ("open", "high", "low", "close", "volume"))
    assert market.window_shapes == ((10, 5), (4, 7))
    T = market.num_bars
    for feats, rows, w, ff in zip(
        data.features, data.row_index, market.window_sizes, market.feature_frames, strict=True
    ):
        assert feats.dtype == np.float32 and rows.dtype == np.int32 and rows.shape == (T,)
        assert feats.shape == (w + len(ff), ff.shape[1])
        assert not np.asarray(feats[:w]).any()  # left padding is zero
        np.testing.assert_array_equal(np.asarray(feats[w:]), ff.to_numpy())
    # jit-friendly: the window is a dynamic slice
    w0 = market.window_sizes[0]
    got = jax.jit(lambda d, i: jax.lax.dynamic_slice_in_dim(d.features[0], d.row_index[0][i] + 1, w0))(data, 7)
    np.testing.assert_array_equal(np.asarray(got), market.windows_at(7)["market_data_1Minute_10"])
    assert market.exec_bars.index.equals(market.exec_times)
    np.testing.assert_array_equal(market.exec_bars[["open", "high", "low", "close"]].to_numpy(), np.asarray(data.ohlc))


def test_zero_padded_window_on_gappy_start():
    # §1.6: one row at 00:00, then nothing until 00:28 -> the first 1Min window (w=8) has 4 zero rows
    _, market = _golden("pad_gappy_start")
    first = market.windows_at(0)
    assert not first["market_data_1Minute_8"][:4].any() and first["market_data_1Minute_8"][4:].all()
    assert not first["market_data_5Minute_4"][:2].any() and first["market_data_5Minute_4"][2:].all()


# ------------------------------------------------------------------------------------------------
# build_market: every bad argument gets a clear ValueError
# ------------------------------------------------------------------------------------------------
def test_build_rejects_too_little_data():
    with pytest.raises(
        ValueError,
        match=r"not enough data.*1Minute x 20.*at least 21 1Minute bars of data are needed, "
        r"but only 10 are available",
    ):
        build_market(make_ohlcv(10), "1Min", 20, "1Min")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(time_frames=["1Min", "5Min"], window_sizes=[3], execute_on="1Min"),
            "window_sizes has 1 entries",
        ),
        (dict(time_frames="1Min", window_sizes=0, execute_on="1Min"), "must be >= 1, got 0"),
        (dict(time_frames="1Week", window_sizes=2, execute_on="1Min"), "Unknown time unit 'Week'"),
        (dict(time_frames="1Min", window_sizes=2, execute_on="1 lightyear"), "Unknown time unit 'lightyear'"),
        (
            dict(time_frames=["1Min", "5Min"], window_sizes=2, execute_on="1Min", features=[None]),
            r"features has 1 entries but time_frames has 2",
        ),
        (
            dict(time_frames="1Min", window_sizes=2, execute_on="1Min", features="zscore"),
            r"unknown feature function name 'zscore'.*zscore_ohlcv",
        ),
        (
            dict(time_frames="1Min", window_sizes=2, execute_on="1Min", features=[3]),
            r"features\[0\] \(1Minute\): expected None, a callable",
        ),
        (
            dict(time_frames="1Min", window_sizes=2, execute_on="1Min", features=lambda d: d.reset_index()),
            r"timeframe 1Minute produced no columns starting with 'features_'",
        ),
        (
            dict(
                time_frames="1Min",
                window_sizes=2,
                execute_on="1Min",
                features=lambda d: d.assign(features_x=1.0).iloc[::-1].reset_index(),
            ),
            r"not strictly increasing",
        ),
        (
            dict(
                time_frames="1Min",
                window_sizes=2,
                execute_on="1Min",
                features=lambda d: d.assign(features_x=1.0).reset_index(drop=True),
            ),
            r"returned no 'timestamp' column",
        ),
    ],
)
def test_build_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_market(make_ohlcv(60), **kwargs)


def test_non_numeric_aux_needs_a_feature_fn():
    df = make_ohlcv(60).assign(symbol="BTCUSDT")
    with pytest.raises(ValueError, match=r"column 'symbol' \(.*\) cannot be converted to float32.*features="):
        build_market(df, "1Min", 2, "1Min")
    m = build_market(df, "1Min", 2, "1Min", features="zscore_ohlcv")  # the function drops it
    assert m.feature_names[0][-1] == "features_volume"


# ------------------------------------------------------------------------------------------------
# Timeline and look-ahead rules on hand-made data
# ------------------------------------------------------------------------------------------------
def _visible_label(market: Market, k: int, exec_time: str) -> pd.Timestamp:
    i = market.exec_times.get_loc(pd.Timestamp(exec_time))
    return market.feature_frames[k].index[int(market.data.row_index[k][i])]


def test_coarse_frame_is_end_labelled_and_lags():
    # Spec §1.6 example: E=1Hour, tf=4Hour: at the exec bar starting 03:00 the newest visible 4h bar is
    # [20:00, 00:00) (END label 00:00); the bar [00:00, 04:00) appears at the exec bar starting 04:00.
    df = make_ohlcv(3 * 1440, freq="1min")
    m = build_market(df, ["1Hour", "4Hour"], [2, 2], "1Hour")
    # Q12: min_start = latest first label (4h END label 04:00) + max lookback 8h + coarse offset 4h = 16:00
    assert m.exec_times[0] == pd.Timestamp("2024-01-01 16:00")
    assert _visible_label(m, 1, "2024-01-02 03:00") == pd.Timestamp("2024-01-02 00:00")
    assert _visible_label(m, 1, "2024-01-02 04:00") == pd.Timestamp("2024-01-02 04:00")
    assert _visible_label(m, 0, "2024-01-02 03:00") == pd.Timestamp("2024-01-02 03:00")  # same frame: bar t
    four_h = df.set_index("timestamp").loc["2024-01-01 20:00":"2024-01-01 23:59"]
    raw = m.windows_at(int(m.exec_times.get_loc(pd.Timestamp("2024-01-02 03:00"))))["market_data_4Hour_2"]
    np.testing.assert_array_equal(
        raw[-1],
        np.float32(
            [
                four_h.open.iloc[0],
                four_h.high.max(),
                four_h.low.min(),
                four_h.close.iloc[-1],
                four_h.volume.sum(),
            ]
        ),
    )


def test_finer_frame_ends_with_bar_closing_at_decision_instant():
    m = build_market(make_ohlcv(200), ["1Min", "5Min"], [3, 2], "5Min")
    # key = t + P_E - P_tf: at exec bar 01:00 (decides at 01:05) the newest 1-minute bar starts 01:04
    assert _visible_label(m, 0, "2024-01-01 01:00") == pd.Timestamp("2024-01-01 01:04")
    assert _visible_label(m, 1, "2024-01-01 01:00") == pd.Timestamp("2024-01-01 01:00")


def test_empty_exec_bins_are_flat_bars_and_repeat_the_window():
    df = make_ohlcv(60)
    df = df[~df.timestamp.between("2024-01-01 00:30", "2024-01-01 00:32")]
    with pytest.warns(UserWarning, match=r"3 of .* execution bins \(1Minute\) have no close"):
        m = build_market(df, "1Min", 4, "1Min")
    bars = m.exec_bars
    prev_close = np.float32(df.set_index("timestamp").loc["2024-01-01 00:29", "close"])
    for t in ["2024-01-01 00:30", "2024-01-01 00:31", "2024-01-01 00:32"]:
        row = bars.loc[t]
        assert row.volume == 0.0
        assert row.open == row.high == row.low == row.close == prev_close
    i29 = m.exec_times.get_loc(pd.Timestamp("2024-01-01 00:29"))
    w29 = m.windows_at(i29)["market_data_1Minute_4"]
    for d in (1, 2, 3):
        np.testing.assert_array_equal(m.windows_at(i29 + d)["market_data_1Minute_4"], w29)


def test_feature_fn_may_keep_timestamp_in_index():
    def fn(d):
        return d.assign(features_c=d.close, features_r=np.log(d.close).diff().fillna(0.0))

    m = build_market(make_ohlcv(60), "1Min", 3, "1Min", features=fn)
    assert m.feature_names == (("features_c", "features_r"),)


# ------------------------------------------------------------------------------------------------
# Bundled sample dataset
# ------------------------------------------------------------------------------------------------
def test_btcusdt_sample_dataset():
    from trading_jax.datasets import btcusdt_1m_sample

    df = btcusdt_1m_sample()
    assert len(df) == 254_880  # 177 days x 1440 minutes
    assert list(df.columns) == ["open", "high", "low", "close", "volume"]
    assert df.index[0] == pd.Timestamp("2024-01-01 00:00") and df.index[-1] == pd.Timestamp("2024-06-25 23:59")
    assert (np.diff(df.index.asi8) == 60 * 10**9).all()  # no gaps
    assert df.iloc[0]["open"] == 42283.58
    df.iloc[0, 0] = -1.0  # callers get a copy; the cache is not affected
    assert btcusdt_1m_sample().iloc[0]["open"] == 42283.58
    m = build_market(df.iloc[1:], "1Hour", 24, "1Hour")
    assert m.num_bars == 176 * 24 and m.exec_times[0] == pd.Timestamp("2024-01-02 00:00")


def test_exec_bar_per_field_fill_widen_and_clip():
    # §1.5 on single missing fields (allow_missing=True): open <- close; high <- close then widened with the
    # open; low <- close then widened with the open; close <- previous close clipped into [low, high].
    nan = np.nan
    rows = [
        ("00:00", 100.0, 101.0, 99.0, 100.5),
        ("00:01", nan, 102.0, 99.5, 101.0),  # no open
        ("00:02", 101.0, nan, 99.0, 100.0),  # no high, open > close
        ("00:03", 100.0, 101.0, nan, 100.8),  # no low, open < close
        ("00:04", 101.5, 101.6, 101.4, nan),  # no close: previous close 100.8 is below this bar's low
        ("00:05", 101.5, 101.7, 101.3, 101.6),
    ]
    df = pd.DataFrame(rows, columns=["timestamp", "open", "high", "low", "close"])
    df["timestamp"] = "2024-01-01 " + df["timestamp"]
    df["volume"] = 1.0
    with pytest.warns(UserWarning, match="have no close"):
        m = build_market(df, "1Min", 1, "1Min", allow_missing=True)
    assert m.exec_times[0] == pd.Timestamp("2024-01-01 00:01")
    want = np.float32(
        [
            [101.0, 102.0, 99.5, 101.0],
            [101.0, 101.0, 99.0, 100.0],
            [100.0, 101.0, 100.0, 100.8],
            [101.5, 101.6, 101.4, 101.4],
            [101.5, 101.7, 101.3, 101.6],
        ]
    )
    np.testing.assert_array_equal(np.asarray(m.data.ohlc), want)
    # the observation frame drops every bin with a missing field: only 00:00 and 00:05 are rows
    assert list(m.feature_frames[0].index.strftime("%H:%M")) == ["00:00", "00:05"]
    assert [str(m.feature_frames[0].index[j].time()) for j in np.asarray(m.data.row_index[0])] == ["00:00:00"] * 4 + [
        "00:05:00"
    ]
