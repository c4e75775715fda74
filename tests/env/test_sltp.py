"""Bracket mode (docs/semantics.md §4): stops, targets and their priority against liquidation; items 23-31 of §7,
Q24 (duplicates do not refresh brackets), Q25, Q26 (brackets cleared when flat), §9 E numbers (x64).

Default bracket config: sl = [-0.02], tp = [0.03], fee 0.001, cash 1000, 8-bar docs/semantics.md §9-style frames. With
L = 2 and the close action the action map is {0: hold, 1: close, 2: long(-2%, +3%), 3: short(+2%, -3%)}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from tests.support.env_testlib import kinds, make, minute_frame, params_for, run_script

HOLD, CLOSE, LONG, SHORT = 0, 1, 2, 3
BRACKETS = dict(sltp=True, stoploss_levels=(-0.02,), takeprofit_levels=(0.03,), include_close_action=True,
                transaction_fee=0.001)  # fmt: skip
CASH = 1000.0


pytestmark = pytest.mark.usefixtures("x64")


def bracket_env(closes, bars=None, **cfg):
    closes = list(closes) + [closes[-1]] * (8 - len(closes))
    return make(minute_frame(closes, bars=bars), **{**BRACKETS, "leverage": 2, **cfg})


def near(got, want, tol=1e-6):
    return abs(float(got) - want) <= tol


# --------------------------------------------------------------------------------- §9 E, items 23-25
def test_gapped_stop_fills_at_the_open_long():
    """Spec §7 item 23 (§9 E1): L = 2 long at 100 (SL 98, TP 103); the first bar after entry touches
    neither; the next (exec bar 2) opens at 97, so the stop fills at min(open, SL) = 97, bal 936.187625."""
    env, params = bracket_env([100, 100, 97], bars={2: (97, 97.5, 96.5, 97)})
    _, rows = run_script(env, params, [LONG, HOLD, HOLD])
    assert kinds(rows) == ["long", "sltp_sl", "hold"]
    assert near(rows["stop_loss"][0], 98.0, 1e-9) and near(rows["take_profit"][0], 103.0, 1e-9)
    assert near(rows["balance"][0], 0.0) and near(rows["balance"][1], 936.187625)
    assert rows["position"][1] == 0


def test_gapped_stop_fills_at_the_open_short():
    """Spec §7 item 23, short side: SL 102; a bar opening at 104 fills the stop at max(open, SL) = 104."""
    env, params = bracket_env([100, 100, 104], bars={2: (104, 104.5, 103.5, 104)})
    _, rows = run_script(env, params, [SHORT, HOLD, HOLD])
    assert kinds(rows) == ["short", "sltp_sl", "hold"]
    q = float(rows["position"][0])
    want = float(rows["balance"][0]) + ((q * (104.0 - 100.0) - abs(q * 104.0) * 0.001) + abs(q * 100.0) / 2)
    assert near(rows["balance"][1], want, 1e-9)


def test_take_profit_fills_at_tp_even_after_a_gap():
    """Spec §7 item 24 (§9 E2): spot long at 100 (TP 103); the next bar opens at 105, the
    target fills at 103 exactly (not 105): bal 1027.942058."""
    env, params = bracket_env([100, 100, 105], bars={2: (105, 105.5, 104.5, 105)}, leverage=1)
    assert env.num_actions == 3  # spot: hold, close, long (no short brackets)
    _, rows = run_script(env, params, [LONG, HOLD, HOLD])
    assert kinds(rows) == ["long", "sltp_tp", "hold"]
    assert near(rows["balance"][1], 1027.942058)


def test_stop_wins_when_a_bar_spans_both_levels():
    """Spec §7 item 25 (§9 E3): L = 2 short at 100 (SL 102, TP 97); the first bar after entry has high 103
    and low 96: the stop wins (pessimistic), bal 956.047904."""
    env, params = bracket_env([100, 100], bars={1: (100, 103, 96, 100)})
    _, rows = run_script(env, params, [SHORT])
    assert kinds(rows) == ["sltp_sl"]
    assert near(rows["balance"][0], 956.047904)


# --------------------------------------------------------------------------------- items 26, 27, 28
def test_short_actions_mirror_long_actions():
    """Spec §7 item 26 and §4.1: short action k mirrors long action k with negated levels (sl outer, tp
    inner), and an open short has its stop above the entry and its target below."""
    env, params = make(minute_frame([100] * 8), sltp=True, leverage=3, stoploss_levels=(-0.01, -0.05),
                       takeprofit_levels=(0.02, 0.1, 0.3))  # fmt: skip
    amap = env.action_map
    assert amap[0] == ("hold", 0.0, 0.0) and len(amap) == 1 + 2 * 6
    longs, shorts = amap[1:7], amap[7:]
    assert [(sl, tp) for _, sl, tp in longs] == [(sl, tp) for sl in (-0.01, -0.05) for tp in (0.02, 0.1, 0.3)]
    for (ls, lsl, ltp), (ss, ssl, stp) in zip(longs, shorts, strict=True):
        assert (ls, ss) == ("long", "short") and (ssl, stp) == (-lsl, -ltp)
    np.testing.assert_array_equal(params.bracket_sl, [0.0] + [sl for _, sl, _ in amap[1:]])
    _, rows = run_script(env, params, [7 + 4])  # short (+5%, -10%)
    assert rows["position"][0] < 0
    assert near(rows["stop_loss"][0], 105.0, 1e-9) and near(rows["take_profit"][0], 90.0, 1e-9)
    assert rows["stop_loss"][0] > rows["entry"][0] > rows["take_profit"][0]


def test_exit_fires_on_the_bar_right_after_the_fill():
    """Spec §7 item 27: a bracket is live on the very first bar the position is exposed to (bar N+1 of a
    fill at close N): open and stop in one step; the hold counter reads 1 on an opening bar that survives
    (item 45, SLTP)."""
    env, params = bracket_env([100, 100, 100], bars={1: (100, 100.5, 97.9, 100)})
    _, rows = run_script(env, params, [LONG, LONG])
    assert kinds(rows) == ["sltp_sl", "long"]
    np.testing.assert_array_equal(rows["hold"], [0, 1])


def test_mid_bar_wick_on_a_coarse_execution_bar_triggers_the_stop():
    """Spec §7 item 27 with execute_on = 5Min on 1-minute data: a one-minute wick inside the exec bin
    (open and close 100, one minute low 97.5) is the bin's low, so the stop (98) fires at min(open, SL)."""
    rows_1m = []
    for b in range(6):
        for m in range(5):
            low = 97.5 if (b == 4 and m == 2) else 99.8
            rows_1m.append((100.0, 100.2, low, 100.0))
    df = pd.DataFrame(rows_1m, columns=["open", "high", "low", "close"])
    df.insert(0, "timestamp", pd.date_range("2024-01-01", periods=len(df), freq="1min"))
    df["volume"] = 1.0
    env, params = make(df, **{**BRACKETS, "leverage": 2}, time_frames="5Min", execute_on="5Min")
    assert env.num_bars == 4  # 5-minute bins 2..5 (two bins of lookback)
    _, rows = run_script(env, params, [LONG, HOLD, HOLD])
    assert kinds(rows) == ["long", "sltp_sl", "hold"]
    q = float(rows["position"][0])
    want = float(rows["balance"][0]) + ((q * (98.0 - 100.0) - abs(q * 98.0) * 0.001) + abs(q * 100.0) / 2)
    assert near(rows["balance"][1], want, 1e-9)


