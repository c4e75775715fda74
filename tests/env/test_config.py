"""Bad input: every validated `EnvConfig` field and `make()` argument raises ValueError with a message that
names the field and the fix (docs/semantics.md §2.1, §4, §7 items 35, 40, 41, 50, 56; Q1, Q30). Nothing is jitted here.
"""

from __future__ import annotations

import re
import warnings

import jax
import pytest

import trading_jax as tj
from tests.support.env_testlib import minute_frame

FRAME = minute_frame([100, 101, 102, 103, 104])
MARKET = dict(time_frames="1Min", execute_on="1Min", window_sizes=2)


def cfg(**kw):
    return tj.EnvConfig(**{**MARKET, **kw})


BAD_CONFIGS = [
    (dict(leverage=0), r"leverage must be in \[1, 125\], got 0"),
    (dict(leverage=200), r"leverage must be in \[1, 125\], got 200"),
    (dict(leverage=float("nan")), r"leverage must be a finite number"),
    (dict(leverage=True), r"leverage must be a finite number"),
    (dict(transaction_fee=1.0), r"transaction_fee must be in \[0, 1\), got 1.0"),
    (dict(transaction_fee=-0.001), r"transaction_fee must be in \[0, 1\)"),
    (dict(slippage=1), r"slippage must be in \[0, 1\), got 1"),
    (dict(slippage=-0.01), r"slippage must be in \[0, 1\)"),
    (dict(bankrupt_threshold=1.0), r"bankrupt_threshold must be in \[0, 1\)"),
    (dict(bankrupt_threshold=-0.1), r"bankrupt_threshold must be in \[0, 1\)"),
    (dict(maintenance_margin_rate=1.0), r"maintenance_margin_rate must be in \[0, 1\)"),
    (dict(action_levels=(-1, 0, 0)), r"action_levels has duplicates: \(-1.0, 0.0, 0.0\)"),
    (dict(action_levels=(0, 1.5)), r"action_levels must all lie in \[-1, 1\], got \(0.0, 1.5\)"),
    (dict(action_levels=(-2, 0)), r"action_levels must all lie in \[-1, 1\]"),
    (dict(action_levels=(1,)), r"action_levels needs at least 2 levels"),
    (dict(action_levels=()), r"action_levels needs at least 2 levels"),
    (dict(action_levels=("a", 1)), r"action_levels: cannot read"),
    (dict(window_sizes=(2, 3)), r"window_sizes has 2 entries but time_frames has 1"),
    (dict(window_sizes=0), r"window_sizes must all be >= 1"),
    (dict(time_frames=()), r"time_frames is empty"),
    (dict(initial_cash=(20, 10)), r"initial_cash range \(20, 10\) must satisfy 0 < lo <= hi"),
    (dict(initial_cash=(0, 10)), r"must satisfy 0 < lo <= hi"),
    (dict(initial_cash=(10.5, 20)), r"initial_cash range .* must hold integers"),
    (dict(initial_cash=(1, 2, 3)), r"initial_cash must be a number or a \(lo, hi\) pair"),
    (dict(initial_cash=-5), r"initial_cash must be a positive number"),
    (dict(initial_cash=0), r"initial_cash must be a positive number"),
    (dict(margin_mode="cross"), r"margin_mode must be 'isolated'.*got 'cross'"),
    (dict(include_base_features=True), r"include_base_features must be False"),
    (dict(max_traj_length=0), r"max_traj_length must be a positive int or None, got 0"),
    (dict(max_traj_length=2.5), r"max_traj_length must be a positive int or None"),
]


@pytest.mark.parametrize("kwargs,match", BAD_CONFIGS, ids=[next(iter(k)) + f"={next(iter(k.values()))!r}"
                                                           for k, _ in BAD_CONFIGS])  # fmt: skip
def test_bad_config_field_raises(kwargs, match):
    """Spec §2.1 construction-time validation; item 35: slippage = 1 is refused."""
    with pytest.raises(ValueError, match=match):
        cfg(**kwargs)


BAD_SLTP = [
    (dict(stoploss_levels=(0.02,)), r"stoploss_levels must be non-empty and all < 0"),
    (dict(stoploss_levels=()), r"stoploss_levels must be non-empty and all < 0"),
    (dict(stoploss_levels=(-1.5,)), r"stoploss_levels must be > -1"),
    (dict(takeprofit_levels=(-0.05,)), r"takeprofit_levels must be non-empty and all > 0"),
    (dict(takeprofit_levels=(0.0,)), r"takeprofit_levels must be non-empty and all > 0"),
    (dict(trade_mode="leveraged"), r"trade_mode must be one of \('fractional', 'notional', 'quantity'\)"),
    (dict(position_fraction=0.0), r"position_fraction must be in \(0, 1\]"),
    (dict(position_fraction=1.5), r"position_fraction must be in \(0, 1\]"),
    (dict(trade_mode="notional", quantity_per_trade=0), r"quantity_per_trade must be > 0 in notional mode"),
    (dict(trade_mode="quantity", quantity_per_trade=-1.0), r"quantity_per_trade must be > 0 in quantity mode"),
]


