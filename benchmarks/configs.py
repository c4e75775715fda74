"""The benchmark env configs (a), (b), (c) and how to build them (one market per config, cached).

(a) the reference example: bundled BTC/USDT sample, 1Hour frame, window 24, executed hourly, L=3,
    levels (-1, 0, 1), fee 0.001, slippage 0.01, cash 1000, random start, no length limit.
(b) heavier observations: 1Min + 5Min + 15Min frames, window 32 each, executed every minute.
(c) bracket mode (sltp=True, default stop/take levels) on config (a)'s market.

Features are the raw OHLCV columns (the reference's default), so building a market takes well under a second.
"""

from __future__ import annotations

import functools

MONEY = dict(
    leverage=3, action_levels=(-1, 0, 1), transaction_fee=0.001, slippage=0.01, initial_cash=1000,
    random_start=True, max_traj_length=None,
)
MARKETS = {
    "a": (("1Hour",), (24,), "1Hour"),
    "b": (("1Min", "5Min", "15Min"), (32, 32, 32), "1Min"),
    "c": (("1Hour",), (24,), "1Hour"),
}
CONFIGS = {
    "a": ("reference: 1Hour w24, L3, levels -1/0/1", dict(MONEY)),
    "b": ("heavy obs: 1Min+5Min+15Min w32, exec 1Min", dict(MONEY)),
    "c": ("brackets: 1Hour w24, L3, sltp (3 SL x 3 TP)", dict(MONEY, sltp=True)),
}


def describe(name: str) -> str:
    return CONFIGS[_check(name)][0]


def _check(name: str) -> str:
    if name not in CONFIGS:
        raise ValueError(f"unknown benchmark config {name!r}: choose from {', '.join(CONFIGS)}")
    return name


@functools.cache
def market(name: str):
    """The `trading_jax.Market` of a config (built once per process)."""
    import trading_jax as tj
    from trading_jax.datasets import btcusdt_1m_sample

    time_frames, windows, execute_on = MARKETS[_check(name)]
    return tj.build_market(btcusdt_1m_sample(), time_frames, windows, execute_on)


def env_config(name: str):
    import trading_jax as tj

    time_frames, windows, execute_on = MARKETS[_check(name)]
    return tj.EnvConfig(time_frames=time_frames, window_sizes=windows, execute_on=execute_on, **CONFIGS[name][1])


def build_env(name: str):
    """`(env, params)` of a config. Call it inside `jax.enable_x64(True)` for float64 money."""
    import trading_jax as tj

    return tj.make(market(name), env_config(name))