def test_agent_close_and_switch_precede_next_bar_exits():
    """Spec §7 item 28: the agent's close (or switch) at close N is booked before bar N+1's brackets are
    checked, and is not cancelled by them: a close before a stop-hitting bar reads "close" at close N; a
    flip to short before that bar leaves the short (whose own brackets the bar does not touch)."""
    bars = {2: (100, 100.5, 97.5, 99.5)}  # would stop out a long opened at 100 (SL 98)
    env, params = bracket_env([100, 100, 99.5], bars=bars)
    _, rows = run_script(env, params, [LONG, CLOSE])
    assert kinds(rows) == ["long", "close"]
    q = float(rows["position"][0])
    want = float(rows["balance"][0]) + ((q * (100.0 - 100.0) - abs(q * 100.0) * 0.001) + abs(q * 100.0) / 2)
    assert near(rows["balance"][1], want, 1e-9)
    _, rows = run_script(env, params, [LONG, SHORT])
    assert kinds(rows) == ["long", "short"] and rows["position"][1] < 0
    assert near(rows["stop_loss"][1], 102.0, 1e-9)


# --------------------------------------------------------------------------------- item 29
@pytest.mark.parametrize(
    "sl,tp,bar,label,fill",
    [
        # a stop beyond liq (75 < 80.4), the bar spans TP (105) and liq: liquidation wins at liq
        (-0.25, 0.05, (100, 106, 80, 100), "liquidation", 100 * ((1 - 0.2) + 0.004)),
        # a stop (90) nearer than liq, the bar opens above liq and dips below it: the stop saves it
        (-0.10, 0.05, (95, 95.5, 79, 90), "sltp_sl", 90.0),
        # the same stop, but the bar OPENS past liq (79): liquidation at the open, clamped at bankruptcy 80
        (-0.10, 0.05, (79, 95.5, 78, 90), "liquidation", 80.0),
    ],
)
def test_liquidation_versus_brackets(sl, tp, bar, label, fill):
    """Spec §7 item 29 / §4.3: liquidation beats TP on a double-breach bar; a stop nearer than the
    liquidation price beats liquidation unless the bar opened past liquidation (L = 5, f = 0)."""
    env, params = bracket_env([100, 100, bar[3]], bars={2: bar}, leverage=5, transaction_fee=0.0,
                              stoploss_levels=(sl,), takeprofit_levels=(tp,))  # fmt: skip
    _, rows = run_script(env, params, [LONG, HOLD])
    assert kinds(rows) == ["long", label]
    q = float(rows["position"][0])
    want = float(rows["balance"][0]) + (q * (fill - 100.0) + abs(q * 100.0) / 5)
    assert near(rows["balance"][1], want, 1e-9)
    assert rows["stop_loss"][1] == 0 and rows["take_profit"][1] == 0  # Q26: cleared with the position


