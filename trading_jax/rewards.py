"""Batched reward functions `fn(old_pv, new_pv)` or `fn(old_pv, new_pv, state)` (docs/semantics.md §3.12).

A reward function maps arrays of any shape (one lane, or `[num_envs]`) to an array of the same shape. The
optional third argument is the post-step `EnvState` (e.g. `state.peak_pv`, `state.initial_pv`,
`state.position`), so path-dependent rewards such as a drawdown penalty need no extra bookkeeping.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp

BANKRUPT_REWARD = -10.0


def log_return_reward(old_pv, new_pv):
    """The reference default: `ln(new / old)`, `-10` when the new value is not positive.

    The reference raises on a non-positive previous value; inside `jit` we cannot. Since a lane terminates on
    `PV <= 0` (differs from TorchTrade: Q2), that only happens when a terminated lane is stepped on without a
    reset, so the reward there is 0.
    """
    safe_old = jnp.where(old_pv > 0, old_pv, 1.0)
    safe_new = jnp.where(new_pv > 0, new_pv, 1.0)
    r = jnp.log(safe_new / safe_old)
    r = jnp.where(new_pv <= 0, BANKRUPT_REWARD, r)
    return jnp.where(old_pv <= 0, 0.0, r)


def drawdown_penalty_reward(old_pv, new_pv, state, *, threshold=0.1, penalty=5.0):
    """Log return minus `penalty * dd` when the drawdown `dd` from the episode's peak exceeds `threshold`
    (the reference's `drawdown_penalty_reward`, batched)."""
    peak = jnp.maximum(state.peak_pv, new_pv)
    dd = jnp.where(peak > 0, (peak - new_pv) / jnp.where(peak > 0, peak, 1.0), 0.0)
    return log_return_reward(old_pv, new_pv) - jnp.where(dd > threshold, penalty * dd, 0.0)


def reward_arity(fn) -> int:
    """Validate a reward function on the host (Q31) and return how many arguments it takes (2 or 3)."""
    if not callable(fn):
        raise ValueError(f"reward_fn must be callable fn(old_pv, new_pv[, state]), got {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 2
    params = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
        return 3
    if len(params) not in (2, 3):
        raise ValueError(
            f"reward_fn {getattr(fn, '__name__', fn)!r} must take (old_pv, new_pv) or (old_pv, new_pv, state) "
            f"as required positional arguments; it takes {len(params)}: {[p.name for p in params]}"
        )
    return len(params)
