"""The gymnax protocol: `TradingEnv`'s `default_params` (a property), spaces, `name`, `num_actions`, and gymnax's
own `LogWrapper` / `FlattenObservationWrapper` over `tj.GymnaxEnv` in a PureJaxRL-style vmapped `lax.scan`.

gymnax 1.x's `step` returns six values, `TradingEnv.step` five (gymnax before 1.0, PureJaxRL's wrappers and the
trainer); `GymnaxEnv` is the six-value view of the same step, so the rewards, flags and auto-resets are the
env's own: the LogWrapper's episode returns must equal the sums of the unwrapped env's rewards.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from gymnax.environments import spaces as gymnax_spaces
from gymnax.wrappers.purerl import FlattenObservationWrapper, LogWrapper

import trading_jax as tj
from tests.support.env_testlib import make_ohlcv
from trading_jax import spaces

NUM_ENVS, NUM_STEPS = 8, 40


@pytest.fixture(scope="module")
def env():
    config = tj.EnvConfig(
        time_frames="1Min", execute_on="1Min", window_sizes=4, leverage=3, transaction_fee=0.001, slippage=0.01,
        initial_cash=(900, 1100), max_traj_length=7,
    )  # fmt: skip
    return tj.make(make_ohlcv(200), config)[0]


def test_environment_interface(env):
    params = env.default_params  # a property, as in gymnax
    assert isinstance(params, tj.EnvParams) and env.name == "TradingEnv" and env.num_actions == 3
    action_space, obs_space = env.action_space(params), env.observation_space(params)
    assert isinstance(action_space, gymnax_spaces.Discrete) and action_space.n == 3
    assert isinstance(obs_space, gymnax_spaces.Box) and obs_space.shape == (4 * 5 + 6,) == env.observation_shape
    assert obs_space.dtype == np.float32 and obs_space.low == -np.inf and obs_space.high == np.inf
    obs, _ = jax.jit(env.reset)(jax.random.PRNGKey(0))  # params default to env.default_params, as in gymnax
    assert obs.shape == obs_space.shape and np.isfinite(obs).all()
    genv = tj.GymnaxEnv(env)
    assert (genv.name, genv.num_actions, genv.action_space(params).n) == ("TradingEnv", 3, 3)


def test_spaces_without_gymnax(monkeypatch):
    """Without gymnax the stand-in spaces have gymnax's attributes and methods."""
    monkeypatch.setattr(spaces, "_gymnax_spaces", lambda: None)
    d, b = spaces.discrete(4), spaces.box(-1.0, 1.0, (3,))
    assert isinstance(d, spaces.Discrete) and (d.n, d.shape, d.dtype) == (4, (), np.int32)
    assert np.asarray(d.contains(np.array([-1, 0, 3, 4]))).tolist() == [False, True, True, False]
    assert isinstance(b, spaces.Box) and b.shape == (3,) and b.dtype == np.float32
    assert bool(b.contains(np.array([0.0, 1.0, -1.0]))) and not bool(b.contains(np.array([0.0, 2.0, 0.0])))

    @jax.jit
    def draw(key):
        return jax.vmap(d.sample)(jax.random.split(key, 200)), b.sample(key)

    ints, x = draw(jax.random.PRNGKey(0))
    assert set(np.unique(ints).tolist()) == {0, 1, 2, 3} and ints.dtype == np.int32
    assert x.shape == (3,) and x.dtype == np.float32 and bool(b.contains(x))


@functools.partial(jax.jit, static_argnames=("wrapped", "env"))
def _scan(wrapped, env, key, params):
    """PureJaxRL's `_env_step` (random actions, `jax.vmap(env.step)` in `lax.scan`) through the wrapped env,
    and the same keys and actions through the unwrapped env's five-value step, in one compiled program."""
    sample = wrapped.action_space(params).sample
    reset_keys = jax.random.split(jax.random.PRNGKey(0), NUM_ENVS)
    start = (jax.vmap(wrapped.reset, in_axes=(0, None))(reset_keys, params),
             jax.vmap(env.reset, in_axes=(0, None))(reset_keys, params))  # fmt: skip

    def body(carry, k):
        (obs, state), (obs0, state0) = carry
        k_act, k_step = jax.random.split(k)
        action = jax.vmap(sample)(jax.random.split(k_act, NUM_ENVS))
        keys = jax.random.split(k_step, NUM_ENVS)
        out = jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(keys, state, action, params)
        out0 = jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state0, action, params)
        return ((out[0], out[1]), (out0[0], out0[1])), (action, out[2:], out0[2:])

    return jax.lax.scan(body, start, jax.random.split(key, NUM_STEPS))[1]


def test_gymnax_log_wrapper_in_a_vmapped_scan(env):
    wrapped = LogWrapper(FlattenObservationWrapper(tj.GymnaxEnv(env)))
    actions, (reward, terminated, truncated, info), (reward0, done0, info0) = _scan(
        wrapped, env, jax.random.PRNGKey(1), wrapped.default_params
    )
    np.testing.assert_array_equal(reward, reward0)
    np.testing.assert_array_equal(terminated | truncated, done0)
    np.testing.assert_array_equal(terminated, info0["terminated"])
    reward0, done0 = np.asarray(reward0), np.asarray(done0)
    assert done0.sum() >= 2 * NUM_ENVS  # every lane finishes several 6-step episodes
    for lane in range(NUM_ENVS):
        ends = np.flatnonzero(done0[:, lane])
        starts = np.concatenate([[0], ends[:-1] + 1])
        want = [np.sum(reward0[s : e + 1, lane], dtype=np.float32) for s, e in zip(starts, ends, strict=True)]
        got = np.asarray(info["returned_episode_returns"])[ends, lane]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"lane {lane}")
        assert np.asarray(info["returned_episode"])[:, lane].tolist() == done0[:, lane].tolist()
        lengths = np.asarray(info["returned_episode_lengths"])[ends, lane]
        assert lengths.tolist() == (ends - starts + 1).tolist()
    assert np.asarray(actions).min() >= 0 and np.asarray(actions).max() < env.num_actions