# --------------------------------------------------------------------------------- items 30, 31, Q24, Q26
def test_lock_ignores_switch_and_close_but_brackets_fire():
    """Spec §7 item 30: with lock_position_until_sltp the agent's close and switch are ignored while a
    position is open (label hold, nothing booked), the bracket still fires, and once flat actions work."""
    env, params = bracket_env([100, 100, 100, 100, 96, 96], lock_position_until_sltp=True)
    _, rows = run_script(env, params, [LONG, CLOSE, SHORT, SHORT, SHORT])
    assert kinds(rows) == ["long", "hold", "hold", "sltp_sl", "short"]
    for k in ("position", "entry", "balance", "stop_loss"):
        assert rows[k][1] == rows[k][0] == rows[k][2], k


def test_duplicate_action_does_not_refresh_brackets():
    """Q24 (MATCH): a long action while already long is ignored (hold), even with other bracket levels:
    SL/TP keep the values set at the open."""
    env, params = bracket_env([100, 101, 101.5, 102], takeprofit_levels=(0.03, 0.2))
    # actions: 0 hold, 1 close, 2 long(-2%, +3%), 3 long(-2%, +20%), 4/5 shorts
    _, rows = run_script(env, params, [2, 3, 3])
    assert kinds(rows) == ["long", "hold", "hold"]
    assert np.all(rows["take_profit"] == rows["take_profit"][0]) and near(rows["take_profit"][0], 103.0, 1e-9)


def test_brackets_cleared_when_flat():
    """Q26 FIX: SL/TP are zeroed whenever the lane is flat: after the agent's close and after a
    liquidation (TorchTrade left them stale), as well as after a bracket exit."""
    env, params = bracket_env([100, 100, 100, 100, 100])
    _, rows = run_script(env, params, [LONG, CLOSE, HOLD])
    assert rows["stop_loss"][0] > 0 and rows["take_profit"][0] > 0
    assert kinds(rows)[1] == "close"
    assert np.all(rows["stop_loss"][1:] == 0) and np.all(rows["take_profit"][1:] == 0)
    flat = rows["position"] == 0
    assert np.all(rows["stop_loss"][flat] == 0)


