"""Action and observation spaces in gymnax's form.

With gymnax installed these are gymnax's own `spaces.Discrete` / `spaces.Box`, so its wrappers' type checks
pass (`FlattenObservationWrapper` asserts a `Box`). gymnax is an optional (dev) dependency and is imported
only here, when a space is asked for; without it the classes below stand in, with the same attributes and
methods (`n`, `shape`, `dtype`, `low`, `high`, `sample(key)`, `contains(x)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Discrete:
    """The integers `0 .. n - 1`."""

    n: int
    shape: tuple = ()
    dtype: Any = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, self.n, dtype=self.dtype)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return (x >= 0) & (x < self.n)


@dataclass(frozen=True)
class Box:
    """Arrays of `shape` between `low` and `high` (bounds may be infinite)."""

    low: Any
    high: Any
    shape: tuple
    dtype: Any = jnp.float32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.uniform(key, self.shape, minval=self.low, maxval=self.high).astype(self.dtype)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all(x >= self.low) & jnp.all(x <= self.high)


def _gymnax_spaces():
    try:
        from gymnax.environments import spaces
    except ImportError:
        return None
    return spaces


def discrete(n: int):
    """`Discrete(n)`: gymnax's class when it is installed, else the stand-in above."""
    gymnax_spaces = _gymnax_spaces()
    return Discrete(n) if gymnax_spaces is None else gymnax_spaces.Discrete(n)


def box(low, high, shape: tuple, dtype=jnp.float32):
    """`Box(low, high, shape, dtype)`: gymnax's class when it is installed, else the stand-in above."""
    gymnax_spaces = _gymnax_spaces()
    cls = Box if gymnax_spaces is None else gymnax_spaces.Box
    return cls(low, high, tuple(shape), dtype)
