"""PPO on the trading env, PureJaxRL style: one training iteration is one jitted XLA program.

    python -m train.ppo [CONFIG.yaml] [group.key=value ...]        # see train/config.py for every key
    python -m train.ppo --help                                     # list the keys and defaults

`make_train(cfg, env)` returns pure functions (vmapped over `num_seeds` agents, jitted):

* `init(env_params, keys[K]) -> RunnerState`
* `iteration(env_params, runner) -> (runner, metrics)`: collect `frames_per_batch // num_envs` steps of
  `num_envs` auto-resetting lanes with `lax.scan` over the vmapped `env.step`; then `ppo_epochs` x
  (values + GAE over time, a shuffled permutation split into minibatches, `lax.scan` of Adam updates).
  The reference's semantics (spec §6.4) with its bugs fixed: correct GAE (Q3), truncation bootstraps from
  `info["final_observation"]`, LR and clip-ε really anneal (Q4), `train/reward` covers every episode that
  ended (Q5), honest wall-time SPS (Q6).
* `collect(env_params, runner) -> (runner, traj)`: the collection part alone, only used to time it.

The host loop (`train`) calls `iteration` once per batch, fetches its metrics (the only host sync),
evaluates the deterministic policy every `eval.test_interval` frames, writes checkpoints, logs and draws a
tqdm bar; a rich summary table closes the run.

Scale-out (train/parallel.py, train/SCALING.md): `parallel.devices=all|N` jits the same global-batch
program over a device mesh (env lanes, or seeds when `num_seeds` is a multiple of the device count, split
over the devices; params and optimiser state replicated; XLA all-reduces gradients and BatchNorm moments);
`parallel.distributed=true` runs one process per host with `jax.distributed`, process 0 doing the I/O.

Timing (Q6). `time/SPS-total` = frames collected in the iteration (all seeds) / the iteration's whole wall
time, including its eval, checkpoint and logging, compile excluded (everything is compiled ahead, reported
once as `time/compile`), and excluding the diagnostic call below. Collection and update are one XLA
program, so `time/SPS-collecting` comes from a separate compiled collect-only call on the current state
every `logger.timing_interval` iterations (its result is discarded, so training is unaffected): frames /
that call's wall time.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from train import parallel
from train.config import (
    ConfigError,
    default_config,
    describe_keys,
    load_config,
    num_iterations,
    num_minibatches,
    steps_per_iteration,
    to_dict,
    to_yaml,
)
from train.evaluate import eval_key
from train.losses import compute_gae, explained_variance, ppo_loss_terms
from train.networks import apply_mode, apply_train, init_variables, make_network, policy
from train.parallel import seeds_sharded


class TrainingDiverged(RuntimeError):
    """A NaN or inf in the loss or the parameters; the last good checkpoint is kept."""


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


# --------------------------------------------------------------------------------------- schedules
def make_schedules(cfg, total_updates: int):
    """`(lr(step), clip_epsilon(step))`, linear from the configured value to 0 over `total_updates`
    minibatch updates (the reference's `alpha = 1 - step / total`, which there never moves: Q4)."""
    lr, eps = float(cfg.optim.lr), float(cfg.loss.clip_epsilon)
    total = max(int(total_updates), 1)
    lr_schedule = optax.linear_schedule(lr, 0.0, total) if cfg.optim.anneal_lr else optax.constant_schedule(lr)

    def clip_schedule(step):
        if not cfg.loss.anneal_clip_epsilon:
            return jnp.asarray(eps, jnp.float32)
        return eps * (1.0 - jnp.minimum(step, total).astype(jnp.float32) / total)

    return lr_schedule, clip_schedule


def make_optimizer(cfg, lr_schedule):
    """`chain(clip_by_global_norm, [L2 weight decay as torch Adam], adam)`."""
    o = cfg.optim
    parts = [optax.clip_by_global_norm(float(o.max_grad_norm))]
    if o.weight_decay:
        parts.append(optax.add_decayed_weights(float(o.weight_decay)))
    parts.append(optax.adam(learning_rate=lr_schedule, eps=float(o.eps)))
    return optax.chain(*parts)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


# --------------------------------------------------------------------------------------- make_train
def make_train(cfg, env, mesh=None) -> TrainFns:
    """Build the jitted, seed-vmapped `init`, `iteration` and `collect` functions (see module doc).

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
    loss_kw = dict(
        critic_coeff=float(cfg.loss.critic_coeff),
        entropy_coeff=float(cfg.loss.entropy_coeff),
        loss_critic_type=str(cfg.loss.loss_critic_type),
        normalize_advantage=bool(cfg.loss.normalize_advantage),
    )

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
    def _calculate_gae(ts: TrainState, traj: Transition, key):
        """Values of obs and true next obs in one forward pass (as torchrl's GAE), then GAE over time."""
        x = jnp.concatenate([traj.obs.reshape(B, obs_dim), traj.next_obs.reshape(B, obs_dim)])
        x = constrain(x, parallel.DATA_AXIS)  # [2B, obs_dim]: the forward pass split over the devices
        _, v, batch_stats = apply_mode(network, ts.params, ts.batch_stats, x, key, collect_train)
        values, next_values = v[:B].reshape(T, N), v[B:].reshape(T, N)
        adv, targets = compute_gae(traj.reward, values, next_values, traj.terminated, traj.done, gamma, lam)
        return ts._replace(batch_stats=batch_stats), adv, targets, values

    # ---- update -----------------------------------------------------------------------------
    def _update_minibatch(ts: TrainState, xs):
        batch, key = xs
        obs, action, old_log_prob, adv, target = batch
        clip = clip_schedule(ts.update_step)

        def _loss_fn(params):
            logits, value, batch_stats = apply_train(network, params, ts.batch_stats, obs, key)
            total, terms = ppo_loss_terms(logits, value, action, old_log_prob, adv, target, clip, **loss_kw)
            return total, (terms, batch_stats)

        (loss, (terms, batch_stats)), grads = jax.value_and_grad(_loss_fn, has_aux=True)(ts.params)
        updates, opt_state = tx.update(grads, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, updates)
        terms = dict(
            terms, loss=loss, lr=lr_schedule(ts.update_step), clip_epsilon=clip, grad_norm=optax.tree.norm(grads)
        )
        return TrainState(params, batch_stats, opt_state, ts.update_step + 1), terms

    def _update_epoch(carry, key):
        ts, traj, adv, targets = carry
        k_gae, k_perm, k_mb = jax.random.split(key, 3)
        ev = jnp.float32(jnp.nan)
        if recompute:
            ts, adv, targets, values = _calculate_gae(ts, traj, k_gae)
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
        ts, terms = jax.lax.scan(_update_minibatch, ts, (minibatches, jax.random.split(k_mb, num_mb)))
        return (ts, traj, adv, targets), (terms, ev)

    def _update(runner: RunnerState, traj: Transition, episodes: EpisodeStep):
        key, k_gae, k_epochs = jax.random.split(runner.key, 3)
        ts = runner.train
        adv = targets = jnp.zeros((T, N), jnp.float32)
        ev0 = jnp.float32(jnp.nan)
        if not recompute:  # PureJaxRL style: advantages once, from the pre-update network
            ts, adv, targets, values = _calculate_gae(ts, traj, k_gae)
            ev0 = explained_variance(values, targets)
        (ts, _, _, _), (terms, ev) = jax.lax.scan(
            _update_epoch, (ts, traj, adv, targets), jax.random.split(k_epochs, epochs)
        )
        metrics = _metrics(traj, episodes, terms, ev[0] if recompute else ev0)
        metrics["train/finite"] = _all_finite(ts.params) & jnp.isfinite(metrics["train/loss"])
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
            # Q5 fix: every episode that ended in this batch (terminated or truncated).
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
            "train/approx_kl": mean(terms["approx_kl"]),
            "train/clip_fraction": mean(terms["clip_fraction"]),
            "train/grad_norm": mean(terms["grad_norm"]),
            "train/explained_variance": ev,
            # the values used by the iteration's last update (the reference logs its last alpha)
            "train/lr": terms["lr"][-1, -1],
            "train/clip_epsilon": terms["clip_epsilon"][-1, -1],
        }

    def _iteration(env_params, runner: RunnerState):
        runner, traj, episodes = _collect(env_params, runner)
        return _update(runner, traj, episodes)

    def _collect_only(env_params, runner: RunnerState):
        runner, traj, _ = _collect(env_params, runner)
        return runner, traj

    init_v = jax.vmap(init, in_axes=(None, 0))
    iteration_v = jax.vmap(_iteration, in_axes=(None, 0))
    collect_v = jax.vmap(_collect_only, in_axes=(None, 0))
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
    per_lane = sh(parallel.DATA_AXIS) if seed_mode else sh(None, parallel.DATA_AXIS)
    per_step_lane = sh(parallel.DATA_AXIS) if seed_mode else sh(None, None, parallel.DATA_AXIS)
    runner_sh = RunnerState(per_seed, per_lane, per_lane, per_lane, per_lane, per_seed, per_seed)
    return TrainFns(
        init=jax.jit(init_v, in_shardings=(replicated, per_seed), out_shardings=runner_sh),
        iteration=jax.jit(iteration_v, in_shardings=(replicated, runner_sh), out_shardings=(runner_sh, replicated)),
        collect=jax.jit(collect_v, in_shardings=(replicated, runner_sh), out_shardings=(runner_sh, per_step_lane)),
        mesh=mesh,
        seeds_sharded=seed_mode,
        runner_sharding=runner_sh,
        env_params_sharding=replicated,
        keys_sharding=per_seed,
        **common,
    )


# --------------------------------------------------------------------------------------- host loop
@dataclass
class TrainResult:
    run_dir: str
    runner: Any
    iteration: int
    metrics: dict = field(default_factory=dict)  # last logged record (seed means)
    evaluation: dict = field(default_factory=dict)  # last eval record (seed means)
    checkpoint: str | None = None


def reduce_seeds(metrics: dict, prefix_std: str = "_seed_std") -> dict[str, float]:
    """Per-seed arrays `[K]` -> `{name: mean}` plus `{name + "_seed_std": std}` when K > 1 (NaN ignored)."""
    out = {}
    for k, v in metrics.items():
        v = np.asarray(v, np.float64).reshape(-1)
        finite = v[np.isfinite(v)]
        out[k] = float(finite.mean()) if len(finite) else float("nan")
        if len(v) > 1:
            out[k + prefix_std] = float(finite.std()) if len(finite) > 1 else float("nan")
    return out


def resolve_run_dir(cfg) -> str:
    if cfg.logger.run_dir:
        return str(cfg.logger.run_dir)
    resume = cfg.checkpoint.resume
    if resume:
        from train.checkpoint import CKPT_DIR

        path = os.path.abspath(str(resume))
        if os.path.isfile(path):
            path = os.path.dirname(path)
        if os.path.basename(path) == CKPT_DIR:
            path = os.path.dirname(path)
        return path
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = os.path.join(str(cfg.logger.root_dir), f"{cfg.logger.exp_name}-{stamp}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def _signature(args) -> tuple:
    """What a compiled program depends on besides the function: tree structure, shapes, dtypes, shardings."""
    leaves, treedef = jax.tree.flatten(args)
    return (str(treedef),) + tuple(
        (np.shape(x), str(x.dtype), bool(getattr(x, "weak_type", False)), str(getattr(x, "sharding", None)))
        for x in leaves
    )


def _aot(fn, *args, cache: dict | None = None):
    """Compile ahead of time; returns the compiled callable. With `cache` (a dict owned by whoever owns
    `fn`), a later call with inputs of the same signature reuses the executable (tests and resumes that
    call `train` again with the same `TrainFns`)."""
    if cache is None:
        return fn.lower(*args).compile()
    key = (id(fn), _signature(args))
    if key not in cache:
        cache[key] = (fn, fn.lower(*args).compile())  # keeps fn alive, so its id stays unique
    return cache[key][1]


class _NullLogger:
    """The logger of processes other than 0: they log nothing."""

    def log(self, *args, **kwargs) -> None:
        pass

    def log_image(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


def _fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.4g}"


class _Evaluator:
    """Deterministic test-split and training-window episodes for every seed; history PNGs for seed 0."""

    def __init__(self, cfg, setup, network, run_dir):
        from train.evaluate import make_episode_runner

        self.cfg, self.run_dir = cfg, run_dir
        self.leverage = float(cfg.env.leverage)
        self.allows_short = bool(setup.env_config.allows_short)
        self.spans = []
        if setup.test is not None:
            self.spans.append(("eval/", "history", make_episode_runner(setup.test, network)))
        self.spans.append(("eval/train_", "train_history", make_episode_runner(setup.train_eval, network)))

    def compile(self, params, batch_stats, key):
        for i, (prefix, name, runner) in enumerate(self.spans):
            keys = jax.random.split(key, jax.tree.leaves(params)[0].shape[0])
            compiled = _aot(runner.fn, params, batch_stats, runner.bundle.params, keys, cache=runner.bundle.cache)
            self.spans[i] = (prefix, name, type(runner)(runner.bundle, compiled))

    def __call__(self, params, batch_stats, key, frames: int, logger) -> dict:
        from train.evaluate import evaluate_policy, lane, save_history_png

        out = {}
        for prefix, name, runner in self.spans:
            summaries, rows = evaluate_policy(runner, params, batch_stats, key, self.leverage)
            per_seed = {k: np.asarray([s[k] for s in summaries]) for k in summaries[0]}
            for k, v in reduce_seeds(per_seed).items():
                out[prefix + k] = v
            if self.cfg.eval.plots:
                path = os.path.join(self.run_dir, "plots", f"{name}_{frames:012d}.png")
                m = runner.bundle.market
                save_history_png(
                    lane(rows, 0),
                    path,
                    self.leverage,
                    allows_short=self.allows_short,
                    title=f"{prefix.rstrip('/')} at {frames} frames: {m.exec_times[0]} .. {m.exec_times[-1]}",
                )
                logger.log_image(f"eval/{name}", path, frames)
        return out


def train(cfg, *, frame=None, setup=None, fns: TrainFns | None = None) -> TrainResult:
    """Run (or resume) a training run. `frame`: an OHLCV DataFrame instead of `env.data_path`.

    `setup` (from `train.data.build_setup`) and `fns` (from `make_train`) can be passed in to reuse
    compiled functions across runs of the same shapes (tests do this). Without `fns`, the device mesh
    comes from `parallel.devices` (`train.parallel.make_mesh`). With several processes every process calls
    this; only process 0 writes the run directory, logs, evaluates and checkpoints.
    """
    from train.checkpoint import load_checkpoint, restore_state, save_checkpoint
    from train.data import build_setup, load_features, save_features
    from train.logging import RunLogger

    t_start = time.perf_counter()
    nan = float("nan")
    run_dir = resolve_run_dir(cfg)
    resume = cfg.checkpoint.resume
    ckpt = load_checkpoint(str(resume)) if resume else None
    if setup is None:
        frozen = None
        features_file = os.path.join(run_dir, "features.json")
        if ckpt is not None and os.path.isfile(features_file):
            frozen = load_features(features_file)  # the statistics the run was trained with
        try:
            setup = build_setup(cfg, frame, frozen_features=frozen)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    fns = fns or make_train(cfg, setup.train.env, parallel.make_mesh(cfg))
    main_process = parallel.is_main_process()
    if main_process:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "config.yaml"), "w") as fh:
            fh.write(to_yaml(cfg))
        save_features(os.path.join(run_dir, "features.json"), setup.features)

    K = int(cfg.num_seeds)
    F = fns.frames_per_iteration
    seed_keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), K)
    env_params, seed_keys = fns.place_inputs(setup.train.params, seed_keys)

    def policy_view(state):
        """The policy for evaluation and checkpoints; with a mesh, NumPy copies (a collective: every
        process calls this at the same point), evaluated on process 0's default device."""
        pair = (state.train.params, state.train.batch_stats)
        return pair if fns.mesh is None else fns.to_host(pair)

    t0 = time.perf_counter()
    runner = fns.init(env_params, seed_keys)
    if ckpt is not None:
        runner = fns.place_runner(restore_state(runner, ckpt))
    start_it = int(parallel.first_value(runner.iteration))
    iteration = _aot(fns.iteration, env_params, runner, cache=fns.compiled)
    collect = _aot(fns.collect, env_params, runner, cache=fns.compiled) if cfg.logger.timing_interval else None
    evaluator = _Evaluator(cfg, setup, fns.network, run_dir) if cfg.eval.enabled and main_process else None
    view = policy_view(runner) if cfg.eval.enabled else None
    if evaluator is not None:
        evaluator.compile(*view, eval_key(int(cfg.seed), 0))
    t_compile = time.perf_counter() - t0

    logger = RunLogger(cfg, run_dir, to_dict(cfg)) if main_process else _NullLogger()
    n_it = num_iterations(cfg)
    stop = n_it if cfg.collector.stop_at_iteration is None else min(n_it, int(cfg.collector.stop_at_iteration))
    result = TrainResult(run_dir=run_dir, runner=runner, iteration=start_it)
    if ckpt is not None:
        result.checkpoint = ckpt["path"]
    cfg_yaml = to_yaml(cfg)
    interval = int(cfg.eval.test_interval)
    timing = int(cfg.logger.timing_interval)
    sps_collect = float("nan")
    sps_collect_all, sps_total_all = [], []
    last_train_reward, last_eval = float("nan"), float("nan")
    t_loop = time.perf_counter()
    frames_this_run = 0

    bar = None
    if cfg.logger.progress and main_process:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=n_it * F,
            initial=start_it * F,
            unit="frames",
            unit_scale=True,
            dynamic_ncols=True,
            desc=("ppo" + (f" x{K}" if K > 1 else "") + (f" [{fns.mesh.size} dev]" if fns.mesh is not None else "")),
            file=sys.stderr,
        )

    def _save(state, it, frames):
        if not cfg.checkpoint.enabled:
            return None
        if fns.mesh is not None:
            state = fns.to_host(state)  # every process takes part; process 0 writes
        if not main_process:
            return None
        policy = {"params": state.train.params, "batch_stats": state.train.batch_stats}
        return save_checkpoint(
            run_dir,
            state,
            iteration=it,
            config_yaml=cfg_yaml,
            policy=policy,
            keep=int(cfg.checkpoint.keep),
            meta={"frames": frames, "num_seeds": K, "obs_dim": setup.obs_dim, "num_actions": setup.num_actions},
        )

    try:
        logger.log(
            {
                "time/compile": t_compile,
                "parallel/devices": fns.mesh.size if fns.mesh is not None else 1,
                "parallel/processes": jax.process_count(),
                "parallel/seeds_sharded": int(fns.seeds_sharded),
            },
            step=start_it * F,
            iteration=start_it,
        )
        for it in range(start_it, stop):
            t_it = time.perf_counter()
            new_runner, metrics = iteration(env_params, runner)
            metrics = fns.to_host(metrics)  # the one host sync of the iteration (replicated: no collective)
            t_train = time.perf_counter() - t_it
            frames = (it + 1) * F
            if not bool(np.all(metrics.pop("train/finite"))):
                bad = reduce_seeds(metrics)
                logger.log(bad, step=frames, iteration=it + 1, diverged=True)
                where = result.checkpoint or "none was written yet"
                raise TrainingDiverged(
                    f"non-finite loss or parameters at iteration {it + 1} (frames {frames}): "
                    f"train/loss={_fmt(bad.get('train/loss'))}, train/grad_norm={_fmt(bad.get('train/grad_norm'))}. "
                    f"Stopping; the last good checkpoint is kept: {where}. Try a lower optim.lr or "
                    "optim.max_grad_norm."
                )
            runner = new_runner
            log = reduce_seeds(metrics)
            log["time/iteration"] = t_train

            t_collect = 0.0
            if collect is not None and (it - start_it) % timing == 0:
                t_c = time.perf_counter()
                jax.block_until_ready(collect(env_params, runner))
                t_collect = time.perf_counter() - t_c
                sps_collect = K * F / t_collect
                log["time/collecting"] = t_collect
                log["time/SPS-collecting"] = sps_collect
                sps_collect_all.append(sps_collect)

            last = it + 1 == stop
            crossed = (it * F) // interval < frames // interval
            if cfg.eval.enabled and (crossed or it == 0 or last):
                t_e = time.perf_counter()
                view = policy_view(runner)
                if evaluator is not None:
                    key = eval_key(int(cfg.seed), it + 1)
                    ev = evaluator(*view, key, frames, logger)
                    log.update(ev)
                    result.evaluation = ev
                    last_eval = ev.get("eval/reward", ev.get("eval/train_reward", float("nan")))
                log["time/eval"] = time.perf_counter() - t_e
            if cfg.checkpoint.enabled and (crossed or last or (cfg.eval.enabled and it == 0)):
                t_s = time.perf_counter()
                result.checkpoint = _save(runner, it + 1, frames)
                log["time/checkpoint"] = time.perf_counter() - t_s

            frames_this_run += K * F
            # the diagnostic collect-only call is not part of training: excluded
            log["time/SPS-total"] = K * F / (time.perf_counter() - t_it - t_collect)
            sps_total_all.append(log["time/SPS-total"])
            log["time/speed"] = frames_this_run / (time.perf_counter() - t_loop)
            logger.log(log, step=frames, iteration=it + 1)
            result.metrics, result.iteration, result.runner = log, it + 1, runner
            if math.isfinite(log.get("train/reward", float("nan"))):
                last_train_reward = log["train/reward"]
            if bar is not None:
                bar.update(F)
                bar.set_postfix(reward=_fmt(last_train_reward), eval=_fmt(last_eval), refresh=False)
    finally:
        if bar is not None:
            bar.close()
        logger.close()
    result.metrics["time/SPS-collecting"] = sps_collect
    # medians over this process's iterations (the last iteration's own SPS includes its final eval)
    result.metrics["time/SPS-collecting (median)"] = float(np.median(sps_collect_all)) if sps_collect_all else nan
    result.metrics["time/SPS-total (median)"] = float(np.median(sps_total_all)) if sps_total_all else nan
    result.metrics["time/compile"] = t_compile
    result.metrics["time/wall"] = time.perf_counter() - t_start
    return result


