"""Replay a golden case through the JAX env (shared by the golden tests and the closing-note report)."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np

import trading_jax as tj
from tests.support.env_testlib import scan_transitions
from tests.support.golden_cases import GOLDEN, is_sltp, load_json

MONEY = ("pv", "balance", "position_size", "entry_price")
# scan_transitions' field names -> the golden traces'
RENAMED = {"position": "position_size", "entry": "entry_price", "hold": "hold_counter"}


def env_config(case: str) -> tj.EnvConfig:
    cfg = {k: v for k, v in load_json(case)["config"].items() if k != "seed"}
    return tj.EnvConfig(**cfg, sltp=is_sltp(case))


def build(case: str):
    """`(env, params, rec)` for a golden case, in the current money dtype (set x64 before calling)."""
    rec = load_json(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gap and zero-step warnings are expected in some cases
        env, params = tj.make(
            GOLDEN / f"{case}.csv.gz", env_config(case), features=rec.get("feature_fn"), allow_missing=True
        )
    return env, params, rec


def replay(case: str) -> tuple[dict, dict]:
    """Run the recorded actions with the recorded slippage multipliers (1.0 where none was drawn).

    Returns `(got, rec)`: `got` maps each field to a `[num_steps]` NumPy array (obs `[num_steps, obs_dim]`),
    plus `reset_obs`.
    """
    env, params, rec = build(case)
    steps = rec["steps"]
    actions = jnp.asarray([s["action"] for s in steps], jnp.int32)
    slips = jnp.asarray([1.0 if s["slippage_u"] is None else s["slippage_u"] for s in steps], jnp.float32)
    state = env.reset_state(jax.random.PRNGKey(0), params)

    _, rows = jax.jit(functools.partial(scan_transitions, env))(state, actions, slips, params)
    got = {RENAMED.get(k, k): np.asarray(v) for k, v in rows.items()}
    got["reset_obs"] = np.asarray(env.get_obs(state, params))
    got["env"] = env
    return got, rec


def expected(rec: dict, field: str) -> np.ndarray:
    return np.asarray([s[field] for s in rec["steps"]])


def expected_obs(env: tj.TradingEnv, row: dict) -> np.ndarray:
    """The recorded observation of one step (or of the reset) flattened as the env lays it out (§1.8)."""
    parts = [np.asarray(row["windows"][key], np.float32).reshape(-1) for key in env.window_keys]
    parts.append(np.asarray(row["account_state"], np.float32))
    return np.concatenate(parts)


def money_error(got: np.ndarray, want: np.ndarray, initial_cash: float) -> np.ndarray:
    """Per-step error in units of the README tolerance `1e-9 |b| + 1e-9 initial_cash` (<= 1 passes)."""
    return np.abs(got - want) / (1e-9 * np.abs(want) + 1e-9 * initial_cash)
