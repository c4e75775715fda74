"""Shared helpers for the env behaviour tests: small hand-built frames and ONE compiled runner per shape.

Compile budget (2 shared CPU cores): a jitted function's trace depends only on the env's *static* part
(`sltp`, `trade_mode`, `random_start`, whether the cash is a range, the reward fn, the window/feature
layout) and on the shapes of its array inputs. Everything numeric (prices, levels, leverage, fee, ...)
lives in `EnvParams`, so `run_script` keeps one jitted scan per static signature and feeds it the params
of whatever config a test builds: two configs that differ only in numbers share one compile.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

import trading_jax as tj
from trading_jax.env import ActionKind

BASE = dict(time_frames="1Min", execute_on="1Min", window_sizes=2, random_start=False, initial_cash=1000)


def minute_frame(closes, *, bars=None, warmup=2, wick=0.5, start="2024-01-01", drop=()):
    """Spec §9-style 1-minute data. Exec bar k (k = 0 is the reset bar) has close `closes[k]`.

    `warmup` rows at `closes[0]` come first (window 2 at 1Min: the first exec bar is input row 2). Every
    bar opens at the previous close with high/low = max/min(open, close) +- `wick`; `bars={k: (o, h, l, c)}`
    overrides exec bar k. `drop`: exec bar numbers whose input row is deleted (an empty exec bin, which
    becomes a flat bar at the previous close). Volume is 1, 2, 3, ... so windows are recognisable.
    """
    closes = [float(c) for c in closes]
    rows, prev = [], closes[0]
    for _ in range(warmup):
        rows.append((prev, prev + wick, prev - wick, prev))
    for k, c in enumerate(closes):
        if bars and k in bars:
            rows.append(tuple(float(x) for x in bars[k]))
        else:
            o = prev
            rows.append((o, max(o, c) + wick, min(o, c) - wick, c))
        prev = rows[-1][3]
    ts = pd.date_range(start, periods=len(rows), freq="1min")
    df = pd.DataFrame(rows, columns=["open", "high", "low", "close"])
    df.insert(0, "timestamp", ts)
    df["volume"] = np.arange(1.0, len(rows) + 1)
    if drop:
        df = df.drop(index=[warmup + k for k in drop]).reset_index(drop=True)
    return df


def wild_frame(seed: int, vol: float, gap_p: float, wick_p: float, *, num_bars: int = 40, drop=()):
    """`num_bars` 1-minute exec bars: a random walk with gapped opens (up to ~+-40%) and wild wicks.

    `drop`: exec bars whose input row is deleted (empty bins)."""
    rng = np.random.default_rng(seed)
    bars, prev = {}, 100.0
    for k in range(num_bars):
        o = prev * (float(np.exp(rng.normal(0.0, 0.15))) if (k and rng.random() < gap_p) else 1.0)
        c = o * float(np.exp(rng.normal(0.0, vol)))
        h = max(o, c) * (1 + abs(rng.normal(0.0, vol / 4)))
        lo = min(o, c) * (1 - abs(rng.normal(0.0, vol / 4)))
        if rng.random() < wick_p:
            h *= 1 + rng.uniform(0.0, 0.3)
        if rng.random() < wick_p:
            lo *= 1 - rng.uniform(0.0, 0.3)
        bars[k] = (o, h, lo, c)
        prev = c
    return minute_frame([bars[k][3] for k in range(num_bars)], bars=bars, drop=drop)


def make_ohlcv(n: int = 120, start: str = "2024-01-01", freq: str = "1min", seed: int = 0) -> pd.DataFrame:
    """A valid random-walk OHLCV frame with a ``timestamp`` column: ``[n, 6]``."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 1e-3, n)))
    open_ = np.concatenate([[100.0], close[:-1]])[:n]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 1e-3, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 1e-3, n))
    vol = rng.uniform(1, 10, n)
    ts = pd.date_range(start, periods=n, freq=freq)
    return pd.DataFrame({"timestamp": ts, "open": open_, "high": high, "low": low, "close": close, "volume": vol})


