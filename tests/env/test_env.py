"""The env as a JAX object: transforms (jit, vmap), tracing, shapes and dtypes, keys, auto-reset, resets
(docs/semantics.md §2.3, Q18, Q20), observations (§1.6-§1.8) and the JAX analogues of §7 items 46-49, 51-53,
58, 59.

One module-scoped env (float32, the default): 1Min + 5Min observations (windows 3 and 2) executing on 1Min,
L = 3, five levels, fee, slippage, random starts, a cash range and max_traj_length 12, on gapped generated
data. Its jitted reset/step (single lane and vmapped) are compiled once and shared by the tests.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import trading_jax as tj
from tests.support.env_testlib import broadcast_state, make, minute_frame, wild_frame
from trading_jax.env import ActionKind

NUM_ENVS = 4
CASH = (500, 1500)
CONFIG = dict(
    time_frames=("1Min", "5Min"), window_sizes=(3, 2), leverage=3, action_levels=(-1, -0.5, 0, 0.5, 1),
    transaction_fee=0.001, slippage=0.01, random_start=True, initial_cash=CASH, max_traj_length=12,
)
FRAME = wild_frame(1, 0.01, 0.1, 0.1, num_bars=60, drop=(30,))  # one empty exec bin


class Compiled:
    def __init__(self):
        self.env, self.params = make(FRAME, **CONFIG)
        env = self.env
        self.reset = jax.jit(env.reset)
        self.step = jax.jit(env.step)
        self.step_env = jax.jit(env.step_env)
        self.vreset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
        self.vstep = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
        self.vstep_env = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, 0, None)))


@pytest.fixture(scope="module")
def c():
    return Compiled()


def keys(seed, n):
    return jax.random.split(jax.random.PRNGKey(seed), n)


def lane(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


# --------------------------------------------------------------------------------- transforms
def test_jit_matches_eager(c):
    """reset and step give the same results with and without jit (a few steps, with trades)."""
    key = jax.random.PRNGKey(3)
    obs_e, state_e = c.env.reset(key, c.params)
    obs_j, state_j = c.reset(key, c.params)
    chex.assert_trees_all_close((obs_e, state_e), (obs_j, state_j), rtol=1e-6, atol=1e-6)
    for t, action in enumerate([4, 4, 0, 2]):
        k = jax.random.fold_in(key, t)
        eager = c.env.step(k, state_e, action, c.params)
        jitted = c.step(k, state_j, action, c.params)
        chex.assert_trees_all_close(eager, jitted, rtol=1e-5, atol=1e-5)
        state_e, state_j = eager[1], jitted[1]


def test_vmap_matches_python_loop(c):
    """vmap over lanes == a Python loop of single-lane calls, for reset and for heterogeneous actions over
    several steps (docs/semantics.md §7 item 59: lanes are independent)."""
    ks = keys(5, NUM_ENVS)
    obs_v, state_v = c.vreset(ks, c.params)
    singles = [c.reset(k, c.params) for k in ks]
    chex.assert_trees_all_close((obs_v, state_v), jax.tree.map(lambda *x: jnp.stack(x), *singles))
    rng = np.random.default_rng(0)
    for t in range(6):
        ks = keys(100 + t, NUM_ENVS)
        actions = jnp.asarray(rng.integers(0, c.env.num_actions, NUM_ENVS), jnp.int32)
        out_v = c.vstep(ks, state_v, actions, c.params)
        outs = [c.step(ks[i], lane(state_v, i), actions[i], c.params) for i in range(NUM_ENVS)]
        # float32: separately compiled programs may fuse differently (1-ulp noise, larger relative error on
        # a balance that is a small difference of large numbers), hence atol ~ 1e-6 of the cash
        chex.assert_trees_all_close(out_v, jax.tree.map(lambda *x: jnp.stack(x), *outs), rtol=1e-5, atol=1e-3)
        state_v = out_v[1]


def test_no_retracing_across_steps_and_params(c):
    """One trace serves every step, action, key, state and numeric params value of the same shapes."""
    env = c.env

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(key, state, action, params):
        return env.step(key, state, action, params)

    _, state = c.reset(jax.random.PRNGKey(0), c.params)
    other = tj.TradingEnv(env.market, env.config.replace(transaction_fee=0.002, leverage=2)).default_params
    for t in range(12):
        params = c.params if t % 2 else other
        _, state, _, _, _ = step(jax.random.PRNGKey(t), state, jnp.int32(t % env.num_actions), params)
    chex.clear_trace_counter()


def test_shapes_and_dtypes_float32(c):
    """obs [obs_dim] float32, reward float32 [], done bool [], info fields and money in float32 by
    default; under vmap every leaf gains the leading [num_envs] axis (docs/semantics.md §7 item 58, JAX analogue of
    check_env_specs: the batch shape is num_envs)."""
    env = c.env
    assert env.observation_shape == (3 * 5 + 2 * 5 + 6,)
    obs, state = c.reset(jax.random.PRNGKey(0), c.params)
    chex.assert_shape(obs, env.observation_shape)
    chex.assert_type(obs, jnp.float32)
    obs, state, reward, done, info = c.step(jax.random.PRNGKey(1), state, 4, c.params)
    chex.assert_shape([reward, done], ())
    chex.assert_type([reward, done], [jnp.float32, jnp.bool_])
    chex.assert_type([state.balance, state.position, state.entry, state.initial_pv, info["portfolio_value"],
                      info["balance"], info["position_size"], info["entry_price"]], jnp.float32)  # fmt: skip
    chex.assert_type([state.bar, state.hold, info["action_kind"], info["step"]], jnp.int32)
    chex.assert_type([info["terminated"], info["truncated"]], jnp.bool_)
    chex.assert_shape(info["final_observation"], env.observation_shape)
    obs_v, state_v = c.vreset(keys(0, NUM_ENVS), c.params)
    out = c.vstep(keys(1, NUM_ENVS), state_v, jnp.zeros(NUM_ENVS, jnp.int32), c.params)
    chex.assert_shape(out[0], (NUM_ENVS, *env.observation_shape))
    chex.assert_tree_shape_prefix(out[1:], (NUM_ENVS,))
    chex.assert_tree_shape_prefix(state_v, (NUM_ENVS,))


def test_money_is_float64_under_x64():
    """With x64 the money state and money info fields are float64, while obs and reward stay float32
    (checked on the traced shapes, no compile)."""
    with jax.enable_x64(True):
        env, params = make(FRAME, **CONFIG)
        key = jax.random.PRNGKey(0)
        obs, state = jax.eval_shape(env.reset, key, params)
        obs, state, reward, done, info = jax.eval_shape(env.step, key, state, 0, params)
    assert params.leverage.dtype == jnp.float64
    assert state.balance.dtype == state.position.dtype == state.entry.dtype == jnp.float64
    assert info["portfolio_value"].dtype == info["balance"].dtype == jnp.float64
    assert obs.dtype == jnp.float32 and reward.dtype == jnp.float32 and done.dtype == jnp.bool_


# --------------------------------------------------------------------------------- keys, resets
def test_same_key_same_result_different_keys_differ(c):
    """Spec §7 item 46 (JAX analogue of seeding): the same key gives identical resets and steps; different
    keys give different start bars, cash draws and slippage."""
    k = jax.random.PRNGKey(9)
    chex.assert_trees_all_equal(c.reset(k, c.params), c.reset(k, c.params))
    _, s = c.reset(k, c.params)
    chex.assert_trees_all_equal(c.step(k, s, 4, c.params), c.step(k, s, 4, c.params))
    _, states = c.vreset(keys(1, 64), c.params)
    assert len(np.unique(np.asarray(states.start))) > 5
    assert len(np.unique(np.asarray(states.balance))) > 5
    flat = broadcast_state(lane(states, 0), 64)
    _, new, _, _, _ = c.vstep_env(keys(2, 64), flat, jnp.full(64, 4, jnp.int32), c.params)
    assert len(np.unique(np.asarray(new.entry))) > 50  # per-lane slippage draws (items 33, 49)


def test_reset_state_semantics(c):
    """Spec §2.3: a reset starts flat at bar `start` with the drawn cash as balance, initial and peak PV,
    no brackets, hold 0, no previous action; end = min(start + M, T) and start <= T - M (random start with
    a max length); the account part of the observation is [0, 0, 0, 0, L, 1]."""
    obs, s = c.vreset(keys(4, 256), c.params)
    T, M = c.env.num_bars, CONFIG["max_traj_length"]
    start, end = np.asarray(s.start), np.asarray(s.end)
    assert np.all(np.asarray(s.bar) == start) and np.all(start >= 0) and np.all(start <= T - M)
    np.testing.assert_array_equal(end, np.minimum(start + M, T))
    assert set(np.unique(start)) == set(range(T - M + 1))  # every allowed start is drawn
    for f in ("position", "entry", "stop_loss", "take_profit"):
        assert np.all(np.asarray(getattr(s, f)) == 0), f
    np.testing.assert_array_equal(s.balance, s.initial_pv)
    np.testing.assert_array_equal(s.balance, s.peak_pv)
    assert np.all(np.asarray(s.hold) == 0) and np.all(np.asarray(s.prev_action) == -1)
    np.testing.assert_array_equal(np.asarray(obs[:, -6:]), np.tile([0, 0, 0, 0, 3, 1], (256, 1)))


def test_cash_range_draws_inclusive_integers(c):
    """Q20 FIX and docs/semantics.md §7 item 47: a (lo, hi) cash range draws integers with BOTH ends inclusive (hi is
    reached); a fixed cash is constant, float cash works, and no draw touches NumPy's global RNG."""
    np_state = np.random.get_state()
    params = tj.TradingEnv(c.env.market, c.env.config.replace(initial_cash=(10, 12))).default_params
    _, s = c.vreset(keys(6, 600), params)
    cash = np.asarray(s.balance)
    assert set(np.unique(cash)) == {10.0, 11.0, 12.0}
    np.testing.assert_array_equal(cash, np.round(cash))
    _, s = c.vreset(keys(7, 600), c.params)
    cash = np.asarray(s.balance)
    assert cash.min() >= CASH[0] and cash.max() <= CASH[1] and np.all(cash == np.round(cash))
    assert abs(cash.mean() - 1000) < 40  # uniform over the range
    for fixed in (1234.5, 777):
        env, params = make(FRAME, **{**CONFIG, "initial_cash": fixed})
        s = jax.vmap(env.reset_state, in_axes=(0, None))(keys(8, 16), params)
        assert np.all(np.asarray(s.balance) == np.float32(fixed))
    after = np.random.get_state()
    assert np.array_equal(after[1], np_state[1]) and after[2] == np_state[2]