@pytest.mark.parametrize("kwargs,match", BAD_SLTP)
def test_bad_bracket_field_raises(kwargs, match):
    """Spec §4: stop levels < 0 (and > -1), targets > 0, trade_mode in the three modes, position_fraction
    in (0, 1] (fractional only), quantity_per_trade > 0 (notional / quantity only)."""
    with pytest.raises(ValueError, match=match):
        cfg(sltp=True, **kwargs)


def test_bracket_fields_validated_only_where_used():
    """Spec §4: position_fraction is checked only in fractional mode, quantity_per_trade only in the
    fixed-size modes; trade_mode is case-insensitive."""
    assert cfg(sltp=True, trade_mode="Notional", position_fraction=7.0).trade_mode == "notional"
    assert cfg(sltp=True, trade_mode="fractional", quantity_per_trade=-1.0).position_fraction == 1.0


def test_fee_must_fit_the_maintenance_buffer_message():
    """Q1 / docs/semantics.md §6.1: the PPO example's L = 3, fee 0.004, mmr 0.004 is refused; the message names
    transaction_fee, the side, and the largest fee that fits (0.003009), and that fee passes."""
    with pytest.raises(ValueError) as err:
        cfg(leverage=3, transaction_fee=0.004, action_levels=(-1, 0, 1))
    msg = str(err.value)
    assert "transaction_fee=0.004" in msg and "shorts" in msg and "leverage=3" in msg
    assert re.search(r"transaction_fee <= 0\.003009\d*", msg), msg
    cfg(leverage=3, transaction_fee=0.003009, action_levels=(-1, 0, 1))


@pytest.mark.parametrize(
    "levels,ok_fee,bad_fee",
    [
        ((0, 1), 0.0059, 0.0060),  # long only: fee * (1 - 1/3 + mmr) <= mmr  ->  fee <= 0.005964
        ((-1, 0), 0.0030, 0.0031),  # short only: fee * (1 + 1/3 - mmr) <= mmr  ->  fee <= 0.003009
        ((-1, 0, 1), 0.0030, 0.0031),  # both: the stricter (short) bound
    ],
)
def test_fee_check_uses_the_exact_per_direction_condition(levels, ok_fee, bad_fee):
    """Spec §7 item 41: fee * (1 - 1/L + mmr) <= mmr for longs, fee * (1 + 1/L - mmr) <= mmr for shorts,
    only for the directions the levels allow (L = 3, mmr = 0.004)."""
    cfg(leverage=3, action_levels=levels, transaction_fee=ok_fee)
    with pytest.raises(ValueError, match=r"transaction_fee=.* does not fit inside the maintenance buffer"):
        cfg(leverage=3, action_levels=levels, transaction_fee=bad_fee)


def test_fee_check_skipped_for_spot_and_flat_only():
    """Spec §2.1: the check runs only when L > 1; a level set with no direction (only 0 and a flat-acting
    negative at L = 1) is never checked."""
    cfg(leverage=1, transaction_fee=0.5)
    cfg(leverage=1, transaction_fee=0.5, action_levels=(-1, 0))


def test_bracket_config_fee_is_checked_q30():
    """Q30 FIX: an SLTP config is fee-checked with its real directions (long, and short at L > 1):
    TorchTrade's scalar SLTP env accepted L = 10, fee 0.01; we refuse it, whatever action_levels says."""
    with pytest.raises(ValueError, match=r"transaction_fee=0\.01 does not fit.*transaction_fee <= "):
        cfg(sltp=True, leverage=10, transaction_fee=0.01)
    with pytest.raises(ValueError, match=r"transaction_fee=0\.01 does not fit"):
        cfg(sltp=True, leverage=10, transaction_fee=0.01, action_levels=(0.0, 1.0))
    cfg(sltp=True, leverage=10, transaction_fee=0.0001)


def test_config_is_frozen_hashable_and_normalised():
    """EnvConfig is a frozen, hashable static argument: sequences become tuples, an int window is
    broadcast to every timeframe, strings are lower-cased; equal configs hash equal."""
    a = tj.EnvConfig(time_frames=["1Min", "5Min"], window_sizes=3, execute_on="1Min", action_levels=[-1, 0, 1],
                     margin_mode="ISOLATED", initial_cash=[100, 200])  # fmt: skip
    assert a.time_frames == ("1Min", "5Min") and a.window_sizes == (3, 3) and a.action_levels == (-1.0, 0.0, 1.0)
    assert a.initial_cash == (100, 200) and a.margin_mode == "isolated"
    b = tj.EnvConfig(time_frames=("1Min", "5Min"), window_sizes=(3, 3), execute_on="1Min", initial_cash=(100, 200))
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.leverage = 3  # type: ignore[misc]


