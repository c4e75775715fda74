"""Bankruptcy, termination, truncation and exhaustion: docs/semantics.md §7 items 15-20 and 22, §3.11, §3.13, Q2 (x64).

Every scenario uses a 10-bar docs/semantics.md §9-style frame, so all of them share one compiled scan; leverage,
threshold and the like go through the params.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

import trading_jax as tj
from tests.support.env_testlib import kinds, make, minute_frame, params_for, run_script

LEVELS = (-1.0, 0.0, 1.0)
SHORT, FLAT, LONG = 0, 1, 2
CRASH = [100, 95, 88, 80, 70, 58, 45, 40, 35, 30]
RALLY = [100, 105, 110, 118, 126, 130, 133, 135, 136, 138]
RISE = [100 + 2 * k for k in range(10)]


pytestmark = pytest.mark.usefixtures("x64")


def env_for(closes, **cfg):
    return make(minute_frame(closes), action_levels=LEVELS, **cfg)


@pytest.mark.parametrize("closes,side,L", [(CRASH, LONG, 1), (CRASH, LONG, 2), (RALLY, SHORT, 2)])
def test_bankruptcy_terminates_on_the_first_step_below_threshold(closes, side, L):
    """Spec §7 items 15, 18 and 20: a long crash / short rally terminates (terminated=True,
    truncated=False) on the first step whose PV < threshold * PV0, not a step earlier; there PV <= threshold
    * PV0; every earlier step has all flags False."""
    thr = 0.5
    env, params = env_for(closes, leverage=L, bankrupt_threshold=thr)
    _, rows = run_script(env, params, [side] * 9)
    below = rows["pv"] < thr * 1000
    assert below.any()
    k = int(np.argmax(below))
    assert rows["terminated"][k] and not rows["truncated"][k]
    assert rows["pv"][k] <= thr * 1000
    assert not rows["terminated"][:k].any() and not rows["truncated"][:k].any()
    assert np.all(rows["pv"][:k] >= thr * 1000)


@pytest.mark.parametrize("closes,side", [(CRASH, FLAT), (RISE, LONG), (CRASH, SHORT)])
def test_flat_and_profitable_lanes_never_go_bankrupt(closes, side):
    """Spec §7 item 16: flat, or in profit (long on a rise, short on a crash, no fee), even with a
    threshold of 0.99, no step terminates."""
    env, params = env_for(closes, leverage=2, bankrupt_threshold=0.99)
    _, rows = run_script(env, params, [side] * 9)
    assert not rows["terminated"].any()
    assert np.all(rows["pv"] >= 1000 * (1 - 1e-12))


def test_higher_leverage_goes_bankrupt_no_later():
    """Spec §7 item 17: on the same crash, the first terminated step is non-increasing in the leverage."""
    env, _ = env_for(CRASH, leverage=2, bankrupt_threshold=0.5)
    first = []
    for L in (1, 2, 3, 5, 10, 25):
        _, rows = run_script(env, params_for(env, leverage=L), [LONG] * 9)
        first.append(int(np.argmax(rows["terminated"])) if rows["terminated"].any() else math.inf)
    assert first == sorted(first, reverse=True), first
    assert first[-1] < first[0]


def test_zero_threshold_keeps_running_through_losses():
    """Spec §7 item 19: bankrupt_threshold = 0 is legal; a spot long keeps running through a 70% loss and
    the episode ends only by truncation at the end of data."""
    env, params = env_for(CRASH, leverage=1, bankrupt_threshold=0.0)
    _, rows = run_script(env, params, [LONG] * 9)
    assert not rows["terminated"].any()
    assert rows["pv"][-1] < 350
    np.testing.assert_array_equal(rows["truncated"], [False] * 8 + [True])


def test_truncation_at_end_of_data_and_by_max_length():
    """Spec §7 item 20 and §3.11: the step that reads the episode's last bar (end of data, or
    max_traj_length bars) is truncated=True, terminated=False; normal steps have every flag False."""
    env, params = env_for(RISE, bankrupt_threshold=0.1)
    _, rows = run_script(env, params, [LONG] * 9)
    np.testing.assert_array_equal(rows["truncated"], [False] * 8 + [True])
    assert not rows["terminated"].any()
    params = params_for(env, bankrupt_threshold=0.1, max_traj_length=4)
    _, rows = run_script(env, params, [LONG] * 5)
    np.testing.assert_array_equal(rows["truncated"], [False, False, True, True, True])
    np.testing.assert_array_equal(rows["exhausted"], [False, False, False, True, True])
    assert not rows["terminated"].any()


def test_bankruptcy_on_the_last_bar_sets_both_flags():
    """Spec §3.13: bankruptcy on the episode's last bar is terminated AND truncated."""
    env, params = env_for([100] * 9 + [40], leverage=1, bankrupt_threshold=0.5)
    _, rows = run_script(env, params, [LONG] * 9)
    assert rows["terminated"][-1] and rows["truncated"][-1]
    assert not rows["terminated"][:-1].any() and not rows["truncated"][:-1].any()


