"""trading_jax: a JAX-native trading environment with TorchTrade-equivalent semantics.

Section numbers (§n) and the numbered differences from TorchTrade (Qn) cited in this package refer to
docs/semantics.md.
"""

from trading_jax.config import EnvConfig
from trading_jax.env import TradingEnv, make
from trading_jax.gymnax_env import GymnaxEnv
from trading_jax.market import Market, MarketData, build_market, load_ohlcv
from trading_jax.metrics import buy_and_hold, episode_metrics
from trading_jax.plotting import render_history
from trading_jax.rollout import lane_history, random_policy, rollout
from trading_jax.types import ActionKind, EnvParams, EnvState

__all__ = [
    "ActionKind",
    "EnvConfig",
    "EnvParams",
    "EnvState",
    "GymnaxEnv",
    "Market",
    "MarketData",
    "TradingEnv",
    "build_market",
    "buy_and_hold",
    "episode_metrics",
    "lane_history",
    "load_ohlcv",
    "make",
    "random_policy",
    "render_history",
    "rollout",
]