SUMMARY_KEYS = (
    "train/reward",
    "train/episode_length",
    "train/loss_objective",
    "train/loss_critic",
    "train/loss_entropy",
    "train/approx_kl",
    "train/clip_fraction",
    "train/explained_variance",
    "train/lr",
    "train/clip_epsilon",
    "eval/reward",
    "eval/final_pv",
    "eval/bh_log_return",
    "eval/sharpe",
    "eval/max_drawdown",
    "eval/num_trades",
    "eval/train_reward",
    "eval/train_bh_log_return",
    "time/SPS-collecting (median)",
    "time/SPS-total (median)",
    "time/speed",
    "time/compile",
    "time/wall",
)


def print_summary(cfg, result: TrainResult, file=None) -> None:
    """A rich table of the final metrics (mean ± std over seeds when num_seeds > 1)."""
    from rich.console import Console
    from rich.table import Table

    record = dict(result.metrics)
    record.update(result.evaluation)
    table = Table(
        title=f"PPO summary: {result.iteration} iterations, "
        f"{result.iteration * steps_per_iteration(cfg) * cfg.env.num_envs:,} frames per seed"
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in SUMMARY_KEYS:
        if k not in record:
            continue
        v = record[k]
        std = record.get(k + "_seed_std")
        text = _fmt(v) if std is None else f"{_fmt(v)} ± {_fmt(std)}"
        table.add_row(k, text)
    table.add_row("run_dir", result.run_dir)
    if result.checkpoint:
        table.add_row("checkpoint", os.path.relpath(result.checkpoint, result.run_dir))
    out = file or sys.stdout
    Console(file=out, width=None if out.isatty() else 120).print(table)


USAGE = """usage: python -m train.ppo [CONFIG.yaml ...] [group.key=value ...]

Trains PPO on the trading env (one jitted XLA program per iteration). Overrides as in the reference:
  python -m train.ppo env.num_envs=128 model.hidden_size=256 optim.lr=1e-4
Resume a run exactly:  python -m train.ppo checkpoint.resume=RUN_DIR
GPU-sized (the reference's 5000 envs, 100k frames per batch):
  python -m train.ppo env.num_envs=5000 collector.frames_per_batch=100000 collector.total_frames=100000000 \\
      loss.mini_batch_size=33333 eval.test_interval=10000000

Keys (type, default):
"""


def config_from_argv(argv: list[str]):
    """Parse the command line; with `checkpoint.resume=RUN_DIR`, the run's saved config is the base (with
    `collector.stop_at_iteration` cleared) and the command line's overrides apply on top."""
    cfg = load_config(argv)
    if cfg.checkpoint.resume:
        from omegaconf import OmegaConf

        from train.checkpoint import load_checkpoint

        try:
            saved = load_checkpoint(str(cfg.checkpoint.resume))["config"]
        except FileNotFoundError as err:
            raise ConfigError(f"checkpoint.resume: {err}") from None
        base = OmegaConf.merge(default_config(), OmegaConf.create(saved))
        base.collector.stop_at_iteration = None  # a resumed run goes on unless told to stop again
        for key in ("distributed", "coordinator_address", "num_processes", "process_id"):  # launch-specific
            base.parallel[key] = default_config().parallel[key]
        cfg = load_config(argv, base=base)
    return cfg


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE + describe_keys())
        return 0
    try:
        cfg = config_from_argv(argv)
        parallel.initialize(cfg)  # before any JAX computation; a no-op unless parallel.distributed=true
        result = train(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if parallel.is_main_process():
        print_summary(cfg, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
