"""One PPO iteration cut into its phases, each a jitted program of its own, plus the network-only programs.

`benchmarks.profile_iteration` times them. Every piece is built from the trainer's own parts: the collection
is `train.ppo.make_train(...).collect`; the GAE, loss and optimiser pieces call `train.networks`,
`train.losses` and `train.ppo.make_optimizer` exactly as `make_train`'s iteration does (same BatchNorm pass
structure, `loss.gae_passes` and `loss.trunk_passes`, same shapes). A phase that runs `calls` times per
iteration is one program that runs it `calls` times in a `lax.scan` over distinct inputs (epoch keys,
minibatches), so its time includes what a scan step costs inside the iteration and no per-call dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from train.config import num_iterations, num_minibatches, steps_per_iteration
from train.losses import compute_gae, minibatch_loss, minibatch_loss_kwargs
from train.networks import apply_train, apply_values, init_variables
from train.ppo import make_optimizer, make_schedules

MIN_SAMPLES = 8192  # a network-only program runs ceil(MIN_SAMPLES / batch) passes, so small batches time well


@dataclass(frozen=True)
class Shape:
    """The sizes of one iteration of a trainer config."""

    num_envs: int
    steps: int
    obs_dim: int
    epochs: int
    minibatches: int
    mb_size: int
    recompute: bool
    gae_passes: int
    trunk_passes: int

    @property
    def frames(self) -> int:
        return self.num_envs * self.steps

    @property
    def gae_calls(self) -> int:
        return self.epochs if self.recompute else 1

    @property
    def gae_batch(self) -> int:
        """Samples per GAE forward: `frames` (two passes, obs then next obs) or `2 * frames` (one pass)."""
        return self.frames if self.gae_passes == 2 else 2 * self.frames

    @property
    def updates(self) -> int:
        return self.epochs * self.minibatches

    @classmethod
    def of(cls, cfg, obs_dim: int) -> Shape:
        lo = cfg.loss
        return cls(int(cfg.env.num_envs), steps_per_iteration(cfg), int(obs_dim), int(lo.ppo_epochs),
                   num_minibatches(cfg), int(lo.mini_batch_size), bool(lo.recompute_advantage),
                   int(lo.gae_passes), int(lo.trunk_passes))


def unseeded(tree, seeded: bool):
    """Drop the trainer's seed axis (size 1) when its programs are vmapped over seeds."""
    return jax.tree.map(lambda x: x[0], tree) if seeded else tree


# --------------------------------------------------------------------------------------- phases
@dataclass
class Pieces:
    """The jitted phase programs of one trainer config (see the module doc)."""

    shape: Shape
    gae: Any  # (params, batch_stats, traj, keys[gae_calls]) -> (batch_stats, (adv, targets) [calls, T, N])
    gather: Any  # (traj, adv, targets, keys[epochs]) -> minibatches [epochs, M, mb, ...]
    fwd_bwd: Any  # (params, batch_stats, minibatches [updates, mb, ...], keys[updates]) -> (bs, (loss, |g|))
    optimizer: Any  # (params, opt_state, grads) -> (params, opt_state) after `updates` steps
    metrics: Any  # (params, traj, terms [epochs, M, n]) -> (stats, finite): the reductions of the metrics
    tx: Any  # the trainer's optax optimiser


