"""`rollout` and `lane_history` (float32): equal to a hand-written scan with the same key plumbing,
auto-reset bookkeeping, episode lengths under random starts (docs/semantics.md §7 items 21, 42, 46, 53), no host
sync inside."""

from __future__ import annotations

import chex
import jax
import numpy as np
import pytest

import trading_jax as tj
from tests.support.env_testlib import make, wild_frame
from trading_jax.env import ActionKind

NUM_ENVS, NUM_STEPS, MAX_LEN = 4, 30, 6
CONFIG = dict(leverage=2, action_levels=(-1, 0, 0.5, 1), transaction_fee=0.001, slippage=0.01,
              random_start=True, initial_cash=(900, 1100), max_traj_length=MAX_LEN)  # fmt: skip


@pytest.fixture(scope="module")
def setup():
    env, params = make(wild_frame(2, 0.01, 0.1, 0.1, num_bars=30), **CONFIG)
    policy = tj.random_policy(env.num_actions)
    _, traj = tj.rollout(jax.random.PRNGKey(0), env, params, policy, NUM_ENVS, NUM_STEPS, return_obs=True)
    return env, params, policy, jax.tree.map(np.asarray, traj)


def manual_rollout(key, env, params, policy, num_envs, num_steps):
    """The documented plumbing, written out: reset keys from the first half of the key, then per step
    (policy key, env key) from the second half; obs/state carried by a scan of the vmapped auto-reset step."""
    key_reset, key_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)

    def body(carry, step_key):
        obs, state = carry
        k_policy, k_env = jax.random.split(step_key)
        action = policy(k_policy, obs)
        obs2, state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_env, num_envs), state, action, params
        )
        return (obs2, state), (obs2, reward, done, action, info)

    (_, final), rows = jax.lax.scan(body, (obs, state), jax.random.split(key_run, num_steps))
    return obs, final, rows


def test_rollout_equals_a_manual_scan(setup):
    """rollout == a hand-written lax.scan over the vmapped env.step with the same keys: every row from 1
    on (obs, reward, done, action, info), row 0 is the reset row."""
    env, params, policy, traj = setup
    obs0, _, (obs, reward, done, action, info) = jax.tree.map(
        np.asarray, jax.jit(manual_rollout, static_argnums=(1, 3, 4, 5))(jax.random.PRNGKey(0), env, params,
                                                                         policy, NUM_ENVS, NUM_STEPS)  # fmt: skip
    )
    close = dict(rtol=1e-6, atol=1e-4)  # float32, separately compiled programs
    chex.assert_trees_all_close(traj["obs"][0], obs0, **close)
    chex.assert_trees_all_close(traj["obs"][1:], obs, **close)
    np.testing.assert_array_equal(traj["action"][1:], action)
    np.testing.assert_array_equal(traj["done"][1:], done)
    chex.assert_trees_all_close(traj["reward"][1:], reward, **close)
    for k in ("portfolio_value", "balance", "position_size", "entry_price", "price", "bar", "step",
              "terminated", "truncated", "action_kind"):  # fmt: skip
        chex.assert_trees_all_close(traj[k][1:], info[k], **close)


def test_traj_layout_and_reset_row(setup):
    """traj: every field [num_steps + 1, num_envs] (obs [.., obs_dim]); row 0 is the reset row: reward 0,
    action -1, kind hold, flags False, PV = the drawn cash, step 0."""
    env, _, _, traj = setup
    for k, v in traj.items():
        want = (NUM_STEPS + 1, NUM_ENVS, *env.observation_shape) if k == "obs" else (NUM_STEPS + 1, NUM_ENVS)
        assert v.shape == want, k
    assert np.all(traj["reward"][0] == 0) and np.all(traj["action"][0] == -1)
    assert np.all(traj["action_kind"][0] == ActionKind.HOLD) and not traj["done"][0].any()
    assert np.all(traj["step"][0] == 0) and np.all((traj["portfolio_value"][0] >= 900) & (traj["portfolio_value"][0]
                                                                                            <= 1100))  # fmt: skip
    assert set(np.unique(traj["action_kind"])) <= {int(k) for k in ActionKind}


def test_episode_lengths_under_random_starts(setup):
    """Spec §7 items 21 and 53: every episode ends within max_traj_length (at most M - 1 steps); a
    truncated step is the episode's last observation (bar + 1 == the episode end) and is followed by a
    fresh episode (step counter restarting at 1); terminated steps end episodes early."""
    env, _, _, traj = setup
    ends = 0
    for i in range(NUM_ENVS):
        start = int(traj["bar"][0, i])
        for t in range(1, NUM_STEPS + 1):
            step, bar = int(traj["step"][t, i]), int(traj["bar"][t, i])
            assert 1 <= step <= MAX_LEN - 1 and bar == start + step
            if traj["truncated"][t, i]:
                assert bar + 1 == min(start + MAX_LEN, env.num_bars) and traj["done"][t, i]
            if traj["done"][t, i]:
                ends += 1
                if t < NUM_STEPS:  # the next row is the first step of a new episode
                    assert int(traj["step"][t + 1, i]) == 1
                    start = int(traj["bar"][t + 1, i]) - 1
    assert ends >= NUM_ENVS * (NUM_STEPS // (MAX_LEN - 1)) - NUM_ENVS


def test_same_key_same_trajectory(setup):
    """Spec §7 item 46: the same key gives the identical trajectory; another key a different one."""
    env, params, policy, traj = setup
    _, again = tj.rollout(jax.random.PRNGKey(0), env, params, policy, NUM_ENVS, NUM_STEPS, return_obs=True)
    chex.assert_trees_all_equal(jax.tree.map(np.asarray, again), traj)
    _, other = tj.rollout(jax.random.PRNGKey(1), env, params, policy, NUM_ENVS, NUM_STEPS, return_obs=True)
    assert not np.array_equal(np.asarray(other["portfolio_value"]), traj["portfolio_value"])


def test_rollout_has_no_host_sync(setup):
    """rollout is one compiled program: it runs under a transfer guard that forbids implicit host
    transfers, and it can be traced inside an outer jit (no concrete values needed)."""
    env, params, policy, _ = setup
    key = jax.random.PRNGKey(0)
    with jax.transfer_guard("disallow"):
        _, traj = tj.rollout(key, env, params, policy, NUM_ENVS, NUM_STEPS, return_obs=True)
    total = jax.jit(lambda k, p: tj.rollout(k, env, p, policy, NUM_ENVS, NUM_STEPS, return_obs=True)[1]["reward"]
                    .sum())(key, params)  # fmt: skip
    np.testing.assert_allclose(total, np.asarray(traj["reward"]).sum(), rtol=1e-5)


def test_lane_history(setup):
    """Spec §7 item 42: one lane's first episode, reset row included; every array has the same length, a
    valid kind on every row, and the episode's last row is done."""
    _, _, _, traj = setup
    for lane in range(NUM_ENVS):
        hist = tj.lane_history(traj, lane)
        assert "obs" not in hist
        lengths = {len(v) for v in hist.values()}
        assert len(lengths) == 1
        n = lengths.pop()
        assert 2 <= n <= MAX_LEN
        assert hist["action"][0] == -1 and hist["action_kind"][0] == ActionKind.HOLD
        assert hist["done"][-1] and not hist["done"][:-1].any()
        assert all(int(k) in {int(a) for a in ActionKind} for k in hist["action_kind"])
    no_done = {k: v[:3] for k, v in traj.items()}  # an episode still running: the whole slice
    no_done["done"] = np.zeros_like(no_done["done"])
    assert len(tj.lane_history(no_done, 0)["reward"]) == 3