def test_draw_streams_are_independent(c):
    """Spec §7 item 48, JAX analogue (there is no set_seed): the start, cash and slippage of one key are
    separate draws: uncorrelated over many keys, and adjacent keys (fold_in k, k + 1) do not collide."""
    n = 2000
    _, s = c.vreset(keys(10, n), c.params)
    start, cash = np.asarray(s.start, np.float64), np.asarray(s.balance, np.float64)
    flat = broadcast_state(lane(s, 0), n)
    _, new, _, _, _ = c.vstep_env(keys(10, n), flat, jnp.full(n, 4, jnp.int32), c.params)
    u = np.asarray(new.entry, np.float64)
    for a, b in ((start, cash), (start, u), (cash, u)):
        assert abs(np.corrcoef(a, b)[0, 1]) < 0.1
    adjacent = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(0), k) for k in range(200)])
    _, s2 = c.vreset(adjacent, c.params)
    pairs = set(zip(np.asarray(s2.start).tolist(), np.asarray(s2.balance).tolist(), strict=True))
    assert len(pairs) > 190


def test_random_start_never_gives_a_zero_step_episode():
    """Q18 FIX: with random_start and no max length, a start never lands on the last bar, so every episode
    has at least one real step: on a 3-bar dataset 4000 keys draw starts 0 and 1 only (both), and the first
    step of each is a real one (not the exhaustion response). A 2-bar dataset always starts at 0."""
    for closes, starts in (([100, 101, 102], {0, 1}), ([100, 101], {0})):
        env, params = make(minute_frame(closes), random_start=True, max_traj_length=None)
        assert env.num_bars == len(closes)
        s = jax.jit(jax.vmap(env.reset_state, in_axes=(0, None)))(keys(11, 4000), params)
        assert set(np.unique(np.asarray(s.start))) == starts
        assert not np.asarray(s.exhausted).any()
        np.testing.assert_array_equal(s.end, len(closes))