def make_pieces(cfg, network, obs_dim: int) -> Pieces:
    s = Shape.of(cfg, obs_dim)
    N, T, B, d = s.num_envs, s.steps, s.frames, s.obs_dim
    gamma, lam = float(cfg.loss.gamma), float(cfg.loss.gae_lambda)
    collect_train = bool(cfg.model.collect_train_mode)
    lr_schedule, clip_schedule = make_schedules(cfg, num_iterations(cfg) * s.updates)
    tx = make_optimizer(cfg, lr_schedule)
    loss_kw = minibatch_loss_kwargs(cfg)

    def gae(params, batch_stats, traj, keys):
        def one(bs, key):
            v, nv, bs = apply_values(network, params, bs, traj.obs.reshape(B, d), traj.next_obs.reshape(B, d), key,
                                     collect_train, s.gae_passes)
            adv, targets = compute_gae(traj.reward, v.reshape(T, N), nv.reshape(T, N), traj.terminated, traj.done,
                                       gamma, lam)
            return bs, (adv, targets)

        return jax.lax.scan(one, batch_stats, keys)

    def gather(traj, adv, targets, keys):
        def one(_, key):
            flat = (traj.obs.reshape(B, d), traj.action.reshape(B), traj.log_prob.reshape(B), adv.reshape(B),
                    targets.reshape(B))
            idx = jax.random.permutation(key, B)[: s.minibatches * s.mb_size].reshape(s.minibatches, s.mb_size)
            return None, jax.tree.map(lambda x: jnp.take(x, idx, axis=0), flat)

        return jax.lax.scan(one, None, keys)[1]

    def fwd_bwd(params, batch_stats, minibatches, keys):
        def one(bs, xs):
            batch, key = xs
            clip = clip_schedule(jnp.int32(0))
            loss_fn = lambda p: minibatch_loss(network, p, bs, batch, key, clip, **loss_kw)
            (loss, (_, bs)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            return bs, (loss, optax.tree.norm(grads))

        return jax.lax.scan(one, batch_stats, (minibatches, keys))

    def optimizer(params, opt_state, grads):
        def one(carry, _):
            p, o = carry
            updates, o = tx.update(grads, o, p)
            return (optax.apply_updates(p, updates), o), None

        return jax.lax.scan(one, (params, opt_state), None, length=s.updates)[0]

    def metrics(params, traj, terms):
        done = traj.done.astype(jnp.float32)
        n_done = jnp.sum(done)
        actions = traj.action.astype(jnp.float32)
        stats = [n_done, jnp.sum(traj.reward * done) / jnp.maximum(n_done, 1.0), jnp.std(actions, ddof=1),
                 jnp.mean(traj.reward), jnp.std(traj.reward, ddof=1)]
        stats = jnp.concatenate([jnp.stack(stats), jnp.mean(terms, axis=(0, 1))])
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
        return stats, finite & jnp.all(jnp.isfinite(stats))

    return Pieces(s, jax.jit(gae), jax.jit(gather), jax.jit(fwd_bwd), jax.jit(optimizer), jax.jit(metrics), tx)


def piece_inputs(pieces: Pieces, train_state, traj, key) -> dict:
    """Arguments of every phase program, from the trainer's state and a collected trajectory (no seed axis)."""
    s = pieces.shape
    k_gae, k_perm, k_mb = jax.random.split(key, 3)
    params, batch_stats = train_state.params, train_state.batch_stats
    gae_keys = jax.random.split(k_gae, s.gae_calls)
    _, (adv, targets) = pieces.gae(params, batch_stats, traj, gae_keys)
    perm_keys = jax.random.split(k_perm, s.epochs)
    minibatches = pieces.gather(traj, adv[-1], targets[-1], perm_keys)
    flat_mbs = jax.tree.map(lambda x: x.reshape((s.updates,) + x.shape[2:]), minibatches)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
    terms = jnp.zeros((s.epochs, s.minibatches, 12), jnp.float32)
    return {
        "gae": (params, batch_stats, traj, gae_keys),
        "gather": (traj, adv[-1], targets[-1], perm_keys),
        "fwd_bwd": (params, batch_stats, flat_mbs, jax.random.split(k_mb, s.updates)),
        "optimizer": (params, pieces.tx.init(params), grads),
        "metrics": (params, traj, terms),
    }


# --------------------------------------------------------------------------------------- network alone
def network_programs(network, batch: int, obs_dim: int, key, vmap_seed: bool = False):
    """`(forward, forward_backward, args, samples)` for the ActorCritic alone at `batch`, in training mode
    (BatchNorm batch statistics and running-stat update, dropout): jitted programs that each run `reps`
    passes over distinct inputs in a `lax.scan`; `samples = reps * batch`. `vmap_seed`: both vmapped over a
    size-1 seed axis, as `make_train` vmaps its iteration over `num_seeds`."""
    reps = max(1, -(-MIN_SAMPLES // batch))
    k_init, k_x, k_drop = jax.random.split(key, 3)
    variables = init_variables(network, k_init, obs_dim)
    xs = jax.random.normal(k_x, (reps, batch, obs_dim), jnp.float32)
    keys = jax.random.split(k_drop, reps)

    def forward(params, batch_stats, xs, keys):
        def one(bs, x_key):
            logits, value, bs = apply_train(network, params, bs, *x_key)
            return bs, jnp.sum(logits) + jnp.sum(value)

        return jax.lax.scan(one, batch_stats, (xs, keys))

    def forward_backward(params, batch_stats, xs, keys):
        def one(bs, x_key):
            def loss(p):
                logits, value, new_bs = apply_train(network, p, bs, *x_key)
                return jnp.mean(jax.nn.logsumexp(logits, axis=-1)) + jnp.mean(jnp.square(value)), new_bs

            (val, bs), grads = jax.value_and_grad(loss, has_aux=True)(params)
            return bs, val + optax.tree.norm(grads)

        return jax.lax.scan(one, batch_stats, (xs, keys))

    args = (variables["params"], variables["batch_stats"], xs, keys)
    if vmap_seed:
        forward, forward_backward = jax.vmap(forward), jax.vmap(forward_backward)
        args = jax.tree.map(lambda x: x[None], args)
    return jax.jit(forward), jax.jit(forward_backward), args, reps * batch
