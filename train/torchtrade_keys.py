"""Override keys of TorchTrade's PPO example that differ from ours, accepted as aliases."""

from __future__ import annotations

import sys

# The TorchTrade PPO example's key names that differ from ours (README "Coming from TorchTrade").
TORCHTRADE_KEYS = {"env.train_envs": "env.num_envs", "env.seed": "seed", "logger.test_interval": "eval.test_interval"}


def torchtrade_alias(item: str) -> str:
    """`env.train_envs=128` → `env.num_envs=128`, with a one-line note on stderr."""
    key, sep, value = item.partition("=")
    ours = TORCHTRADE_KEYS.get(key.lstrip("+"))
    if ours is None:
        return item
    print(f"note: {key} is TorchTrade's name for {ours}; using {ours}={value}", file=sys.stderr)
    return f"{ours}{sep}{value}"
