"""The reference's BatchNorm MLP actor-critic in Flax (docs/semantics.md §6.3), with PyTorch's init and BatchNorm rules.

    h = x                                           # [B, obs_dim] (leading dims flattened, as BatchNorm1d)
    num_layers x:  Dense(hidden) -> BatchNorm -> LeakyReLU(0.01) -> Dropout(p)
    common = Dense(hidden)(h)                       # no activation
    logits = Dense(num_actions)(common);  value = Dense(1)(common)

Actor and critic share the trunk. 83,844 parameters for 126 inputs, 3 actions, hidden 128, 4 layers.

Variables: `{"params": ..., "batch_stats": ...}`. `train=True` normalises with the batch statistics, updates
the running statistics (call `apply(..., mutable=["batch_stats"])`) and applies dropout (rng "dropout");
`train=False` uses the running statistics and no dropout.
"""

from __future__ import annotations

import math

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp


def torch_uniform_init(fan_in: int):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Linear's kaiming_uniform_(a=sqrt(5)) weights and its
    biases both reduce to this bound."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class TorchDense(nn.Module):
    """`torch.nn.Linear` with its default init. Kernel `[in, out]`."""

    features: int

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1]
        kernel = self.param("kernel", torch_uniform_init(fan_in), (fan_in, self.features))
        bias = self.param("bias", torch_uniform_init(fan_in), (self.features,))
        return x @ kernel + bias


