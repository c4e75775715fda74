"""`compute_once` (trading_jax.xla_cpu) only changes what XLA:CPU compiles: with the identity in its place,
every step of a multi-step, auto-resetting run is bit-for-bit the same, for fractional levels and brackets,
in float32 and float64.

Bit for bit once FMA is off (`XLA_FLAGS=--xla_cpu_max_isa=AVX`), as for the golden replays: with FMA
instructions, XLA:CPU contracts `a * b + c` into a fused multiply-add wherever both sit in one kernel, and a
phase boundary decides which do, so the last bit of a few money values may differ.
`test_compute_once_changes_no_result_without_fma` runs the comparison in such a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import trading_jax as tj
import trading_jax.env as env_module
from tests.support.paths import REPO_ROOT
from trading_jax.types import ActionKind

NO_FMA = "--xla_cpu_max_isa=AVX"
FMA_OFF = NO_FMA in os.environ.get("XLA_FLAGS", "").split()

NUM_ENVS, NUM_STEPS = 8, 64

BASE = dict(
    time_frames="1Min", execute_on="1Min", window_sizes=2, random_start=True, max_traj_length=12,
    initial_cash=(500, 2000), slippage=0.01, transaction_fee=0.001, leverage=20,
)
CONFIGS = {
    "levels": dict(action_levels=(-1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0)),
    "brackets": dict(
        sltp=True, include_close_action=True, stoploss_levels=(-0.02, -0.1), takeprofit_levels=(0.03, 0.2)
    ),
}
# What the scripted run must go through, so that every phase of `transition` is exercised.
K = ActionKind
EXPECTED_KINDS = {
    "levels": {K.LONG, K.SHORT, K.FLAT, K.CLOSE_PARTIAL, K.LIQUIDATION},
    "brackets": {K.LONG, K.SHORT, K.CLOSE, K.SLTP_SL, K.SLTP_TP, K.LIQUIDATION},
}


def _frame(num_bars: int = 80, seed: int = 0) -> pd.DataFrame:
    """A volatile 1-minute random walk with gapped opens and long wicks."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, num_bars)))
    open_ = np.concatenate([[100.0], close[:-1]]) * np.exp(rng.normal(0, 0.02, num_bars))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.04, num_bars)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.04, num_bars)))
    ts = pd.date_range("2024-01-01", periods=num_bars, freq="1min")
    volume = rng.uniform(1, 10, num_bars)
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": volume})


def _trajectory(env, params):
    """Every output of `NUM_STEPS` auto-resetting steps of `NUM_ENVS` lanes under scripted actions."""
    actions = np.random.default_rng(1).integers(0, env.num_actions, (NUM_STEPS, NUM_ENVS))

    def run(params, actions):
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(jax.random.PRNGKey(0), NUM_ENVS), params)
        step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

        def one(state, xs):
            key, action = xs
            obs, state, reward, done, info = step(jax.random.split(key, NUM_ENVS), state, action, params)
            return state, dict(info, obs=obs, state=state, reward=reward, done=done)

        keys = jax.random.split(jax.random.PRNGKey(1), NUM_STEPS)
        _, traj = jax.lax.scan(one, state, (keys, actions))
        return dict(traj, reset_obs=obs, reset_state=state)

    return jax.device_get(jax.jit(run)(params, jnp.asarray(actions, jnp.int32)))  # a fresh trace per call


@pytest.mark.skipif(not FMA_OFF, reason="bit for bit only without FMA: the _without_fma test runs this")
@pytest.mark.parametrize("x64", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("mode", sorted(CONFIGS))
def test_compute_once_changes_no_result(mode, x64, monkeypatch):
    with jax.enable_x64(x64), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        env, params = tj.make(_frame(), tj.EnvConfig(**BASE, **CONFIGS[mode]))

        calls = []
        compute_once = env_module.compute_once

        def counted(values, bar):
            calls.append(1)
            return compute_once(values, bar)

        monkeypatch.setattr(env_module, "compute_once", counted)
        with_boundaries = _trajectory(env, params)
        assert calls, "the env no longer calls trading_jax.env.compute_once: patch the name it does call"

        monkeypatch.setattr(env_module, "compute_once", lambda values, bar: values)
        without = _trajectory(env, params)

    kinds = set(np.unique(with_boundaries["action_kind"]).tolist())
    assert EXPECTED_KINDS[mode] <= kinds, f"the scenario misses {EXPECTED_KINDS[mode] - kinds}"
    assert with_boundaries["done"].any()
    leaves, treedef = jax.tree_util.tree_flatten_with_path(with_boundaries)
    assert jax.tree_util.tree_structure(without) == treedef
    for (path, want), got in zip(leaves, jax.tree.leaves(without), strict=True):
        np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))


@pytest.mark.skipif(FMA_OFF, reason="this is the run without FMA itself")
def test_compute_once_changes_no_result_without_fma():
    env = dict(os.environ, XLA_FLAGS=NO_FMA, JAX_PLATFORMS="cpu")
    test = f"{__file__}::test_compute_once_changes_no_result"
    cmd = [sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", test]
    out = subprocess.run(cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert f"{2 * len(CONFIGS)} passed" in out.stdout