def test_max_length_episode_lengths():
    """Spec §2.3 / §7 items 21 and 53: with random_start and max_traj_length M the start is uniform on
    [0, T - M] and the episode spans M bars (M - 1 real steps); with M > T the whole data is one episode."""
    env, params = make(minute_frame([100 + k for k in range(7)]), random_start=True, max_traj_length=3)
    s = jax.vmap(env.reset_state, in_axes=(0, None))(keys(12, 2000), params)
    start = np.asarray(s.start)
    assert set(np.unique(start)) == set(range(5))
    np.testing.assert_array_equal(np.asarray(s.end) - start, 3)
    params = params.replace(max_traj_length=jnp.asarray(50, jnp.int32))
    s = jax.vmap(env.reset_state, in_axes=(0, None))(keys(13, 100), params)
    assert np.all(np.asarray(s.start) == 0) and np.all(np.asarray(s.end) == 7)


# --------------------------------------------------------------------------------- auto-reset
def test_auto_reset_semantics(c):
    """Spec §10 / gymnax: `step` equals `step_env` (same key) on every step; the step that returns done
    gives the real reward and info (the episode's last bar) with info["final_observation"] the true last
    observation, while the returned obs/state begin a fresh episode; on other steps final_observation
    equals obs."""
    _, state = c.reset(jax.random.PRNGKey(21), c.params)
    seen_done = 0
    for t in range(40):
        k = jax.random.PRNGKey(1000 + t)
        action = (t // 3) % c.env.num_actions
        obs, new, reward, done, info = c.step(k, state, action, c.params)
        obs_e, new_e, reward_e, done_e, info_e = c.step_env(k, state, action, c.params)
        # float32, two separately compiled programs: equal up to an ulp of fusion noise
        close = dict(rtol=1e-6, atol=1e-6)
        assert reward == reward_e and done == done_e
        chex.assert_trees_all_close(info, info_e, **close)
        if not done:
            chex.assert_trees_all_close((obs, new), (obs_e, new_e), **close)
            chex.assert_trees_all_close(info["final_observation"], obs, **close)  # bit-exact: next test
        else:
            seen_done += 1
            chex.assert_trees_all_close(info["final_observation"], obs_e, **close)
            assert info["truncated"] or info["terminated"]
            assert int(new.bar) == int(new.start) and float(new.position) == 0 and int(new.hold) == 0
            assert float(new.balance) == float(new.initial_pv) and CASH[0] <= float(new.balance) <= CASH[1]
            assert int(new.prev_action) == -1 and int(new.end) - int(new.start) <= CONFIG["max_traj_length"]
            np.testing.assert_array_equal(obs, c.env.get_obs(new, c.params))
            np.testing.assert_array_equal(obs[-6:], [0, 0, 0, 0, 3, 1])
        state = new
    assert seen_done >= 3


def test_final_observation_is_obs_bit_for_bit_when_not_done(c):
    """The contract (env.step docstring, contract.md): info["final_observation"] "equals obs when not
    done". Checked exactly over 60 steps of the jitted single-lane step and 16 lanes x 12 steps of the
    vmapped one: a trainer may rely on it (e.g. `where(done, value(final_obs), value(obs))` must not change
    the not-done lanes)."""
    mismatches = 0
    _, s = c.reset(jax.random.PRNGKey(21), c.params)
    for t in range(60):
        obs, s, _, done, info = c.step(jax.random.PRNGKey(1000 + t), s, (t // 3) % c.env.num_actions, c.params)
        mismatches += int(not done and np.any(np.asarray(info["final_observation"]) != np.asarray(obs)))
    _, s = c.vreset(keys(80, 16), c.params)
    for t in range(12):
        actions = jnp.asarray(np.random.default_rng(t).integers(0, c.env.num_actions, 16), jnp.int32)
        obs, s, _, done, info = c.vstep(keys(81 + t, 16), s, actions, c.params)
        live = ~np.asarray(done)
        mismatches += int(np.sum(np.any(np.asarray(info["final_observation"])[live] != np.asarray(obs)[live], 1)))
    assert mismatches == 0, f"{mismatches} not-done lane-steps where final_observation != obs"


def test_partial_reset_touches_only_done_lanes(c):
    """Spec §7 item 58 (partial reset): under vmap a done lane is reset (fresh episode, brackets zero)
    while the other lanes carry their step_env state unchanged."""
    _, s = c.vreset(keys(30, NUM_ENVS), c.params)
    s = s.replace(end=s.end.at[0].set(s.bar[0] + 1).at[1].set(s.bar[1] + 1))  # lanes 0, 1 end on this step
    ks = keys(31, NUM_ENVS)
    actions = jnp.asarray([4, 0, 4, 1], jnp.int32)
    _, new, _, done, _ = c.vstep(ks, s, actions, c.params)
    _, new_e, _, done_e, _ = c.vstep_env(ks, s, actions, c.params)
    np.testing.assert_array_equal(done, [True, True, False, False])
    np.testing.assert_array_equal(done, done_e)
    chex.assert_trees_all_equal(lane(new, 2), lane(new_e, 2))
    chex.assert_trees_all_equal(lane(new, 3), lane(new_e, 3))
    for i in (0, 1):
        fresh = lane(new, i)
        assert int(fresh.bar) == int(fresh.start) and float(fresh.position) == 0
        assert float(fresh.stop_loss) == 0 and float(fresh.take_profit) == 0


def test_repeated_action_holds_and_a_change_executes(c):
    """Spec §7 item 59: repeating the level of an open position is a hold (no drift rebalancing); a new
    level trades."""
    _, s = c.reset(jax.random.PRNGKey(40), c.params)
    s = s.replace(end=s.start + 12)
    labels, sizes = [], []
    for t, a in enumerate([4, 4, 4, 1, 1]):
        _, s, _, _, info = c.step_env(jax.random.PRNGKey(t), s, a, c.params)
        labels.append(ActionKind(int(info["action_kind"])).label)
        sizes.append(float(s.position))
    assert labels == ["long", "hold", "hold", "short", "hold"]
    assert sizes[0] == sizes[1] == sizes[2] > 0 > sizes[3] == sizes[4]


def test_info_describes_the_new_state(c):
    """info's account fields are those of the post-step state (`env.describe`), price is the new bar's
    close, step counts bars advanced in the episode, and PV is the mark at that close (§3.8)."""
    _, s = c.reset(jax.random.PRNGKey(50), c.params)
    for t in range(5):
        _, new, _, _, info = c.step_env(jax.random.PRNGKey(60 + t), s, 4 - t % 2, c.params)
        desc = c.env.describe(new, c.params)
        for k, v in desc.items():
            np.testing.assert_array_equal(info[k], v, err_msg=k)
        assert float(info["price"]) == float(c.params.market.ohlc[int(new.bar), 3])
        assert int(info["step"]) == int(new.bar) - int(new.start)
        s = new


# --------------------------------------------------------------------------------- observations
def test_observation_layout_and_split(c):
    """Spec §1.8: obs = concat(flat window per timeframe in time_frames order, account_state[6]);
    split_observation inverts it, with keys market_data_{key}_{w}, for one lane and for a batch."""
    env = c.env
    assert env.window_keys == ("market_data_1Minute_3", "market_data_5Minute_2")
    obs, _ = c.vreset(keys(70, NUM_ENVS), c.params)
    parts = env.split_observation(obs)
    assert list(parts) == [*env.window_keys, "account_state"]
    assert parts["market_data_1Minute_3"].shape == (NUM_ENVS, 3, 5)
    assert parts["market_data_5Minute_2"].shape == (NUM_ENVS, 2, 5)
    assert parts["account_state"].shape == (NUM_ENVS, 6)
    flat = jnp.concatenate([p.reshape(NUM_ENVS, -1) for p in parts.values()], axis=1)
    np.testing.assert_array_equal(flat, obs)
    one = env.split_observation(obs[0])
    np.testing.assert_array_equal(one["market_data_5Minute_2"], parts["market_data_5Minute_2"][0])


def test_windows_equal_raw_data_and_never_look_ahead(c):
    """Spec §7 items 51 and 52 at the env level: the 1Min window at exec bar i is the raw input rows
    ending with the bar that starts at t_i (oldest first, advancing one bar per step); the 5Min window
    holds the 5-minute bars (resampled from the input with pandas) whose END is <= t_i, never a bar that
    closes after the decision instant."""
    env = c.env
    raw = FRAME.set_index("timestamp")[["open", "high", "low", "close", "volume"]].astype(np.float32)
    agg = {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    five = FRAME.set_index("timestamp")[list(agg)].resample("5min").agg(agg).dropna().astype(np.float32)
    five_end = five.index + pd.Timedelta("5min")
    empty_bins = 0
    for i in range(env.num_bars):
        t = env.market.exec_times[i]
        state = env.reset_state(jax.random.PRNGKey(0), c.params).replace(bar=jnp.int32(i))
        parts = env.split_observation(env.get_obs(state, c.params))
        fine = raw[raw.index <= t].tail(3).to_numpy()
        coarse = five[five_end <= t].tail(2).to_numpy()
        if t in raw.index:
            np.testing.assert_array_equal(parts["market_data_1Minute_3"], fine, err_msg=str(t))
        else:  # an empty exec bin repeats the last window (§1.6)
            assert raw[raw.index <= t].index[-1] < t
            np.testing.assert_array_equal(parts["market_data_1Minute_3"], fine)
        np.testing.assert_array_equal(parts["market_data_5Minute_2"], coarse, err_msg=str(t))
        if t not in raw.index:  # docs/semantics.md §7 item 54: an empty exec bin is a flat bar at the previous close
            prev_close = raw[raw.index < t]["close"].iloc[-1]
            np.testing.assert_array_equal(c.params.market.ohlc[i], [prev_close] * 4)
            empty_bins += 1
    assert empty_bins == 1


def test_aux_columns_are_observed_raw_and_forward_filled():
    """Spec §7 item 55 at the env level: with no feature fn an aux column is a 6th raw feature (bin
    `last`, forward-filled) of every window, after OHLCV."""
    frame = minute_frame([100, 101, 102, 103, 104])
    frame.insert(1, "funding", [0.1, np.nan, 0.3, np.nan, 0.5, 0.6, 0.7])
    env, params = make(frame, window_sizes=3, random_start=False)
    assert env.feature_sizes == (6,) and env.observation_shape == (3 * 6 + 6,)
    state = env.reset_state(jax.random.PRNGKey(0), params)
    window = env.split_observation(env.get_obs(state, params))["market_data_1Minute_3"]
    # window 3 at 1Min: the first exec bar is input row 3, so the window holds rows 1-3 (funding NaN, .3, NaN)
    np.testing.assert_allclose(window[:, 5], [0.1, 0.3, 0.3])
    np.testing.assert_array_equal(window[:, :4], frame[["open", "high", "low", "close"]].to_numpy()[1:4])


def test_action_kind_labels_are_the_spec_labels():
    """Spec §3.14 / §4.2 (and §7 items 42-43): `info["action_kind"]` codes name exactly the reference's
    trade labels of both engines. TorchTrade's binarized action history (item 43) has no counterpart
    here: the label code itself is what `rollout` records (render_history maps it to markers)."""
    plain = {"hold", "buy", "sell", "long", "short", "flat", "close_partial", "liquidation"}
    brackets = {"hold", "long", "short", "close", "sltp_sl", "sltp_tp", "liquidation"}
    assert {k.label for k in ActionKind} == plain | brackets
    assert ActionKind.HOLD == 0