class TorchBatchNorm(nn.Module):
    """`torch.nn.BatchNorm1d` (affine, track_running_stats) on `[B, C]`.

    Training: normalise with the biased batch variance; update `running = momentum * running +
    (1 - momentum) * batch`, with the **unbiased** variance for `var` (torch's rule). `momentum` uses the
    Flax convention: 0.9 here is torch's momentum=0.1. Eval: normalise with the running statistics.

    Data parallel (train/parallel.py): under `jax.jit` with the batch sharded over a device mesh, the batch
    mean and variance are means over the global batch, so XLA all-reduces them: synced BatchNorm, with the
    same running statistics on every device.
    """

    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x, train: bool):
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,))
        bias = self.param("bias", nn.initializers.zeros, (c,))
        ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
        ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
        if train:
            n = x.shape[0]
            mean = jnp.mean(x, axis=0)
            var = jnp.mean(jnp.square(x - mean), axis=0)
            if not self.is_initializing():
                unbiased = var * (n / max(n - 1, 1))
                ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
                ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * unbiased
        else:
            mean, var = ra_mean.value, ra_var.value
        return (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias


class BatchNormMLP(nn.Module):
    """`num_layers` x (Dense -> BatchNorm -> LeakyReLU(0.01) -> Dropout), then Dense (no activation)."""

    hidden_size: int = 128
    num_layers: int = 4
    dropout: float = 0.1
    out_features: int = 128

    @nn.compact
    def __call__(self, x, train: bool):
        h = x
        for _ in range(self.num_layers):
            h = TorchDense(self.hidden_size)(h)
            h = TorchBatchNorm()(h, train)
            h = nn.leaky_relu(h, negative_slope=0.01)
            h = nn.Dropout(self.dropout, deterministic=not train or self.dropout == 0.0)(h)
        return TorchDense(self.out_features)(h)


class ActorCritic(nn.Module):
    """Shared BatchNorm MLP trunk, policy-logits head and value head.

    `__call__(obs[..., obs_dim], train) -> (logits[..., num_actions], value[...])`. Leading dims are
    flattened for BatchNorm (one normalisation batch), as torch's BatchNorm1d does.
    """

    num_actions: int
    hidden_size: int = 128
    num_layers: int = 4
    dropout: float = 0.1

    @nn.compact
    def __call__(self, obs, train: bool = False):
        lead = obs.shape[:-1]
        x = obs.reshape((-1, obs.shape[-1])).astype(jnp.float32)
        common = BatchNormMLP(self.hidden_size, self.num_layers, self.dropout, self.hidden_size)(x, train)
        logits = TorchDense(self.num_actions)(common)
        value = TorchDense(1)(common)[:, 0]
        return logits.reshape(lead + (self.num_actions,)), value.reshape(lead)


def make_network(cfg, num_actions: int) -> ActorCritic:
    """The actor-critic of a trainer config (`cfg.model`)."""
    m = cfg.model
    return ActorCritic(num_actions, int(m.hidden_size), int(m.num_layers), float(m.dropout))


def init_variables(network: ActorCritic, key, obs_dim: int) -> dict:
    """`{"params", "batch_stats"}` with torch-like init (running mean 0, var 1)."""
    variables = network.init({"params": key}, jnp.zeros((2, obs_dim), jnp.float32), train=False)
    return {"params": variables["params"], "batch_stats": variables["batch_stats"]}


def apply_train(network: ActorCritic, params, batch_stats, obs, key):
    """Training-mode forward (batch statistics, dropout). Returns `(logits, value, new_batch_stats)`."""
    (logits, value), updates = network.apply(
        {"params": params, "batch_stats": batch_stats},
        obs,
        train=True,
        rngs={"dropout": key},
        mutable=["batch_stats"],
    )
    return logits, value, updates["batch_stats"]


def apply_eval(network: ActorCritic, params, batch_stats, obs):
    """Eval-mode forward (running statistics, no dropout). Returns `(logits, value)`."""
    return network.apply({"params": params, "batch_stats": batch_stats}, obs, train=False)


def apply_mode(network: ActorCritic, params, batch_stats, obs, key, train: bool):
    """Forward in training or eval mode (static `train`). Returns `(logits, value, batch_stats)`."""
    if train:
        return apply_train(network, params, batch_stats, obs, key)
    logits, value = apply_eval(network, params, batch_stats, obs)
    return logits, value, batch_stats


def apply_values(network: ActorCritic, params, batch_stats, obs, next_obs, key, train: bool, passes: int = 2):
    """`(V(obs), V(next_obs), batch_stats)` for GAE. `passes=2`: two forwards, obs then next_obs, as torchrl's
    GAE with `deactivate_vmap=True` calls the critic (docs/semantics.md §6.4): in training mode each half is normalised
    with its own batch statistics and dropout mask, and the running statistics are updated twice, obs first.
    `passes=1`: one forward over `concat([obs, next_obs])` (one set of batch statistics, one update). In eval
    mode both give the same values."""
    if passes == 1:
        n = obs.shape[0]
        _, v, batch_stats = apply_mode(network, params, batch_stats, jnp.concatenate([obs, next_obs]), key, train)
        return v[:n], v[n:], batch_stats
    k_obs, k_next = jax.random.split(key)
    _, values, batch_stats = apply_mode(network, params, batch_stats, obs, k_obs, train)
    _, next_values, batch_stats = apply_mode(network, params, batch_stats, next_obs, k_next, train)
    return values, next_values, batch_stats


def apply_loss_forward(network: ActorCritic, params, batch_stats, obs, key, trunk_passes: int = 1):
    """Training-mode `(logits, values, batch_stats)` for the PPO loss. `trunk_passes=2`: ClipPPOLoss's
    structure (docs/semantics.md §6.4), the shared trunk run once for the actor (logits) and once for the critic
    (values), each with its own dropout mask and running-stat update, actor first. `trunk_passes=1`: one pass, one
    mask, one update (the same loss and gradient when dropout is off; the running statistics differ)."""
    if trunk_passes == 1:
        return apply_train(network, params, batch_stats, obs, key)
    k_actor, k_critic = jax.random.split(key)
    logits, _, batch_stats = apply_train(network, params, batch_stats, obs, k_actor)
    _, values, batch_stats = apply_train(network, params, batch_stats, obs, k_critic)
    return logits, values, batch_stats


def policy(logits) -> distrax.Categorical:
    return distrax.Categorical(logits=logits)


def num_params(params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))
