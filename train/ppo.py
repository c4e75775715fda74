"""PPO on the trading env, PureJaxRL style: one training iteration is one jitted XLA program.

    python -m train.ppo [CONFIG.yaml] [group.key=value ...]        # see train/config.py for every key
    python -m train.ppo --help                                     # list the keys and defaults

`make_train(cfg, env)` returns pure jitted functions over `num_seeds` agents (one agent: no seed axis inside
the program; several on one CPU device: one after another, `lax.map`; with a mesh or an accelerator: vmapped):

* `init(env_params, keys[K]) -> RunnerState`
* `iteration(env_params, runner) -> (runner, metrics)`: collect `frames_per_batch // num_envs` steps of
  `num_envs` auto-resetting lanes with `lax.scan` over the vmapped `env.step`; then `ppo_epochs` x
  (values + GAE over time, a shuffled permutation split into minibatches, `lax.scan` of Adam updates).
  BatchNorm pass structure (docs/semantics.md §6.4): V(s) and V(s') in two forwards as the reference
  (`loss.gae_passes`); the loss runs the trunk once, or once for the actor and once for the critic as the reference
  (`loss.trunk_passes=2`, 1.4-1.5x the iteration time on CPU).
  The reference's semantics (docs/semantics.md §6.4) with its bugs fixed: correct GAE (Q3), truncation bootstraps from
  `info["final_observation"]`, LR and clip-ε really anneal (Q4), `train/reward` covers every episode that
  ended (Q5), honest wall-time SPS (Q6).
* `collect(env_params, runner) -> (runner, traj)`: the collection part alone, only used to time it.

The host loop (`train.loop.train`) calls `iteration` once per batch, fetches its metrics (the only host
sync), evaluates the deterministic policy every `eval.test_interval` frames, writes checkpoints, logs and
draws a tqdm bar; `train.cli` parses the command line and prints the summary table.

Scale-out (train/parallel.py, train/SCALING.md): `parallel.devices=all|N` jits the same global-batch
program over a device mesh (env lanes, or seeds when `num_seeds` is a multiple of the device count, split
over the devices; params and optimiser state replicated; XLA all-reduces gradients and BatchNorm moments);
`parallel.distributed=true` runs one process per host with `jax.distributed`, process 0 doing the I/O.
"""

from __future__ import annotations

import functools
import importlib
import sys

if __name__ == "__main__":  # `python -m train.ppo`: the CLI prints its header before jax and the trainer load
    from train.cli import main

    sys.exit(main())
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from train import parallel
from train.config import ConfigError, num_iterations, num_minibatches, steps_per_iteration
from train.hyper import (  # noqa: F401 (make_optimizer, make_schedules, clip_by_global_norm_torch: public here too)
    Hyper,
    agent_hyper,
    clip_by_global_norm_torch,
    make_optimizer,
    make_schedules,
)
from train.losses import compute_gae, explained_variance, minibatch_loss, minibatch_loss_kwargs
from train.networks import apply_mode, apply_values, init_variables, make_network, policy
from train.parallel import seeds_sharded


# --------------------------------------------------------------------------------------- state
class Transition(NamedTuple):
    obs: jax.Array  # [N, obs_dim] float32, the observation the policy acted on
    next_obs: jax.Array  # [N, obs_dim] float32, the TRUE next observation (info["final_observation"])
    action: jax.Array  # [N] int32
    log_prob: jax.Array  # [N] float32, behaviour policy log-probability
    reward: jax.Array  # [N] float32
    done: jax.Array  # [N] bool, terminated | truncated
    terminated: jax.Array  # [N] bool


class EpisodeStep(NamedTuple):
    done: jax.Array  # [N] bool
    episode_return: jax.Array  # [N] float32, sum of rewards so far (valid where done)
    episode_length: jax.Array  # [N] int32


class TrainState(NamedTuple):
    params: Any
    batch_stats: Any
    opt_state: Any
    update_step: jax.Array  # int32, minibatch updates done (drives LR and clip annealing)


class RunnerState(NamedTuple):
    train: TrainState
    env_state: Any  # trading_jax.EnvState, leaves [N]
    obs: jax.Array  # [N, obs_dim]
    episode_return: jax.Array  # [N] float32
    episode_length: jax.Array  # [N] int32
    key: jax.Array  # PRNG key (raw uint32[2])
    iteration: jax.Array  # int32


