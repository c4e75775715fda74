"""Gymnasium adapters (`trading_jax.gym`): `check_env` on `GymnasiumEnv`, reproducible seeds, the vector env
against the JAX env lane by lane (same actions -> same rewards, observations, flags and final observations,
same-step auto-reset), and the optional-dependency rules (`import trading_jax` loads neither gymnasium nor
gymnax; `trading_jax.gym` without gymnasium names the extra to install)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import trading_jax as tj
from tests.support.env_testlib import make_ohlcv
from trading_jax.gym import GymnasiumEnv, GymnasiumVectorEnv

FRAME = make_ohlcv(200)
CONFIG = tj.EnvConfig(
    time_frames="1Min", execute_on="1Min", window_sizes=4, leverage=3, transaction_fee=0.001, slippage=0.01,
    initial_cash=(900, 1100), max_traj_length=6,
)  # fmt: skip
NUM_ENVS, NUM_STEPS = 4, 14


@pytest.fixture(scope="module")
def single():
    return GymnasiumEnv(FRAME, CONFIG)


def test_check_env_passes(single):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(single)
    # the only remark: render modes cannot be listed without a registered spec (the env renders nothing)
    assert [str(w.message) for w in caught if "render" not in str(w.message)] == []
    assert single.observation_space.shape == (26,) and single.action_space.n == 3


def test_seeds_are_reproducible_and_episodes_end(single):
    def episode(seed):
        obs, info = single.reset(seed=seed)
        rows = [(obs, 0.0, info["portfolio_value"])]
        for t in range(10):
            obs, reward, terminated, truncated, info = single.step(t % 3)
            rows.append((obs, reward, info["portfolio_value"]))
            if terminated or truncated:
                return rows, truncated
        raise AssertionError("a 6-bar episode did not end")

    a, truncated = episode(7)
    b, _ = episode(7)
    c, _ = episode(8)
    assert truncated and len(a) == 6  # max_traj_length=6: 5 steps, truncated on the last
    for (oa, ra, pa), (ob, rb, pb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(oa, ob)
        assert (ra, pa) == (rb, pb)
    assert a[0][2] != c[0][2] or not np.array_equal(a[0][0], c[0][0])  # another seed, another start or cash
    assert isinstance(a[1][1], float) and a[0][0].dtype == np.float32


def test_out_of_range_action_is_an_error(single):
    single.reset(seed=0)
    with pytest.raises(ValueError, match=r"^actions must be integers in \[0, 2\] \(the action space\), got \[3\]$"):
        single.step(3)


def test_vector_env_equals_the_jax_env_lane_by_lane():
    venv = GymnasiumVectorEnv(FRAME, CONFIG, num_envs=NUM_ENVS)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.observation_space.shape == (NUM_ENVS, 26)
    assert isinstance(venv.action_space, gymnasium.spaces.MultiDiscrete)
    env, params = venv.env, venv.params
    actions = np.random.default_rng(0).integers(0, env.num_actions, (NUM_STEPS, NUM_ENVS))

    # The documented key schedule: key = PRNGKey(seed); each reset / step splits it and gives lane i split(k, n)[i].
    # (The JAX side is vmapped too: a vmapped and a one-lane program may round float32 differently in the last bit.)
    key, k = jax.random.split(jax.random.PRNGKey(5))
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(jax.random.split(k, NUM_ENVS), params)
    obs_v, _ = venv.reset(seed=5)
    np.testing.assert_array_equal(obs_v, obs)
    ends = 0
    for t in range(NUM_STEPS):
        obs_v, reward_v, term_v, trunc_v, infos = venv.step(actions[t])
        key, k = jax.random.split(key)
        obs, state, reward, done, info = step(jax.random.split(k, NUM_ENVS), state, actions[t].astype(np.int32), params)
        obs, reward, done, info = jax.device_get((obs, reward, done, info))
        for i in range(NUM_ENVS):
            where = f"step {t} lane {i}"
            np.testing.assert_array_equal(obs_v[i], obs[i], err_msg=where)
            assert reward_v[i] == reward[i] and term_v[i] == info["terminated"][i], where
            assert trunc_v[i] == info["truncated"][i] and infos["portfolio_value"][i] == info["portfolio_value"][i]
            if done[i]:
                ends += 1
                assert infos["_final_obs"][i] and infos["_final_info"][i], where
                np.testing.assert_array_equal(infos["final_obs"][i], info["final_observation"][i], err_msg=where)
                assert infos["final_info"]["bar"][i] == info["bar"][i], where
            else:
                assert "final_obs" not in infos or infos["final_obs"][i] is None, where
    assert ends >= NUM_ENVS  # every lane ended an episode (5-step episodes) and was auto-reset in the same step
    with pytest.raises(ValueError, match=r"actions must have shape \(4,\), got \(3,\)"):
        venv.step(np.zeros(3, int))


def test_optional_dependencies():
    """`import trading_jax` loads neither gymnasium nor gymnax; `trading_jax.gym` without gymnasium raises an
    ImportError naming the extra."""
    code = """
import sys
import trading_jax, trading_jax.gymnax_env
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("gymnasium", "gymnax"))
assert loaded == [], loaded
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "gymnasium":
            raise ImportError("No module named 'gymnasium'")
sys.meta_path.insert(0, Block())
try:
    import trading_jax.gym
except ImportError as err:
    print(err)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith('trading_jax.gym needs gymnasium >= 1.1: pip install "trading_jax[gym]"'), out.stdout
