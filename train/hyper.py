"""The optimiser and the annealing schedules of `make_train`, and the per-agent hyper-parameters of a
`make_train(cfg, env, per_agent=True)` program (train.walkforward's sweeps).

A per-agent program takes `inputs = (env_params, hp)`: `hp` is a dict `{name: float32 [A]}` of traced values
that replace the config's for each agent (names: `SWEEP_KEYS`' values; `{}` keeps the config's). One agent's
update reads them through a `Hyper`: its optimiser (the learning-rate schedule is built from the traced lr; optax
transforms are pure and the schedule is stateless, so the optimiser state has the same structure for any lr),
its lr and clip-epsilon schedules (linear to 0 when annealed, as `train.ppo.make_schedules`), its loss keywords
and its GAE constants.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# config key -> name in a per-agent program's `hp` dict
SWEEP_KEYS = {
    "optim.lr": "lr",
    "loss.clip_epsilon": "clip_epsilon",
    "loss.entropy_coeff": "entropy_coeff",
    "loss.critic_coeff": "critic_coeff",
    "loss.gamma": "gamma",
    "loss.gae_lambda": "gae_lambda",
}


# --------------------------------------------------------------------------------------- schedules
def make_schedules(cfg, total_updates: int, *, lr=None, clip_epsilon=None):
    """`(lr(step), clip_epsilon(step))`, linear from the configured value to 0 over `total_updates`
    minibatch updates (the reference's `alpha = 1 - step / total`, which there never moves: Q4).
    `lr`, `clip_epsilon`: values in place of the config's (traced per-agent scalars of a sweep)."""
    lr = float(cfg.optim.lr) if lr is None else lr
    eps = float(cfg.loss.clip_epsilon) if clip_epsilon is None else clip_epsilon
    total = max(int(total_updates), 1)
    lr_schedule = optax.linear_schedule(lr, 0.0, total) if cfg.optim.anneal_lr else optax.constant_schedule(lr)

    def clip_schedule(step):
        if not cfg.loss.anneal_clip_epsilon:
            return jnp.asarray(eps, jnp.float32)
        return eps * (1.0 - jnp.minimum(step, total).astype(jnp.float32) / total)

    return lr_schedule, clip_schedule


TORCH_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by norm + 1e-6


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """`torch.nn.utils.clip_grad_norm_`: scale every gradient by `min(1, max_norm / (norm + 1e-6))`
    (`optax.clip_by_global_norm` divides by the norm alone)."""

    def scale(updates, params=None):
        coef = jnp.minimum(1.0, max_norm / (optax.tree.norm(updates) + TORCH_CLIP_EPS))
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates)

    return optax.stateless(scale)


def make_optimizer(cfg, lr_schedule):
    """`chain(clip_by_global_norm as torch, [L2 weight decay as torch Adam], adam)`."""
    o = cfg.optim
    parts = [clip_by_global_norm_torch(float(o.max_grad_norm))]
    if o.weight_decay:
        parts.append(optax.add_decayed_weights(float(o.weight_decay)))
    parts.append(optax.adam(learning_rate=lr_schedule, eps=float(o.eps)))
    return optax.chain(*parts)


class Hyper(NamedTuple):
    """What one agent's update uses of the sweepable hyper-parameters (Python floats, or traced scalars)."""

    tx: Any  # optax.GradientTransformation
    lr_schedule: Any  # step -> lr
    clip_schedule: Any  # step -> clip epsilon
    loss_kw: dict  # `train.losses.minibatch_loss` keywords
    gamma: Any
    gae_lambda: Any


def agent_hyper(cfg, total_updates: int, hp: dict, default: Hyper) -> Hyper:
    """`default` (the config's `Hyper`) with one agent's traced values `hp` in place of the config's."""
    if not hp:
        return default
    lr_s, clip_s = make_schedules(cfg, total_updates, lr=hp.get("lr"), clip_epsilon=hp.get("clip_epsilon"))
    kw = dict(default.loss_kw, **{k: hp[k] for k in ("critic_coeff", "entropy_coeff") if k in hp})
    gamma, lam = hp.get("gamma", default.gamma), hp.get("gae_lambda", default.gae_lambda)
    return Hyper(make_optimizer(cfg, lr_s), lr_s, clip_s, kw, gamma, lam)
