"""GAE over time and the clipped PPO loss (torchrl `ClipPPOLoss` semantics, docs/semantics.md §6.4), as pure functions.

GAE (the Q3 fix: the reference's advantage collapses to the one-step TD error)::

    delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)
    A_t     = delta_t + gamma * lambda * (1 - done_t) * A_{t+1}
    target  = A_t + V(s_t)

`s'_t` is the TRUE next observation of step t (`info["final_observation"]`), so a truncated episode
bootstraps from its last observation and only a terminated one does not. `done_t` cuts the recursion at
every episode boundary (the next row of the batch belongs to a new episode). `gae_lambda=0` gives the
reference's effective one-step TD advantage.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from train.networks import apply_loss_forward, policy

ADV_STD_FLOOR = 1e-6  # torch float32 finfo.resolution, as torchrl's advantage normalisation


def compute_gae(rewards, values, next_values, terminated, dones, gamma: float, gae_lambda: float):
    """Generalised advantage estimation along axis 0 (time).

    Args: `rewards, values, next_values` float `[T, ...]`; `terminated, dones` bool `[T, ...]`.
    Returns `(advantages [T, ...], value_targets [T, ...])`.
    """
    not_term = 1.0 - terminated.astype(jnp.float32)
    not_done = 1.0 - dones.astype(jnp.float32)
    deltas = rewards + gamma * not_term * next_values - values

    def _step(next_adv, xs):
        delta, nd = xs
        adv = delta + gamma * gae_lambda * nd * next_adv
        return adv, adv

    _, advantages = jax.lax.scan(_step, jnp.zeros_like(deltas[0]), (deltas, not_done), reverse=True)
    return advantages, advantages + values


def normalize_advantages(advantages):
    """`(A - mean) / max(std_unbiased, 1e-6)` over the whole minibatch; a minibatch of one element is returned
    unchanged, as torchrl skips the normalisation there (`advantage.numel() > 1`)."""
    n = advantages.size
    if n == 1:
        return advantages
    mean = jnp.mean(advantages)
    var = jnp.sum(jnp.square(advantages - mean)) / max(n - 1, 1)
    return (advantages - mean) / jnp.maximum(jnp.sqrt(var), ADV_STD_FLOOR)


def critic_loss(values, targets, kind: str = "l2"):
    """Elementwise critic distance: "l2" (plain squared error, no 1/2), "l1", or "smooth_l1" (Huber 1)."""
    diff = values - targets
    if kind == "l2":
        return jnp.square(diff)
    if kind == "l1":
        return jnp.abs(diff)
    if kind == "smooth_l1":
        a = jnp.abs(diff)
        return jnp.where(a < 1.0, 0.5 * jnp.square(diff), a - 0.5)
    raise ValueError(f"loss_critic_type must be l2, l1 or smooth_l1, got {kind!r}")


def ppo_loss_terms(
    logits,
    values,
    actions,
    old_log_probs,
    advantages,
    value_targets,
    clip_epsilon,
    *,
    critic_coeff: float = 1.0,
    entropy_coeff: float = 0.01,
    loss_critic_type: str = "l2",
    normalize_advantage: bool = True,
):
    """ClipPPOLoss on one minibatch. Shapes: `logits [B, A]`, everything else `[B]`.

    Returns `(total_loss, terms)`; `terms` holds `loss_objective`, `loss_critic`, `loss_entropy` (each as
    torchrl reports it: coefficients applied, entropy term negative), `entropy`, `approx_kl` (the k3 estimator
    `mean((ratio - 1) - log ratio)`), `kl_approx` (torchrl's k1 estimator `mean(old_log_prob - log_prob)`) and
    `clip_fraction` (`mean(|ratio - 1| > eps)`).
    """
    adv = normalize_advantages(advantages) if normalize_advantage else advantages
    dist = policy(logits)
    log_probs = dist.log_prob(actions)
    log_ratio = log_probs - old_log_probs
    ratio = jnp.exp(log_ratio)
    surrogate = jnp.minimum(ratio * adv, jnp.clip(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * adv)
    loss_objective = -jnp.mean(surrogate)
    entropy = jnp.mean(dist.entropy())
    loss_entropy = -entropy_coeff * entropy
    loss_critic = critic_coeff * jnp.mean(critic_loss(values, value_targets, loss_critic_type))
    total = loss_objective + loss_critic + loss_entropy
    terms = {
        "loss_objective": loss_objective,
        "loss_critic": loss_critic,
        "loss_entropy": loss_entropy,
        "entropy": entropy,
        "approx_kl": jax.lax.stop_gradient(jnp.mean((ratio - 1.0) - log_ratio)),
        "kl_approx": jax.lax.stop_gradient(-jnp.mean(log_ratio)),
        "clip_fraction": jax.lax.stop_gradient(jnp.mean((jnp.abs(ratio - 1.0) > clip_epsilon).astype(jnp.float32))),
    }
    return total, terms


def minibatch_loss(network, params, batch_stats, batch, key, clip_epsilon, *, trunk_passes: int = 1, **loss_kw):
    """The PPO loss of one minibatch `(obs, action, old_log_prob, advantage, target)` from the network in
    training mode (`networks.apply_loss_forward`: `trunk_passes` 2 as ClipPPOLoss, or 1).
    Returns `(total, (terms, new_batch_stats))`, ready for `jax.value_and_grad(..., has_aux=True)`."""
    obs, action, old_log_prob, adv, target = batch
    logits, value, batch_stats = apply_loss_forward(network, params, batch_stats, obs, key, trunk_passes)
    total, terms = ppo_loss_terms(logits, value, action, old_log_prob, adv, target, clip_epsilon, **loss_kw)
    return total, (terms, batch_stats)


def minibatch_loss_kwargs(cfg) -> dict:
    """`minibatch_loss`'s keyword arguments from a trainer config's `loss` group."""
    lo = cfg.loss
    return dict(
        trunk_passes=int(lo.trunk_passes),
        critic_coeff=float(lo.critic_coeff),
        entropy_coeff=float(lo.entropy_coeff),
        loss_critic_type=str(lo.loss_critic_type),
        normalize_advantage=bool(lo.normalize_advantage),
    )


def explained_variance(values, targets):
    """`1 - Var(targets - values) / Var(targets)` (NaN when the targets are constant)."""
    var_t = jnp.var(targets)
    return jnp.where(var_t > 0, 1.0 - jnp.var(targets - values) / jnp.where(var_t > 0, var_t, 1.0), jnp.nan)