@dataclass
class TrainFns:
    init: Any
    iteration: Any
    collect: Any
    network: Any
    lr_schedule: Any
    clip_schedule: Any
    total_updates: int
    frames_per_iteration: int
    compiled: dict = field(default_factory=dict)  # ahead-of-time executables of `train`, by input signature
    # Set when the program is sharded over a device mesh (`make_train(..., mesh)`); see train/parallel.py.
    mesh: Any = None
    seeds_sharded: bool = False
    runner_sharding: Any = None  # RunnerState of NamedShardings (a pytree prefix of the runner)
    env_params_sharding: Any = None
    keys_sharding: Any = None

    def place_inputs(self, env_params, seed_keys):
        """`(env_params, seed_keys[K])` as `init`/`iteration` take them: global arrays on the mesh (the same
        host values on every process), unchanged without a mesh."""
        if self.mesh is None:
            return env_params, seed_keys
        return (
            parallel.put_global(env_params, self.env_params_sharding),
            parallel.put_global(seed_keys, self.keys_sharding),
        )

    def place_runner(self, runner):
        """A host (e.g. restored) runner state laid out as `init` returns it."""
        if self.mesh is None:
            return runner
        return parallel.put_global(runner, self.runner_sharding)

    def to_host(self, tree):
        """NumPy copies of (possibly sharded, possibly multi-process) state: a collective with a mesh."""
        if self.mesh is None:
            return jax.device_get(tree)
        return parallel.to_host(tree, self.mesh)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _single_seed(fn):
    """`fn(env_params, x)` over a size-1 leading seed axis, without `vmap`: the same `[1, ...]` inputs and
    outputs as the vmapped function, but the network's matmuls stay plain GEMMs (vmapped over a size-1 axis
    they become batched `dot_general`s, a slower path on XLA:CPU: 104k against 164k samples/s)."""

    def one(env_params, x):
        out = fn(env_params, jax.tree.map(lambda a: a[0], x))
        return jax.tree.map(lambda a: a[None], out)

    return one


def _seeds_in_turn(fn, per_agent_inputs: bool = False):
    """`fn(inputs, x)` over the leading seed (agent) axis of `x` (and of `inputs` when `per_agent_inputs`) with
    `lax.map`: one seed after another inside the program, each with plain GEMMs. On XLA:CPU this is faster
    than `vmap`, whose batched `dot_general`s run at about half the GEMM rate (`benchmarks.profile_iteration`'s
    network table); the numbers are those of one seed at a time."""

    def in_turn(inputs, x):
        if per_agent_inputs:
            return jax.lax.map(lambda pair: fn(*pair), (inputs, x))
        return jax.lax.map(lambda xi: fn(inputs, xi), x)

    return in_turn


