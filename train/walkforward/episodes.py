"""Deterministic-start episodes of fixed action tables, and the per-episode numbers both the agent and the
baselines report.

A table episode acts `table[t]` at step t, from the first bar of an evaluation span to its end (docs/semantics.md §3.1:
the order fills at the close of the bar it was chosen on, times the slippage draw). Its keys are derived as the
agent's deterministic episode derives them (`train.evaluate`): `k_reset, k_run = split(key)`, one key per step
from `k_run`, so an agent episode and a baseline episode given the same key see the same slippage draws
(common random numbers: their difference carries no slippage noise of its own).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from trading_jax.rollout import reset_row
from train.evaluate import EPISODE_KEYS, lane, summarize

METRIC_KEYS = {"log_return": "log_return", "sharpe": "sharpe", "max_drawdown": "max_drawdown", "trades": "num_trades"}


def _table_episode(env, num_steps: int):
    """Pure `fn(env_params, table int32[>= num_steps], key) -> rows [num_steps + 1]` (the `train.evaluate` rows)."""

    def run(env_params, table, key):
        k_reset, k_run = jax.random.split(key)
        _, state = env.reset(k_reset, env_params)
        first = {k: v for k, v in reset_row(env, state, env_params).items() if k in EPISODE_KEYS}
        first["valid"] = jnp.ones((), bool)

        def step(carry, xs):
            state, alive = carry
            action, k = xs
            _, state, reward, done, info = env.step_env(k, state, action, env_params)
            row = {k: info[k] for k in ("terminated", "portfolio_value", "position_size", "price", "action_kind")}
            row.update(reward=reward, done=done, action=action, valid=alive)
            return (state, alive & ~done), row

        xs = (table[:num_steps].astype(jnp.int32), jax.random.split(k_run, num_steps))
        _, rows = jax.lax.scan(step, (state, jnp.ones((), bool)), xs)
        return jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rows)

    return run


class TableEpisodes:
    """Compiled, batch-vmapped table episodes, one program per (env config, observation shape, steps): windows of
    equal length share it (the market lives in the env params). The leverage is per episode: the fractional env
    reads it from its params alone (docs/semantics.md §3.3, §3.10), so leverage 1 is the spot env's episode."""

    def __init__(self):
        self.cache: dict = {}

    def __call__(self, bundle, tables, keys, leverage) -> dict[str, np.ndarray]:
        """`tables [B, >= steps]`, `keys [B]`, `leverage [B]` -> rows `[B, steps + 1]` as NumPy."""
        env, params = bundle.env, bundle.params
        sig = (env.config, env.observation_shape, bundle.num_steps)
        if sig not in self.cache:
            axes = jax.tree.map(lambda _: None, params).replace(leverage=0)
            episode = jax.vmap(_table_episode(env, bundle.num_steps), in_axes=(axes, 0, 0))
            self.cache[sig] = jax.jit(episode)
        params = params.replace(leverage=jnp.asarray(leverage, params.leverage.dtype))
        return jax.device_get(self.cache[sig](params, jnp.asarray(tables), keys))


def bar_minutes(bundle) -> float:
    return bundle.market.execute_on.timedelta.total_seconds() / 60


def episode_numbers(rows, leverage: float, minutes: float) -> tuple[dict[str, list[float]], np.ndarray]:
    """Per episode of `rows [B, steps + 1]`: `({metric: [B values]}, equity [B, steps + 1])`, equity = PV / PV_0,
    held at its last value after an episode ended early (bankruptcy)."""
    n = np.asarray(rows["valid"]).shape[0]
    summaries = [summarize(lane(rows, i), leverage, minutes) for i in range(n)]
    metrics = {name: [float(s[key]) for s in summaries] for name, key in METRIC_KEYS.items()}
    pv = np.asarray(rows["portfolio_value"], np.float64)
    valid = np.asarray(rows["valid"], bool)
    held = np.maximum.accumulate(np.where(valid, np.arange(pv.shape[1]), 0), axis=1)
    equity = np.take_along_axis(pv, held, axis=1) / pv[:, :1]
    return metrics, equity
