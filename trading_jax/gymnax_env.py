"""`GymnaxEnv`: a `TradingEnv` with gymnax 1.x's six-value `step`, for gymnax's own wrappers.

`TradingEnv.step` returns `(obs, state, reward, done, info)`, the signature of gymnax before 1.0 and of
PureJaxRL's wrappers, which the trainer, `rollout` and the benchmarks use. gymnax 1.x's `Environment.step`
(and so its `LogWrapper`, `FlattenObservationWrapper`, ...) returns `(obs, state, reward, terminated,
truncated, info)`. `GymnaxEnv(env)` is that interface over the same compiled step: nothing is recomputed,
`terminated` and `truncated` are the step's own flags (also in `info`), and it auto-resets as `env.step` does
(`info["final_observation"]` holds the episode's last observation)::

    from gymnax.wrappers.purerl import FlattenObservationWrapper, LogWrapper
    env = LogWrapper(FlattenObservationWrapper(tj.GymnaxEnv(trading_env)))
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    obs, state, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(...)
"""

from __future__ import annotations

import jax

from trading_jax.env import TradingEnv
from trading_jax.types import EnvParams, EnvState


class GymnaxEnv:
    """gymnax 1.x's `Environment` interface over a `TradingEnv` (module docstring)."""

    def __init__(self, env: TradingEnv):
        if not isinstance(env, TradingEnv):
            raise ValueError(f"GymnaxEnv wraps a trading_jax.TradingEnv, got {type(env).__name__}")
        self.env = env

    @property
    def name(self) -> str:
        return self.env.name

    @property
    def num_actions(self) -> int:
        return self.env.num_actions

    @property
    def default_params(self) -> EnvParams:
        return self.env.default_params

    def action_space(self, params: EnvParams | None = None):
        return self.env.action_space(params)

    def observation_space(self, params: EnvParams | None = None):
        return self.env.observation_space(params)

    def reset(self, key: jax.Array, params: EnvParams | None = None) -> tuple[jax.Array, EnvState]:
        return self.env.reset(key, params)

    def step(self, key: jax.Array, state: EnvState, action, params: EnvParams | None = None):
        """`(obs, state, reward, terminated, truncated, info)`, auto-resetting as `TradingEnv.step`."""
        obs, state, reward, _, info = self.env.step(key, state, action, params)
        return obs, state, reward, info["terminated"], info["truncated"], info
