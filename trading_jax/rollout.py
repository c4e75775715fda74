"""`rollout`: many lanes for many steps as one `lax.scan`, with no host sync inside."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from trading_jax.env import ActionKind


def random_policy(num_actions: int):
    """`policy_fn(key, obs[num_envs, obs_dim]) -> actions[num_envs]`, uniform over actions."""

    def policy(key, obs):
        return jax.random.randint(key, obs.shape[:1], 0, num_actions, dtype=jnp.int32)

    return policy


def reset_row(env, state, params) -> dict[str, jax.Array]:
    """Row 0 of a history, for one lane just reset: the account fields of `env.describe(state)` and no step
    taken (reward 0, not done, not terminated, not truncated, action -1, kind hold)."""
    row = env.describe(state, params)
    false = jnp.zeros((), bool)
    row.update(
        reward=jnp.zeros((), jnp.float32), done=false, terminated=false, truncated=false,
        action=jnp.full((), -1, jnp.int32), action_kind=jnp.full((), ActionKind.HOLD, jnp.int32),
    )
    return row


@functools.partial(
    jax.jit, static_argnames=("env", "policy_fn", "num_envs", "num_steps", "return_obs")
)
def rollout(key, env, params, policy_fn, num_envs: int, num_steps: int, return_obs: bool = False):
    """Run `num_envs` auto-resetting lanes for `num_steps` steps.

    `policy_fn(key, obs[num_envs, obs_dim]) -> actions int32[num_envs]`. Returns `(final_state, traj)`:
    `traj` maps each field to a `[num_steps + 1, num_envs]` array whose row 0 is the reset row (reward 0,
    action -1, kind hold) and row t the result of step t: `reward, done, terminated, truncated, action,
    action_kind, portfolio_value, balance, position_size, entry_price, price, bar, step` (and `obs`
    `[num_steps + 1, num_envs, obs_dim]` when `return_obs`: the observation the policy saw, then the last).
    Account fields of a `done` row describe the episode's last bar, before the auto-reset.
    """
    key_reset, key_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key_reset, num_envs), params)
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def _env_step(carry, step_key):
        obs, state = carry
        k_policy, k_env = jax.random.split(step_key)
        action = policy_fn(k_policy, obs).astype(jnp.int32)
        next_obs, state, reward, done, info = vstep(jax.random.split(k_env, num_envs), state, action, params)
        del info["final_observation"]
        row = dict(info, reward=reward, done=done, action=action)
        if return_obs:
            row["obs"] = next_obs
        return (next_obs, state), row

    (_, state_out), traj = jax.lax.scan(_env_step, (obs, state), jax.random.split(key_run, num_steps))
    first = jax.vmap(functools.partial(reset_row, env), in_axes=(0, None))(state, params)
    if return_obs:
        first["obs"] = obs
    traj = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, traj)
    return state_out, traj


def lane_history(traj, lane: int = 0, times=None) -> dict[str, np.ndarray]:
    """One lane's first episode from a `rollout` trajectory, reset row included, as NumPy arrays.

    `times`: the execution bars' timestamps (`env.market.exec_times`); given, the history gains `time`, each
    row's bar time, which `render_history` puts on its x axis.
    """
    done = np.asarray(traj["done"][:, lane])
    ends = np.flatnonzero(done[1:])
    stop = (ends[0] + 2) if len(ends) else len(done)
    history = {k: np.asarray(v[:stop, lane]) for k, v in traj.items() if k != "obs"}
    if times is not None:
        history["time"] = np.asarray(times, "datetime64[ns]")[history["bar"]]
    return history
