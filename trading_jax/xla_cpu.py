"""XLA:CPU helpers of the step: compute-once at phase boundaries, and a cheap hash of the step key.

Neither changes a result; both only change what XLA:CPU compiles (`python -m benchmarks.profile_step`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_once(values, bar: jax.Array):
    """`values` (a pytree), computed once and stored: a phase boundary for XLA:CPU's fusion.

    XLA:CPU fuses cheap elementwise producers into every consumer, so without a boundary each state field's
    kernel re-derives the whole trade logic (a dozen copies per step; `optimization_barrier` is dropped
    before fusion on CPU). A division is "expensive" to XLA and is never duplicated, so dividing by a
    runtime 1.0 (exact in IEEE arithmetic) makes XLA compute each value once. The 1.0 comes from `bar`, an
    index that is never negative, which XLA cannot know. Integer and boolean leaves pass through float32, so
    they must be small codes (|x| < 2**24), as they are in the env.
    """
    one = jnp.where(bar >= 0, 1.0, 2.0)

    def _div(x):
        if jnp.issubdtype(x.dtype, jnp.floating):
            return x / one.astype(x.dtype)
        return (x.astype(jnp.float32) / one.astype(jnp.float32)).astype(x.dtype)

    return jax.tree.map(_div, values)


def mix32(x: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection that spreads every input bit over the output."""
    x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
    x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def random_words(key: jax.Array) -> jax.Array:
    """All the randomness of one step, `[slippage, start, cash]` uint32 words, hashed from the key's bits.

    A key passed to `step` is already a threefry output (from `jax.random.split`), so a cheap hash of its
    bits is as good as a fresh threefry call, and far cheaper on CPU, where `jax.random.bits` lowers to a
    rolled loop that costs more than the rest of the step. Same key, same words.
    """
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    data = data.reshape(-1).astype(jnp.uint32)
    seed = mix32(data[0] ^ mix32(data[1] ^ jnp.uint32(0x9E3779B9)))
    return jnp.stack([seed, mix32(seed ^ jnp.uint32(0x243F6A88)), mix32(seed ^ jnp.uint32(0x85A308D3))])


def unit_float(word: jax.Array) -> jax.Array:
    """Float32 in [0, 1) from the top 23 bits of a uint32 word (as `jax.random.uniform` builds it)."""
    mantissa = (word >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
    return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def uniform_int(word: jax.Array, n: jax.Array) -> jax.Array:
    """Integer in [0, n) from a uint32 word; the modulo bias, below n / 2**32, is negligible here."""
    return (word % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)