# --------------------------------------------------------------------------------------- make_train
def make_train(cfg, env, mesh=None, *, per_agent: bool = False) -> TrainFns:
    """Build the jitted, seed-vmapped `init`, `iteration` and `collect` functions (see module doc).

    `per_agent=True` (train.walkforward): the seed axis is an axis of `num_seeds` agents, each with its own
    market and hyper-parameters; the functions take `inputs = (env_params, hp)` in place of `env_params`, leaves
    `[A, ...]` (one `EnvParams` of `env`'s shapes per agent; `hp`: traced values, see `train.hyper`).

    `mesh`: a 1-D `jax.sharding.Mesh` with axis "data" (`train.parallel.make_mesh`), or None for one device.
    With a mesh the same global-batch program is jitted with `NamedSharding`s (`train/parallel.py`): the env
    lanes (or, when `num_seeds` is a multiple of the device count, the seeds) are split over the devices,
    everything else is replicated, and XLA inserts the gradient and BatchNorm all-reduces. Without one the
    program is exactly the single-device one.
    """
    N = int(cfg.env.num_envs)
    T = steps_per_iteration(cfg)
    B = N * T
    obs_dim = int(env.observation_shape[0])
    epochs = int(cfg.loss.ppo_epochs)
    mb_size = int(cfg.loss.mini_batch_size)
    num_mb = num_minibatches(cfg)
    total_updates = num_iterations(cfg) * epochs * num_mb
    gamma, lam = float(cfg.loss.gamma), float(cfg.loss.gae_lambda)
    collect_train = bool(cfg.model.collect_train_mode)
    recompute = bool(cfg.loss.recompute_advantage)
    gae_passes = int(cfg.loss.gae_passes)
    loss_kw = minibatch_loss_kwargs(cfg)

    K = int(cfg.num_seeds)
    seed_mode = seeds_sharded(K, mesh)
    if mesh is not None and not seed_mode and N % mesh.size:
        raise ConfigError(
            f"env.num_envs={N} does not split over {mesh.size} devices ({parallel.describe(mesh, K)}): use a "
            f"multiple of {mesh.size}, e.g. env.num_envs={-(-N // mesh.size) * mesh.size}, or another "
            f"parallel.devices (or num_seeds a multiple of {mesh.size}, which shards the seeds instead)"
        )
    env_sharded = mesh is not None and not seed_mode

    def constrain(x, *spec):
        """Lay out a per-seed intermediate over the env/batch axis (envs-sharded mode only; a no-op else).
        Only placement: the values are those of the single-device program."""
        if not env_sharded:
            return x
        return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, parallel.sharding(mesh, *spec)), x)

    network = make_network(cfg, int(env.num_actions))
    lr_schedule, clip_schedule = make_schedules(cfg, total_updates)
    tx = make_optimizer(cfg, lr_schedule)
    default_h = Hyper(tx, lr_schedule, clip_schedule, loss_kw, gamma, lam)  # per_agent: `agent_hyper` per agent
    vreset = jax.vmap(env.reset, in_axes=(0, None))
    vstep = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def init(env_params, key) -> RunnerState:
        k_net, k_env, k_run = jax.random.split(key, 3)
        variables = init_variables(network, k_net, obs_dim)
        obs, env_state = vreset(jax.random.split(k_env, N), env_params)
        train_state = TrainState(
            variables["params"], variables["batch_stats"], tx.init(variables["params"]), jnp.int32(0)
        )
        return RunnerState(
            train_state,
            env_state,
            obs,
            jnp.zeros((N,), jnp.float32),
            jnp.zeros((N,), jnp.int32),
            k_run,
            jnp.int32(0),
        )

    # ---- collection -------------------------------------------------------------------------
    def _env_step(env_params, runner: RunnerState, _):
        ts = runner.train
        key, k_drop, k_act, k_env = jax.random.split(runner.key, 4)
        logits, _, batch_stats = apply_mode(network, ts.params, ts.batch_stats, runner.obs, k_drop, collect_train)
        pi = policy(logits)
        action = pi.sample(seed=k_act).astype(jnp.int32)
        log_prob = pi.log_prob(action)
        obs, env_state, reward, done, info = vstep(jax.random.split(k_env, N), runner.env_state, action, env_params)
        ep_return = runner.episode_return + reward
        ep_length = runner.episode_length + 1
        transition = Transition(
            runner.obs, info["final_observation"], action, log_prob, reward, done, info["terminated"]
        )
        episode = EpisodeStep(done, ep_return, ep_length)
        runner = runner._replace(
            train=ts._replace(batch_stats=batch_stats),
            env_state=env_state,
            obs=obs,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
            key=key,
        )
        return runner, (transition, episode)

    def _collect(env_params, runner: RunnerState):
        """`T` steps of `N` lanes: `(runner, traj [T, N, ...], episodes [T, N])`."""
        runner, (traj, episodes) = jax.lax.scan(lambda r, x: _env_step(env_params, r, x), runner, None, T)
        return runner, traj, episodes

    # ---- advantages -------------------------------------------------------------------------
    def _calculate_gae(ts: TrainState, traj: Transition, key, h: Hyper = default_h):
        """Values of obs and of the true next obs, then GAE over time. `loss.gae_passes=2` (default): two
        forwards, obs then next obs, each normalised with its own BatchNorm batch statistics and updating the
        running statistics in that order, as torchrl's GAE with `deactivate_vmap=True` (docs/semantics.md §6.4); 1: one
        forward over both (one set of batch statistics, one update). Eval mode: the same values either way."""
        obs, next_obs = constrain((traj.obs.reshape(B, obs_dim), traj.next_obs.reshape(B, obs_dim)), parallel.DATA_AXIS)
        v, nv, batch_stats = apply_values(
            network, ts.params, ts.batch_stats, obs, next_obs, key, collect_train, gae_passes
        )
        values, next_values = v.reshape(T, N), nv.reshape(T, N)
        adv, targets = compute_gae(traj.reward, values, next_values, traj.terminated, traj.done, h.gamma, h.gae_lambda)
        return ts._replace(batch_stats=batch_stats), adv, targets, values

    # ---- update -----------------------------------------------------------------------------
    def _update_minibatch(ts: TrainState, xs, h: Hyper = default_h):
        batch, key = xs  # batch: (obs, action, old_log_prob, advantage, target)
        clip = h.clip_schedule(ts.update_step)

        def _loss_fn(params):
            return minibatch_loss(network, params, ts.batch_stats, batch, key, clip, **h.loss_kw)

        (loss, (terms, batch_stats)), grads = jax.value_and_grad(_loss_fn, has_aux=True)(ts.params)
        updates, opt_state = h.tx.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        terms = dict(
            terms, loss=loss, lr=h.lr_schedule(ts.update_step), clip_epsilon=clip, grad_norm=optax.tree.norm(grads)
        )
        return TrainState(params, batch_stats, opt_state, ts.update_step + 1), terms

    def _update_epoch(carry, key, h: Hyper = default_h):
        ts, traj, adv, targets = carry
        k_gae, k_perm, k_mb = jax.random.split(key, 3)
        ev = jnp.float32(jnp.nan)
        if recompute:
            ts, adv, targets, values = _calculate_gae(ts, traj, k_gae, h)
            ev = explained_variance(values, targets)
        flat = (
            traj.obs.reshape(B, obs_dim),
            traj.action.reshape(B),
            traj.log_prob.reshape(B),
            adv.reshape(B),
            targets.reshape(B),
        )
        idx = jax.random.permutation(k_perm, B)[: num_mb * mb_size].reshape(num_mb, mb_size)
        minibatches = jax.tree.map(lambda x: jnp.take(x, idx, axis=0), flat)
        if mesh is not None and mb_size % mesh.size == 0:  # else XLA picks the layout
            minibatches = constrain(minibatches, None, parallel.DATA_AXIS)  # [num_mb, mb_size / D per device]
        update = functools.partial(_update_minibatch, h=h)
        ts, terms = jax.lax.scan(update, ts, (minibatches, jax.random.split(k_mb, num_mb)))
        return (ts, traj, adv, targets), (terms, ev)

    def _update(runner: RunnerState, traj: Transition, episodes: EpisodeStep, h: Hyper = default_h):
        key, k_gae, k_epochs = jax.random.split(runner.key, 3)
        ts = runner.train
        adv = targets = jnp.zeros((T, N), jnp.float32)
        ev0 = jnp.float32(jnp.nan)
        if not recompute:  # PureJaxRL style: advantages once, from the pre-update network
            ts, adv, targets, values = _calculate_gae(ts, traj, k_gae, h)
            ev0 = explained_variance(values, targets)
        epoch = functools.partial(_update_epoch, h=h)
        (ts, _, _, _), (terms, ev) = jax.lax.scan(epoch, (ts, traj, adv, targets), jax.random.split(k_epochs, epochs))
        metrics = _metrics(traj, episodes, terms, ev[0] if recompute else ev0)
        # NaN guard (train.loop stops on False): every loss term and gradient norm of every update, the new
        # params and BatchNorm statistics; and, for the hint, whether the batch itself was finite
        metrics["train/finite"] = _all_finite((terms, ts.params, ts.batch_stats))
        metrics["train/finite_data"] = _all_finite((traj.obs, traj.next_obs, traj.reward))
        runner = runner._replace(train=ts, key=key, iteration=runner.iteration + 1)
        return runner, metrics

    def _metrics(traj: Transition, episodes: EpisodeStep, terms, ev):
        done = episodes.done.astype(jnp.float32)
        n_done = jnp.sum(done)
        safe = jnp.maximum(n_done, 1.0)
        nan = jnp.float32(jnp.nan)
        actions = traj.action.astype(jnp.float32)
        mean = lambda x: jnp.mean(x)
        return {
            # differs from TorchTrade: the mean over every episode that ended in the batch, truncated too (Q5)
            "train/reward": jnp.where(n_done > 0, jnp.sum(episodes.episode_return * done) / safe, nan),
            "train/episode_length": jnp.where(n_done > 0, jnp.sum(episodes.episode_length * done) / safe, nan),
            "train/episodes": n_done,
            "train/action_std": jnp.std(actions, ddof=1) if B > 1 else jnp.float32(0.0),
            "train/batch_reward_mean": jnp.mean(traj.reward),
            "train/batch_reward_std": jnp.std(traj.reward, ddof=1) if B > 1 else jnp.float32(0.0),
            "train/loss_objective": mean(terms["loss_objective"]),
            "train/loss_critic": mean(terms["loss_critic"]),
            "train/loss_entropy": mean(terms["loss_entropy"]),
            "train/loss": mean(terms["loss"]),
            "train/entropy": mean(terms["entropy"]),
            "train/approx_kl": mean(terms["approx_kl"]),  # k3: mean((ratio - 1) - log ratio)
            "train/kl_approx": mean(terms["kl_approx"]),  # torchrl's k1: mean(old_log_prob - log_prob)
            "train/clip_fraction": mean(terms["clip_fraction"]),
            "train/grad_norm": mean(terms["grad_norm"]),
            "train/explained_variance": ev,
            # the values used by the iteration's last update (the reference logs its last alpha)
            "train/lr": terms["lr"][-1, -1],
            "train/clip_epsilon": terms["clip_epsilon"][-1, -1],
        }

    def _iteration(env_params, runner: RunnerState, h: Hyper = default_h):
        runner, traj, episodes = _collect(env_params, runner)
        return _update(runner, traj, episodes, h)

    def _collect_only(env_params, runner: RunnerState):
        runner, traj, _ = _collect(env_params, runner)
        return runner, traj

    # Several seeds: vmapped, or one after another on one CPU device (`_seeds_in_turn`; a mesh shards them).
    in_turn = mesh is None and jax.default_backend() == "cpu"
    if K == 1:
        per_seed_fn = _single_seed
    else:
        per_seed_fn = _seeds_in_turn if in_turn else (lambda fn: jax.vmap(fn, in_axes=(None, 0)))
    init_v, iteration_v, collect_v = per_seed_fn(init), per_seed_fn(_iteration), per_seed_fn(_collect_only)
    if per_agent:  # inputs = (env_params, hp), leaves [A, ...]: vmapped with the agents
        first = lambda fn: _single_seed(lambda inputs, x: fn(jax.tree.map(lambda a: a[0], inputs), x))
        batched = (lambda fn: _seeds_in_turn(fn, True)) if in_turn else (lambda fn: jax.vmap(fn, in_axes=(0, 0)))
        per_agent_fn = first if K == 1 else batched
        h = lambda hp: agent_hyper(cfg, total_updates, hp, default_h)
        init_v = per_agent_fn(lambda inputs, key: init(inputs[0], key))
        iteration_v = per_agent_fn(lambda inputs, runner: _iteration(inputs[0], runner, h(inputs[1])))
        collect_v = per_agent_fn(lambda inputs, runner: _collect_only(inputs[0], runner))
    common = dict(
        network=network,
        lr_schedule=lr_schedule,
        clip_schedule=clip_schedule,
        total_updates=total_updates,
        frames_per_iteration=B,
    )
    if mesh is None:
        return TrainFns(init=jax.jit(init_v), iteration=jax.jit(iteration_v), collect=jax.jit(collect_v), **common)

    # Leaves are [K, ...] (per-seed) or [K, N, ...] (per env lane); rollouts are [K, T, N, ...].
    sh = lambda *spec: parallel.sharding(mesh, *spec)
    replicated = sh()
    per_seed = sh(parallel.DATA_AXIS) if seed_mode else replicated
    inputs_sh = per_seed if per_agent else replicated  # env params (and hp): per agent, or shared
    per_lane = sh(parallel.DATA_AXIS) if seed_mode else sh(None, parallel.DATA_AXIS)
    per_step_lane = sh(parallel.DATA_AXIS) if seed_mode else sh(None, None, parallel.DATA_AXIS)
    runner_sh = RunnerState(per_seed, per_lane, per_lane, per_lane, per_lane, per_seed, per_seed)
    return TrainFns(
        init=jax.jit(init_v, in_shardings=(inputs_sh, per_seed), out_shardings=runner_sh),
        iteration=jax.jit(iteration_v, in_shardings=(inputs_sh, runner_sh), out_shardings=(runner_sh, replicated)),
        collect=jax.jit(collect_v, in_shardings=(inputs_sh, runner_sh), out_shardings=(runner_sh, per_step_lane)),
        mesh=mesh,
        seeds_sharded=seed_mode,
        runner_sharding=runner_sh,
        env_params_sharding=inputs_sh,
        keys_sharding=per_seed,
        **common,
    )

# Backward-compatible alias: the host loop and the CLI moved to train.loop and train.cli.
_MOVED = {
    "TrainingDiverged": "train.loop",
    "TrainResult": "train.loop",
    "train": "train.loop",
    "config_from_argv": "train.cli",
    "print_summary": "train.cli",
    "main": "train.cli",
}


def __getattr__(name: str):
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