def test_stepping_after_exhaustion_is_a_frozen_done_response():
    """Spec §7 item 22 and §3.11: after the last bar, further steps return done (truncated, not
    terminated), reward 0, the same observation and account, and ignore the action (no trade)."""
    env, params = env_for(RISE, leverage=2)
    _, rows = run_script(env, params, [LONG] * 9 + [SHORT, FLAT, LONG, SHORT])
    last = 8
    for t in range(last + 1, len(rows["reward"])):
        assert rows["exhausted"][t] and rows["truncated"][t] and not rows["terminated"][t]
        assert rows["reward"][t] == 0 and kinds({"kind": rows["kind"][t : t + 1]}) == ["hold"]
        for k in ("pv", "balance", "position", "entry", "hold", "bar"):
            assert rows[k][t] == rows[k][last], k
        np.testing.assert_array_equal(rows["obs"][t], rows["obs"][last])


def test_zero_step_episode_is_exhausted_from_the_start():
    """Spec §3.11: a 0-step episode (max_traj_length = 1, fixed start) answers its first step with the
    exhaustion response (make warns that every episode has zero steps)."""
    with pytest.warns(UserWarning, match="zero steps"):
        env, params = tj.make(minute_frame(RISE), tj.EnvConfig(time_frames="1Min", execute_on="1Min",
                              window_sizes=2, random_start=False, max_traj_length=1, initial_cash=1000))  # fmt: skip
    reset, rows = run_script(env, params, [2, 0, 2])
    assert rows["exhausted"].all() and rows["truncated"].all() and not rows["terminated"].any()
    assert np.all(rows["reward"] == 0) and np.all(rows["bar"] == 0) and np.all(rows["position"] == 0)
    np.testing.assert_array_equal(rows["obs"][0], reset["obs"])


def test_wiped_account_terminates_at_zero_threshold():
    """Q2 FIX: with bankrupt_threshold = 0, a liquidation that leaves PV = 0 (gap past the bankruptcy
    price, exact numbers: L = 2, all in at 100, gap to 30 -> fill 50) gives reward -10 and terminated=True
    (TorchTrade's scalar env kept going and raised on the next step). Through `env.step` the lane is
    auto-reset to a fresh episode on the next observation."""
    frame = minute_frame([100, 100, 30] + [30] * 7, bars={2: (30, 30.5, 29.5, 30)})
    env, params = make(frame, leverage=2, action_levels=LEVELS, bankrupt_threshold=0.0)
    _, rows = run_script(env, params, [LONG, LONG])
    assert kinds(rows) == ["long", "liquidation"]
    assert rows["pv"][1] == 0 and rows["reward"][1] == -10.0
    assert rows["terminated"][1] and not rows["truncated"][1]
    key = jax.random.PRNGKey(0)
    obs, state = env.reset(key, params)
    obs, state, _, done, _ = env.step(key, state, LONG, params)
    assert not done
    obs, state, reward, done, info = env.step(key, state, LONG, params)
    assert done and info["terminated"] and reward == -10.0 and float(info["portfolio_value"]) == 0.0
    assert int(state.bar) == 0 and float(state.balance) == 1000.0 and float(state.position) == 0.0
