"""Baselines through the same env as the agent (same market, fees, slippage, leverage, cash), on every test span.

Each baseline is a table of action indices run as a deterministic-start episode (`episodes.TableEpisodes`):

* `buy_and_hold`: the largest action level (+1 by default: exposure `L x PV` at the config's leverage L), every bar;
* `buy_and_hold_1x`: exposure `1 x PV`. A level `1/L` gives that on the same env (docs/semantics.md §3.3: notional
  `PV |a| L / (1 + L f)`), so it is used when `env.action_levels` has one; otherwise (the default levels
  [-1, 0, 1]) the largest level with the env params' leverage set to 1 (spot: no liquidation, docs/semantics.md §3.10).
  The fractional env reads its leverage from the params only, so this is the leverage-1 env's episode, bit
  for bit, from the same compiled program (tests/train/test_walkforward_baselines.py checks it);
* `flat`: the 0 level throughout (no trade: log return 0);
* `momentum`: at bar t, the sign of the last N-bar return `close_t / close_{t-N} - 1` (N =
  `walkforward.momentum_bars`): the largest level when positive, the smallest (short) level when negative and
  shorts are allowed, else flat; flat until N closes exist. Closes before the span are used (they are past);
* `random`: uniform over the action indices, `walkforward.random_seeds` tables per window.

The first four run once per agent seed with that seed's evaluation key (common random numbers, so agent minus
baseline pairs per seed); `random` runs with its own keys.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

import trading_jax
from train.walkforward.bundles import EvalSpan
from train.walkforward.episodes import TableEpisodes, bar_minutes, episode_numbers

PAIRED = ("buy_and_hold", "buy_and_hold_1x", "flat", "momentum")
BASELINES = (*PAIRED, "random")


@dataclass(frozen=True)
class Levels:
    """Action indices of the baselines, from `env.action_levels` (`EnvConfig`)."""

    long: int
    flat: int
    short: int  # the smallest level when shorts are allowed, else the flat index
    one_x: int | None  # index of the level 1/L, or None: buy_and_hold_1x runs on a leverage-1 env

    @classmethod
    def of(cls, config: trading_jax.EnvConfig) -> Levels:
        levels = np.asarray(config.action_levels, np.float64)
        flat = int(np.flatnonzero(levels == 0.0)[0])
        short = int(np.argmin(levels)) if config.allows_short else flat
        near = np.flatnonzero(np.isclose(levels, 1.0 / float(config.leverage), rtol=0, atol=1e-9))
        one_x = int(near[0]) if float(config.leverage) > 1 and len(near) else None
        return cls(long=int(np.argmax(levels)), flat=flat, short=short, one_x=one_x)


def momentum_signal(closes: np.ndarray, prefix: int, num_bars: int, lookback: int) -> np.ndarray:
    """`sign(close_t - close_{t-N})` for the span's bars t (`closes[prefix:]`), 0 where `t - N < 0`."""
    t = prefix + np.arange(num_bars)
    past = t - lookback
    sign = np.sign(closes[t] - closes[np.maximum(past, 0)])
    return np.where(past >= 0, sign, 0).astype(np.int32)


def action_tables(levels: Levels, span: EvalSpan, lookback: int) -> dict[str, np.ndarray]:
    """The deterministic tables `[bars]` of the span: buy_and_hold, buy_and_hold_1x, flat, momentum."""
    n = span.bundle.market.num_bars
    signal = momentum_signal(span.closes, span.prefix, n, lookback)
    momentum = np.select([signal > 0, signal < 0], [levels.long, levels.short], levels.flat)
    full = lambda index: np.full(n, index, np.int32)
    one_x = levels.long if levels.one_x is None else levels.one_x
    return {
        "buy_and_hold": full(levels.long),
        "buy_and_hold_1x": full(one_x),
        "flat": full(levels.flat),
        "momentum": momentum.astype(np.int32),
    }


def run_baselines(
    span: EvalSpan, keys, random_keys, lookback: int, episodes: TableEpisodes, rng: np.random.Generator
) -> tuple[dict[str, dict[str, list[float]]], dict[str, np.ndarray]]:
    """Every baseline on `span`, in one batch of episodes: `({name: {metric: [per episode]}}, {name: equity
    [per episode, bars]})`.

    `keys [K]`: the agent seeds' evaluation keys (one episode of each paired baseline per key);
    `random_keys [R]`: one random-policy episode each, with tables drawn from `rng`.
    """
    bundle = span.bundle
    config = bundle.env.config
    levels = Levels.of(config)
    tables = action_tables(levels, span, lookback)
    k, r, n = len(keys), len(random_keys), bundle.market.num_bars
    L = float(config.leverage)
    one_x_leverage = L if levels.one_x is not None else 1.0
    leverage = {name: one_x_leverage if name == "buy_and_hold_1x" else L for name in PAIRED}
    batch = [np.repeat(tables[name][None], k, 0) for name in PAIRED]
    batch.append(rng.integers(0, bundle.env.num_actions, (r, n), dtype=np.int32))
    all_keys = jnp.concatenate([keys] * len(PAIRED) + [random_keys])
    all_leverage = np.concatenate([np.full(k, leverage[name]) for name in PAIRED] + [np.full(r, L)])
    rows = episodes(bundle, np.concatenate(batch), all_keys, all_leverage)
    metrics, equity = episode_numbers(rows, L, bar_minutes(bundle))
    bounds = np.cumsum([0] + [k] * len(PAIRED) + [r])
    out_m, out_e = {}, {}
    for name, lo, hi in zip(BASELINES, bounds[:-1], bounds[1:], strict=True):
        out_m[name] = {m: v[lo:hi] for m, v in metrics.items()}
        out_e[name] = equity[lo:hi]
    return out_m, out_e
