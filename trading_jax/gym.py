"""Gymnasium adapters: `GymnasiumEnv` (one env, for Stable-Baselines3, CleanRL, ...) and `GymnasiumVectorEnv`
(a `gymnasium.vector.VectorEnv` backed by one jitted, vmapped step).

Both build `(env, params)` with `trading_jax.make(data, config, **make_kwargs)` and return NumPy arrays:
observations `float32[obs_dim]` (a `Box` of every finite float32: raw prices are unbounded), `Discrete(num_actions)`
actions,
and `info` with the account fields of `TradingEnv.step` (portfolio value, balance, position, entry, price,
bar, step, action_kind). An action outside the action space raises `ValueError` here (the JAX env itself
clips indices, docs/semantics.md §3.3).

Seeds. `reset(seed=s)` sets the JAX key to `jax.random.PRNGKey(s)`; `reset()` without a seed continues from
the current key (or, on the very first reset, from a key drawn from OS entropy through `np_random`). Each
reset and step then splits the key: `key, k = jax.random.split(key)`, and the vector env steps lane `i` with
`jax.random.split(k, num_envs)[i]`. So the same seed and actions give the same episodes.

Auto-reset. `GymnasiumEnv` does not auto-reset (call `reset()` after `terminated or truncated`, as
Gymnasium expects). `GymnasiumVectorEnv` auto-resets in the SAME step, like the JAX env:
`metadata["autoreset_mode"] = AutoresetMode.SAME_STEP`. On a lane that ends, the returned observation is the
first of its next episode, `infos["final_obs"][i]` is the episode's last observation and
`infos["final_info"]` holds that step's info (masks `_final_obs`, `_final_info`); the reward, `terminated`,
`truncated` and the account fields of `infos` are the ending step's own. `reset` always resets every lane
(its `options` are accepted and ignored).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

try:
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode
    from gymnasium.vector.utils import batch_space
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'trading_jax.gym needs gymnasium >= 1.1: pip install "trading_jax[gym]" '
        f"(importing it failed: {err})"
    ) from err

from trading_jax.env import make

__all__ = ["GymnasiumEnv", "GymnasiumVectorEnv"]


def _spaces(env) -> tuple[gym.spaces.Box, gym.spaces.Discrete]:
    big = float(np.finfo(np.float32).max)  # any finite float32: raw prices and features are unbounded
    return gym.spaces.Box(-big, big, env.observation_shape, np.float32), gym.spaces.Discrete(env.num_actions)


def _first_key(seed, np_random: np.random.Generator) -> jax.Array:
    """The JAX key of a reset: `PRNGKey(seed)`, or one drawn from `np_random` (module docstring)."""
    return jax.random.PRNGKey(int(np_random.integers(2**31)) if seed is None else int(seed))


def _check_actions(actions: np.ndarray, n: int) -> np.ndarray:
    if not np.issubdtype(actions.dtype, np.integer) or (actions.size and (actions.min() < 0 or actions.max() >= n)):
        raise ValueError(f"actions must be integers in [0, {n - 1}] (the action space), got {actions.tolist()}")
    return actions.astype(np.int32)


# The info fields travel to the host packed in two arrays (one transfer each, not one per field).
FLOAT_FIELDS = ("reward", "portfolio_value", "balance", "position_size", "entry_price", "price")
INT_FIELDS = ("bar", "step", "action_kind", "terminated", "truncated")


def _pack(reward, info: dict) -> tuple[jax.Array, jax.Array]:
    """`(floats[..., 6], ints[..., 5])` from a step's reward and info (reset rows: reward 0, kind hold)."""
    zero = jnp.zeros_like(info["bar"])
    floats = [reward] + [info[k] for k in FLOAT_FIELDS[1:]]
    ints = [info.get(k, zero) for k in INT_FIELDS]
    dtype = jnp.result_type(*floats)
    return jnp.stack([f.astype(dtype) for f in floats], -1), jnp.stack([i.astype(jnp.int32) for i in ints], -1)