@pytest.mark.parametrize("mode,size", [("notional", 300.0), ("quantity", 2.5), ("fractional", 0.4)])
def test_trade_mode_sizes(mode, size):
    """Spec §7 item 31: notional mode buys `quantity_per_trade` dollars (|q| = Q / p), quantity mode
    `quantity_per_trade` units, fractional mode scales the §3.3 target with `position_fraction`; the
    booked balance is margin + fee less."""
    cfg = {"trade_mode": mode}
    cfg["position_fraction" if mode == "fractional" else "quantity_per_trade"] = size
    env, params = bracket_env([100, 100], **cfg)
    _, rows = run_script(env, params, [SHORT])
    q = float(rows["position"][0])
    if mode == "notional":
        want_q, n = -size / 100.0, size
    elif mode == "quantity":
        want_q, n = -size, size * 100.0
    else:
        n = ((CASH * size) / (1 + 2 * 0.001)) * 2
        want_q = -(n / 100.0)
    assert near(q, want_q, 1e-12)
    assert near(rows["balance"][0], CASH - (n * 0.001 + n / 2), 1e-9)


@pytest.mark.parametrize("mode,size", [("notional", 5000.0), ("quantity", 30.0)])
def test_unaffordable_bracket_open_is_refused(mode, size):
    """Spec §7 item 31 / §4.2: a fixed size costing more than the balance is refused (label hold, nothing
    booked, the balance never goes negative); a size that fits opens, and a flip to it works."""
    env, params = bracket_env([100] * 4, trade_mode=mode, quantity_per_trade=size)
    _, rows = run_script(env, params, [LONG, SHORT])
    assert kinds(rows) == ["hold", "hold"]
    assert np.all(rows["position"] == 0) and np.all(rows["balance"] == CASH)
    _, rows = run_script(env, params_for(env, quantity_per_trade=size / 20), [LONG, SHORT])
    assert kinds(rows) == ["long", "short"] and rows["position"][1] < 0
    assert np.all(rows["balance"] >= 0)


def test_flip_with_refused_reopen_ends_flat():
    """Spec §4.2: in quantity mode a flip books its close first; when the re-open is unaffordable the
    step ends FLAT with label hold (golden sltp_L2_quantity_flip_refused shows this)."""
    # 19 units at 100 on 1000 cash and L = 2: margin 950 + fee; after the drop to 88 the re-open no longer fits
    env, params = bracket_env([100, 100, 88, 100, 100], trade_mode="quantity", quantity_per_trade=19.0,
                              stoploss_levels=(-0.5,), takeprofit_levels=(0.5,), leverage=2)  # fmt: skip
    _, rows = run_script(env, params, [LONG, LONG, SHORT])
    assert kinds(rows) == ["long", "hold", "hold"]
    assert rows["position"][2] == 0 and rows["balance"][2] > 0
    assert rows["balance"][2] < 19 * 88 / 2  # the close was booked, and what is left cannot pay the re-open


def test_auto_reset_clears_brackets_of_done_lanes_only():
    """Spec §7 item 58: a (partial) auto-reset under vmap clears SL/TP of the done lanes only; the
    others keep their open bracketed positions."""
    env, params = bracket_env([100] * 8)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    state = jax.vmap(env.reset_state, in_axes=(0, None))(keys, params)
    _, state, _, done, _ = step(keys, state, jnp.full(3, LONG, jnp.int32), params)
    assert not np.asarray(done).any() and np.all(np.asarray(state.stop_loss) > 0)
    state = state.replace(end=state.end.at[1].set(state.bar[1] + 1))  # lane 1 ends on the next step
    _, state, _, done, _ = step(keys, state, jnp.full(3, HOLD, jnp.int32), params)
    np.testing.assert_array_equal(done, [False, True, False])
    sl, tp, q = (np.asarray(x) for x in (state.stop_loss, state.take_profit, state.position))
    assert sl[1] == 0 and tp[1] == 0 and q[1] == 0
    assert sl[0] > 0 and sl[2] > 0 and tp[0] > 0 and q[0] > 0 and q[2] > 0


def test_short_brackets_without_negative_levels_q25():
    """Q25 (MATCH): at L > 1 the short bracket actions exist even if action_levels has no negative level;
    they open real shorts, sized -position_fraction, labelled "short"."""
    env, params = bracket_env([100, 99, 98], action_levels=(0.0, 1.0), position_fraction=0.5)
    assert [side for side, _, _ in env.action_map] == ["hold", "close", "long", "short"]
    _, rows = run_script(env, params, [SHORT, SHORT])
    assert kinds(rows) == ["short", "hold"]
    n = ((CASH * 0.5) / (1 + 2 * 0.001)) * 2
    assert near(rows["position"][0], -n / 100.0, 1e-12)
