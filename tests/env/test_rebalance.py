"""Liquidation fills (docs/semantics.md §3.10; §7 items 13, 14, 62) and the "close enough" tolerance of the rebalance
tree, max(2 % |q_t|, $1 / p) (§3.4; §7 items 38, 39), on small hand-built frames, x64.

Frames and conventions as in test_accounting.py: §9-style 1-minute bars, cash 1000, fixed start; scenarios
of one static config share one compiled scan (`env_testlib.run_script`).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from tests.support.env_testlib import close_enough, kinds, make, minute_frame, params_for, run_script

LEVELS = (-1.0, -0.5, 0.0, 0.5, 1.0)
A = {a: i for i, a in enumerate(LEVELS)}
FLAT6 = minute_frame([100.0] * 6, wick=0.0)  # constant price, no wick

pytestmark = pytest.mark.usefixtures("x64")


# --------------------------------------------------------------------------------- liquidation, items 13, 14, 62
WICK = {2: (100, 100.5, 79, 100)}  # docs/semantics.md §9 D: one bar whose low is 79


def test_wick_liquidation_fills_at_liq_and_returns_the_margin():
    """Spec §7 items 13 and 62 (§9 D): a wick through liq (an intrabar dip that closes back above it)
    liquidates at the liquidation price, returns the margin, zeroes size and entry; the same level while
    flat re-opens on the next step."""
    env, params = make(minute_frame([100, 100, 100, 100, 100], bars=WICK), leverage=5,
                       action_levels=(-1.0, 0.0, 0.5, 1.0))  # fmt: skip
    _, rows = run_script(env, params, [2, 2, 2, 1])
    assert kinds(rows) == ["long", "liquidation", "long", "flat"]
    assert rows["position"][1] == 0 and rows["entry"][1] == 0 and rows["hold"][1] == 0
    liq = 100.0 * ((1 - 0.2) + 0.004)
    q = float(rows["position"][0])
    want = 500.0 + ((q * (liq - 100.0) - 0.0) + abs(q * 100.0) / 5)
    assert close_enough(rows["balance"][1], want) and close_enough(want, 510.0, 1e-12)
    np.testing.assert_allclose(rows["reward"][1], math.log(510 / 1000), rtol=1e-6)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_gap_liquidation_fills_at_the_open_clamped_at_bankruptcy(side):
    """Spec §7 items 13 and 14: a gap through liq fills at the bar's open unless that is beyond the
    bankruptcy price, where it is clamped: such a gap costs exactly the posted margin (+ the open fee), and a
    deeper gap never leaves the account richer."""
    L, f = 5.0, 0.0005
    m = 1 / L
    # long: liq 80.4, bankruptcy 80.04; short: liq 119.6, bankruptcy 119.94
    opens = [80.3, 80.1, 79.0, 60.0, 20.0] if side > 0 else [119.7, 119.9, 121.0, 140.0, 190.0]
    finals = []
    env = None
    for o in opens:
        bar = (o, max(o, 100) + 0.5, min(o, 100) - 0.5, 100.0) if side > 0 else (o, o + 0.5, 99.5, 100.0)
        frame = minute_frame([100, 100, 100, 100], bars={2: bar})
        env, params = make(frame, leverage=L, transaction_fee=f, action_levels=LEVELS)
        _, rows = run_script(env, params, [A[side * 0.5], A[side * 0.5]])
        assert kinds(rows) == ["long" if side > 0 else "short", "liquidation"]
        q, e, bal_open = float(rows["position"][0]), 100.0, float(rows["balance"][0])
        liq = e * ((1 - m) + 0.004) if side > 0 else e * ((1 + m) - 0.004)
        bk = e * ((1 - m) / (1 - f)) if side > 0 else e * ((1 + m) / (1 + f))
        o32 = float(np.float32(o))  # execution bars are float32 (§1.5)
        fill = max(min(o32, liq), bk) if side > 0 else min(max(o32, liq), bk)
        want = bal_open + ((q * (fill - e) - abs(q * fill) * f) + abs(q * e) / L)
        assert close_enough(rows["balance"][1], want)
        finals.append(float(rows["balance"][1]))
        if (side > 0 and o <= bk) or (side < 0 and o >= bk):  # clamped: the margin is lost, nothing more
            assert close_enough(rows["balance"][1], bal_open, 1e-9)
    assert all(a >= b - 1e-9 for a, b in zip(finals, finals[1:], strict=False)), finals


# --------------------------------------------------------------------------------- tolerance, items 38, 39
TOL_LEVELS = (0.0, 0.0005, 0.0006, 0.5, 0.505, 0.52)


@pytest.fixture(scope="module")
def tol_env():
    with jax.enable_x64(True):
        return make(FLAT6, leverage=1, action_levels=TOL_LEVELS)[0]


def test_tolerance_two_percent_term(tol_env):
    """Spec §7 item 38: close enough = |q_t - q| < max(2% |q_t|, $1 / p). 0.5 -> 0.505 (1% apart) holds on
    the 2% term; 0.5 -> 0.52 (3.8%) executes."""
    idx = {a: i for i, a in enumerate(TOL_LEVELS)}
    _, rows = run_script(tol_env, params_for(tol_env), [idx[0.5], idx[0.505], idx[0.52]])
    assert kinds(rows) == ["buy", "hold", "buy"]
    assert rows["position"][1] == rows["position"][0]


def test_tolerance_one_dollar_floor_and_close_exemption(tol_env):
    """Spec §7 items 38 and 39: 0.0005 -> 0.0006 of $1000 at 100 is 17% apart but only $0.10 of
    notional, so the $1 floor holds it; opening a $0.50 position from flat is never blocked by the
    tolerance, and closing it (sub-$1) is exempt too."""
    idx = {a: i for i, a in enumerate(TOL_LEVELS)}
    _, rows = run_script(tol_env, params_for(tol_env), [idx[0.0005], idx[0.0006], idx[0.0], idx[0.0006]])
    assert kinds(rows) == ["buy", "hold", "sell", "buy"]
    assert abs(float(rows["position"][0]) * 100 - 0.5) < 1e-9
    assert rows["position"][2] == 0 and rows["position"][3] > 0