def _unpack(floats: np.ndarray, ints: np.ndarray, scalar: bool) -> dict:
    """Host side: `{field: value}`, Python scalars (one lane) or `[num_envs]` arrays; flags as bools."""
    out = {k: floats[..., i] for i, k in enumerate(FLOAT_FIELDS)}
    out.update({k: ints[..., i] for i, k in enumerate(INT_FIELDS)})
    out["reward"] = out["reward"].astype(np.float32)
    out["terminated"], out["truncated"] = out["terminated"].astype(bool), out["truncated"].astype(bool)
    return {k: v.item() for k, v in out.items()} if scalar else out


class GymnasiumEnv(gym.Env):
    """One trading env as a `gymnasium.Env` (no auto-reset). See the module docstring."""

    metadata = {"render_modes": []}

    def __init__(self, data, config=None, **make_kwargs):
        self.env, self.params = make(data, config, **make_kwargs)
        self.observation_space, self.action_space = _spaces(self.env)
        env = self.env

        def reset(key, params):
            key, k = jax.random.split(key)
            obs, state = env.reset(k, params)
            return key, obs, state, _pack(jnp.zeros((), jnp.float32), env.describe(state, params))

        def step(key, state, action, params):
            key, k = jax.random.split(key)
            obs, state, reward, _, info = env.step_env(k, state, action, params)
            return key, obs, state, _pack(reward, info)

        self._reset, self._step = jax.jit(reset), jax.jit(step)
        self._key = self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = _first_key(seed, self.np_random)
        self._key, obs, self._state, packed = self._reset(self._key, self.params)
        obs, packed = jax.device_get((obs, packed))
        info = _unpack(*packed, scalar=True)
        for key in ("reward", "action_kind", "terminated", "truncated"):
            del info[key]
        return np.array(obs), info

    def step(self, action):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        action = _check_actions(np.asarray(action).reshape(-1), self.env.num_actions)
        if action.size != 1:
            raise ValueError(f"GymnasiumEnv.step takes one action, got {action.size}")
        self._key, obs, self._state, packed = self._step(self._key, self._state, action[0], self.params)
        obs, packed = jax.device_get((obs, packed))
        info = _unpack(*packed, scalar=True)
        reward, terminated, truncated = info.pop("reward"), info.pop("terminated"), info.pop("truncated")
        return np.array(obs), float(reward), terminated, truncated, info


class GymnasiumVectorEnv(gym.vector.VectorEnv):
    """`num_envs` auto-resetting lanes of one trading env as a `gymnasium.vector.VectorEnv` (same-step
    auto-reset). See the module docstring."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, data, config=None, num_envs: int = 8, **make_kwargs):
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.env, self.params = make(data, config, **make_kwargs)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = _spaces(self.env)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._reset = jax.jit(functools.partial(_vector_reset, self.env, num_envs))
        self._step = jax.jit(functools.partial(_vector_step, self.env, num_envs))
        self._key = self._state = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._key is None:
            self._key = _first_key(seed, self.np_random)
        self._key, obs, self._state = self._reset(self._key, self.params)
        return np.array(obs), {}

    def step(self, actions):
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.num_envs,):
            raise ValueError(f"actions must have shape ({self.num_envs},), got {actions.shape}")
        actions = _check_actions(actions, self.env.num_actions)
        self._key, obs, self._state, packed, final_obs = self._step(self._key, self._state, actions, self.params)
        obs, packed = jax.device_get((obs, packed))
        info = _unpack(*packed, scalar=False)
        reward, terminated, truncated = info.pop("reward"), info.pop("terminated"), info.pop("truncated")
        done = terminated | truncated
        infos = _with_masks(info, np.ones(self.num_envs, bool))
        if done.any():
            last = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done):
                last[i] = np.asarray(final_obs[i])
            infos.update(final_obs=last, _final_obs=done, final_info=_with_masks(info, done), _final_info=done)
        return np.array(obs), reward, terminated, truncated, infos


def _with_masks(info: dict, mask: np.ndarray) -> dict:
    """Gymnasium's vector info layout: every key paired with a boolean mask `_key` of the lanes that have it."""
    out = {}
    for key, value in info.items():
        out[key], out[f"_{key}"] = value, mask
    return out


def _vector_reset(env, num_envs, key, params):
    key, k = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k, num_envs), params)
    return key, obs, state


def _vector_step(env, num_envs, key, state, actions, params):
    key, k = jax.random.split(key)
    obs, state, reward, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        jax.random.split(k, num_envs), state, actions, params
    )
    return key, obs, state, _pack(reward, info), info["final_observation"]
