"""The compiled program every env benchmark measures: reset, then a loop of vmapped `env.step` with random actions.

`env_throughput` times it, `memory` reads its buffer sizes, `profile_step` lists its kernels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec


def make_program(env, num_envs: int, chunk: int, consume_obs: bool = True, devices: int = 1):
    """`run(params, key, num_chunks) -> {reward_sum, obs_sum, episodes}`, jitted.

    Runs `num_chunks * chunk` auto-resetting steps of `num_envs` lanes with uniform random actions.
    `obs_sum` is the sum of the last observations (the reset ones with `consume_obs=False`).
    """
    vreset = jax.vmap(env.reset, in_axes=(0, None))
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    num_actions = int(env.num_actions)

    def run(params, key, num_chunks):
        def one_step(carry, xs):
            state, obs, rewards, episodes = carry
            step_keys, action = xs
            next_obs, state, reward, done, _ = vstep(step_keys, state, action, params)
            # The observation is carried to the next step, as a policy would read it, so XLA has to build
            # it every step; with consume_obs=False the old one is kept and the gather is dead code.
            obs = next_obs if consume_obs else obs
            return (state, obs, rewards + reward, episodes + done), None

        def one_chunk(i, carry):
            # The chunk's randomness in two batched threefry draws. On CPU each jax.random call is a rolled
            # loop, and splitting a key per lane per step would cost about as much as the env step itself:
            # a step's lane keys are the chunk's lane keys with the step index folded in by XOR (the env
            # hashes a key's bits into its draws, so any distinct keys give independent draws).
            k_env, k_act = jax.random.split(jax.random.fold_in(key, i))
            lane_keys = jax.random.bits(k_env, (num_envs, 2), jnp.uint32)
            step_index = jnp.stack([jnp.arange(chunk, dtype=jnp.uint32), jnp.zeros(chunk, jnp.uint32)], -1)
            step_keys = lane_keys[None] ^ step_index[:, None]  # [chunk, num_envs, 2]
            actions = jax.random.randint(k_act, (chunk, num_envs), 0, num_actions, dtype=jnp.int32)
            return jax.lax.scan(one_step, carry, (step_keys, actions))[0]

        k_reset, key = jax.random.split(key)
        obs, state = vreset(jax.random.split(k_reset, num_envs), params)
        per_lane = jnp.zeros((num_envs,), jnp.float32), jnp.zeros((num_envs,), jnp.int32)
        _, obs, rewards, episodes = jax.lax.fori_loop(0, num_chunks, one_chunk, (state, obs, *per_lane))
        return {"reward_sum": jnp.sum(rewards), "obs_sum": jnp.sum(obs), "episodes": jnp.sum(episodes)}

    if devices == 1:
        return jax.jit(run)
    return jax.jit(_over_devices(run, devices))


def _over_devices(run, devices: int):
    """`run` with its lanes split over the first `devices` local devices (on CPU: host devices, one per core,
    made with `--xla_force_host_platform_device_count`); each device steps `num_envs / devices` lanes."""
    mesh = Mesh(np.array(jax.devices()[:devices]), ("envs",))
    per_device = lambda p, k, c: jax.tree.map(lambda x: x[None], run(p, k[0], c))
    sharded = jax.shard_map(per_device, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec("envs"), PartitionSpec()),
                            out_specs=PartitionSpec("envs"), check_vma=False)

    def run_all(params, key, num_chunks):
        out = sharded(params, jax.random.split(key, devices), num_chunks)
        return jax.tree.map(lambda x: jnp.sum(x, axis=0), out)

    return run_all
