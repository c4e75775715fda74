"""Generated prices with a learnable pattern (a noisy sine) and reference policies, for the trainer tests."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd


def sine_frame(
    n_bars: int = 2000,
    period: int = 24,
    amplitude: float = 0.01,
    noise: float = 0.0005,
    seed: int = 0,
    start: str = "2024-01-01",
    freq: str = "1h",
) -> pd.DataFrame:
    """Hourly OHLCV bars whose log close is `log(100) + amplitude * sin(2 pi t / period) + noise * eps_t`."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_bars)
    close = 100.0 * np.exp(amplitude * np.sin(2 * np.pi * t / period) + noise * rng.standard_normal(n_bars))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = 1 + 0.0005 * rng.random((2, n_bars))
    frame = pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * wick[0],
            "low": np.minimum(open_, close) / wick[1],
            "close": close,
            "volume": 10 + rng.random(n_bars),
        },
        index=pd.date_range(start, periods=n_bars, freq=freq, name="timestamp"),
    )
    return frame


def oracle_actions(market, period: int, n_actions: int = 3) -> np.ndarray:
    """Per execution bar i: long (last level) if the noiseless sine rises from bar i to i+1, else short (0).

    Bars are indexed by the market's execution timeline; the sine phase comes from each bar's timestamp.
    """
    hours = (market.exec_times - pd.Timestamp("2024-01-01")) / pd.Timedelta(hours=1)
    t = np.asarray(hours, np.float64)
    rising = np.sin(2 * np.pi * (t + 1) / period) > np.sin(2 * np.pi * t / period)
    return np.where(rising, n_actions - 1, 0).astype(np.int32)


def episode_log_return(bundle, actions_fn, key) -> float:
    """Sum of rewards of one deterministic-start episode on an eval bundle, `actions_fn(key, state) -> a`."""
    env, params = bundle.env, bundle.params

    @jax.jit
    def run(key):
        k0, k1 = jax.random.split(key)
        obs, state = env.reset(k0, params)

        def step(carry, k):
            state, alive = carry
            ka, ks = jax.random.split(k)
            a = actions_fn(ka, state)
            _, state, r, done, _ = env.step_env(ks, state, a, params)
            return (state, alive & ~done), jnp.where(alive, r, 0.0)

        _, rewards = jax.lax.scan(step, (state, jnp.ones((), bool)), jax.random.split(k1, bundle.num_steps))
        return jnp.sum(rewards)

    return float(run(key))


def scaled_ohlcv(bars):
    """A feature function of the kind users write (`build_setup(features=...)`), importable by name: open,
    high, low and close over the first close, volume over its mean; 5 features, as the default z-score."""
    out = bars.reset_index()
    first_close = out["close"].iloc[0]
    for col in ("open", "high", "low", "close"):
        out[f"features_{col}"] = out[col] / first_close
    out["features_volume"] = out["volume"] / max(float(out["volume"].mean()), 1e-12)
    return out


def random_walk_frame(segments: int, bars_per_segment: int, vol: float = 0.004, warmup: int = 96) -> pd.DataFrame:
    """Hourly OHLCV bars of a driftless random walk: `warmup` bars, then `segments` stretches of log increments
    `N(0, vol^2)`, each from its own seeded generator (`default_rng(1000 + k)`): seeded markets glued end to end."""
    parts = [np.random.default_rng(999).normal(0, vol, warmup)]
    parts += [np.random.default_rng(1000 + k).normal(0, vol, bars_per_segment) for k in range(segments)]
    close = 100.0 * np.exp(np.cumsum(np.concatenate(parts)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    wick = 1 + 0.001 * np.random.default_rng(7).random((2, len(close)))
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * wick[0],
            "low": np.minimum(open_, close) / wick[1],
            "close": close,
            "volume": 10.0 + wick[0],
        },
        index=pd.date_range("2024-01-01", periods=len(close), freq="1h", name="timestamp"),
    )