def make(frame, **overrides):
    """`(env, params)` for a frame with the §9 defaults (1Min, window 2, fixed start, cash 1000)."""
    reward_fn = overrides.pop("reward_fn", None)
    cfg = tj.EnvConfig(**{**BASE, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gap / zero-step warnings are expected in some scenarios
        return tj.make(frame, cfg, reward_fn=reward_fn)


def params_for(env: tj.TradingEnv, **overrides) -> tj.EnvParams:
    """Fresh default params of `env`'s config with some config fields replaced (host side, no compile).

    The returned params have exactly the dtypes `make` gives, so they reuse `env`'s compiled functions as
    long as the replaced fields keep the static signature (e.g. leverage, fee, levels of the same count).
    """
    cfg = env.config.replace(**overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tj.TradingEnv(env.market, cfg, env.reward_fn).default_params


def signature(env: tj.TradingEnv) -> tuple:
    cfg = env.config
    return (
        cfg.sltp, cfg.trade_mode, cfg.random_start, isinstance(cfg.initial_cash, tuple), env.reward_fn,
        env.window_sizes, env.feature_sizes, bool(jax.config.jax_enable_x64),
    )


def scan_transitions(env, state, actions, slips, params):
    """`env.transition` over `actions[n]` with slippage `slips[n]`: `(final_state, rows of [n] arrays)`."""

    def one(state, xs):
        action, u = xs
        was_exhausted = state.exhausted
        new, reward, terminated, truncated, kind = env.transition(state, action, u, params)
        row = dict(
            reward=reward, terminated=terminated, truncated=truncated, kind=kind, exhausted=was_exhausted,
            pv=env.portfolio_value(new, params), balance=new.balance, position=new.position, entry=new.entry,
            hold=new.hold, bar=new.bar, stop_loss=new.stop_loss, take_profit=new.take_profit,
            peak_pv=new.peak_pv, obs=env.get_obs(new, params),
        )
        return new, row

    return jax.lax.scan(one, state, (actions, slips))


_RUNNERS: dict[tuple, object] = {}


def runner(env: tj.TradingEnv):
    """The jitted `(state, actions[n], slips[n], params) -> (final_state, rows)` for env's signature."""
    sig = signature(env)
    if sig not in _RUNNERS:
        _RUNNERS[sig] = jax.jit(functools.partial(scan_transitions, env))
    return _RUNNERS[sig]


def initial_state(env, params, *, start=None, cash=None, key=None):
    """A reset state (spec §2.3), optionally forced to a start bar and a cash amount."""
    state = env.reset_state(jax.random.PRNGKey(0) if key is None else key, params)
    if start is not None:
        m = int(params.max_traj_length)
        end = min(start + m, env.num_bars) if m > 0 else env.num_bars
        state = state.replace(bar=jnp.int32(start), start=jnp.int32(start), end=jnp.int32(end))
    if cash is not None:
        c = jnp.asarray(cash, state.balance.dtype)
        state = state.replace(balance=c, initial_pv=c, peak_pv=c)
    return state


def run_script(env, params, actions, slips=None, *, state=None):
    """Step `actions` (indices) with injected slippage multipliers (default 1.0), no auto-reset.

    Returns `(reset, rows)`: `reset` describes the initial state; `rows[name]` is a `[n]` NumPy array
    (`obs` is `[n, obs_dim]`), row t = the result of step t + 1.
    """
    state = initial_state(env, params) if state is None else state
    n = len(actions)
    padded = -(-n // 16) * 16  # scripts of any length up to 16 share one compile (steps after n are dropped)
    actions = np.pad(np.asarray(actions, np.int32), (0, padded - n))
    slips = np.ones(n, np.float32) if slips is None else np.asarray(slips, np.float32)
    slips = np.pad(slips, (0, padded - n), constant_values=1.0)
    _, rows = runner(env)(state, jnp.asarray(actions), jnp.asarray(slips), params)
    rows = jax.tree.map(lambda x: np.asarray(x)[:n], rows)
    reset = dict(
        pv=float(env.portfolio_value(state, params)), balance=float(state.balance),
        obs=np.asarray(env.get_obs(state, params)), bar=int(state.bar),
    )
    return reset, rows


def close_enough(got, want, rel=1e-12) -> bool:
    """`got` within `rel` of `want`, relative to max(|want|, the default cash 1000)."""
    return abs(float(got) - want) <= rel * max(abs(want), BASE["initial_cash"])


def level_index(env, level: float) -> int:
    return env.config.action_levels.index(float(level))


def kinds(rows) -> list[str]:
    return [ActionKind(int(k)).label for k in rows["kind"]]


def account(rows):
    """`[n, 6]` account_state (the last 6 observation entries)."""
    return rows["obs"][:, -6:]


_KEYED: dict[tuple, object] = {}


def keyed_step(env: tj.TradingEnv):
    """jit(vmap(env.step_env)) over `(keys[n], states[n], actions[n])` with shared params: the env's own
    slippage draws, no auto-reset. One compile per static signature."""
    sig = signature(env)
    if sig not in _KEYED:
        _KEYED[sig] = jax.jit(jax.vmap(env.step_env, in_axes=(0, 0, 0, None)))
    return _KEYED[sig]


def broadcast_state(state, n: int):
    """`n` copies of one lane's state, `[n]` leaves."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *jnp.shape(x))), state)