# --------------------------------------------------------------------------------- make()
def test_make_rejects_market_config_mismatch():
    """make(): a Market built for other timeframes/windows than the config asks for is refused, naming
    both, and so is passing features with an already built Market."""
    market = tj.build_market(FRAME, "1Min", 2, "1Min")
    with pytest.raises(ValueError, match=r"the Market was built for .*\(2,\).* but the config asks for .*\(3,\)"):
        tj.make(market, cfg(window_sizes=3))
    with pytest.raises(ValueError, match=r"the Market was built for"):
        tj.make(market, tj.EnvConfig(time_frames="5Min", execute_on="5Min", window_sizes=2))
    with pytest.raises(ValueError, match=r"features: pass them to build_market"):
        tj.make(market, cfg(), features=lambda df: df)
    env, _ = tj.make(market, cfg())
    assert env.num_bars == 5


def test_make_rejects_random_start_without_steps():
    """make(): random_start with max_traj_length = 1 (or a single-bar timeline) would give 0-step episodes
    and is refused; with a fixed start it only warns (the episode answers with the exhaustion response)."""
    with pytest.raises(ValueError, match=r"random_start needs episodes of at least one step.*max_traj_length=1"):
        tj.make(FRAME, cfg(random_start=True, max_traj_length=1))
    with pytest.raises(ValueError, match=r"random_start needs episodes of at least one step: the timeline has 1"):
        tj.make(minute_frame([100]), cfg(random_start=True))
    with pytest.warns(UserWarning, match="zero steps"):
        tj.make(FRAME, cfg(random_start=False, max_traj_length=1))


def test_make_rejects_non_config_and_bad_data():
    """make(): the config must be an EnvConfig; data goes through load_ohlcv's validation: a non-positive
    price (item 40: sizing can never meet one), a malformed bar and a missing column (item 50) raise with
    the column and row named; too little data for the windows raises."""
    with pytest.raises(ValueError, match=r"config must be an EnvConfig, got dict"):
        tj.make(FRAME, dict(MARKET))
    zero = FRAME.copy()
    zero.loc[3, "low"] = 0.0
    with pytest.raises(ValueError, match=r"column 'low' has a non-positive price 0.0 at row 3"):
        tj.make(zero, cfg())
    bad = FRAME.copy()
    bad.loc[4, "high"] = 50.0
    with pytest.raises(ValueError, match=r"column 'high' is below max\(open, close\) at row 4"):
        tj.make(bad, cfg())
    with pytest.raises(ValueError, match=r"missing required column\(s\) \['volume'\]"):
        tj.make(FRAME.drop(columns="volume"), cfg())
    with pytest.raises(ValueError, match=r"not enough data for the requested windows"):
        tj.make(FRAME, cfg(window_sizes=50))


def test_make_rejects_feature_list_of_wrong_length():
    """Spec §7 item 56 through make(): one feature entry per timeframe."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"features"):
            tj.make(FRAME, cfg(), features=[None, None])


def test_make_rejects_bad_timeframe_strings():
    """Timeframe strings are parsed when the market is built: an unknown unit or a malformed string raises
    a ValueError that names it and lists the accepted spellings."""
    with pytest.raises(ValueError, match=r"Unknown time unit 'Weeks' in timeframe '3Weeks'"):
        tj.make(FRAME, tj.EnvConfig(time_frames="3Weeks", execute_on="1Min", window_sizes=2))
    with pytest.raises(ValueError, match=r"Invalid timeframe 'abc'"):
        tj.make(FRAME, tj.EnvConfig(time_frames="1Min", execute_on="abc", window_sizes=2))


def test_make_accepts_a_large_fixed_cash():
    """A fixed initial_cash is any positive finite number (EnvConfig accepts 5e9, e.g. an account in a
    small currency unit), so make() must build the env and a reset must start with that cash. (Only a
    cash RANGE is limited to int32, and EnvConfig says so.)"""
    cfg = tj.EnvConfig(**MARKET, initial_cash=5e9, random_start=False)
    env, params = tj.make(FRAME, cfg)
    state = env.reset_state(jax.random.PRNGKey(0), params)
    assert float(state.balance) == 5e9 and float(state.initial_pv) == 5e9


def test_huge_max_traj_length_is_handled():
    """max_traj_length only needs to be a positive int: one beyond int32 must either act like "longer
    than the data" (the episode is the whole timeline) or be refused by EnvConfig with a ValueError
    naming the field -- never crash make() with an OverflowError."""
    try:
        cfg = tj.EnvConfig(**MARKET, max_traj_length=2**31, random_start=False)
    except ValueError as err:
        assert "max_traj_length" in str(err)
        return
    env, params = tj.make(FRAME, cfg)
    state = env.reset_state(jax.random.PRNGKey(0), params)
    assert int(state.end) == env.num_bars
