"""Scale-out with JAX's own machinery: a device mesh, `jax.jit` with `NamedSharding`, `jax.distributed`.

Design (see `train/SCALING.md`): the trainer's program is written for the global batch, and `jax.jit`
partitions it (GSPMD) over a 1-D mesh whose axis is named `"data"`:

* **envs sharded** (default): every `[K, N, ...]` leaf of the runner state (env states, observations,
  episode accumulators) and every rollout is split over the `N` env lanes; params, BatchNorm statistics,
  optimiser state, the RNG key and the iteration counter are replicated. Because the loss is a mean over
  the global minibatch and BatchNorm's moments are means over the global batch, XLA inserts the
  all-reduces itself: the gradients are averaged across devices inside the jitted update and the
  BatchNorm batch statistics are synced. Nothing in the maths changes, so an N-device run equals the
  1-device run up to float32 reduction order.
* **seeds sharded**: with `num_seeds=K`, K a multiple of the device count, the seed axis is split
  instead (each device trains K / D whole agents; no communication except the metrics).
* **one device in total**: no mesh at all; `make_train` builds exactly the program it always did.

Multi-process: `initialize(cfg)` calls `jax.distributed.initialize`; the mesh then spans the devices of
every process (process-major, so each process owns a contiguous block of env lanes) and every process runs
the same jitted programs on its own shards. Host inputs become global arrays through
`jax.make_array_from_callback` (each process fills only its addressable shards); `to_host` brings state
back (a collective when a leaf is split across processes). Only process 0 logs, evaluates and writes.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from train.config import ConfigError, requested_devices

DATA_AXIS = "data"
ENV_VARS = {"num_processes": "JAX_NUM_PROCESSES", "process_id": "JAX_PROCESS_ID"}


# --------------------------------------------------------------------------------------- processes
def initialize(cfg) -> bool:
    """`jax.distributed.initialize` when `parallel.distributed=true` (once; before any JAX computation).

    Explicit config keys win; unset ones come from `$JAX_COORDINATOR_ADDRESS` (read by JAX itself),
    `$JAX_NUM_PROCESSES`, `$JAX_PROCESS_ID`, then JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU,
    Kubernetes). Returns True if this call initialised the runtime.
    """
    p = cfg.parallel
    if not p.distributed or jax.distributed.is_initialized():
        return False
    kwargs: dict[str, Any] = {}
    if p.coordinator_address:
        kwargs["coordinator_address"] = str(p.coordinator_address)
    for key, var in ENV_VARS.items():
        value = getattr(p, key)
        if value is None and os.environ.get(var, "").strip():
            try:
                value = int(os.environ[var])
            except ValueError:
                raise ConfigError(f"${var}={os.environ[var]!r} is not an integer (parallel.{key})") from None
        if value is not None:
            kwargs[key] = int(value)
    # XLA:CPU needs a cross-process collectives backend; it must be chosen before the CPU client exists.
    jax.config.update("jax_cpu_collectives_implementation", str(p.cpu_collectives))
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(
            f"parallel.distributed=true: {str(err).rstrip('.')}. Set parallel.coordinator_address=HOST:PORT, "
            "parallel.num_processes and parallel.process_id (or $JAX_COORDINATOR_ADDRESS, $JAX_NUM_PROCESSES, "
            "$JAX_PROCESS_ID), or launch under SLURM / Open MPI / a TPU slice, which JAX detects."
        ) from None
    return True


def is_main_process() -> bool:
    """Process 0 logs, evaluates, prints and writes checkpoints."""
    return jax.process_index() == 0


# --------------------------------------------------------------------------------------- mesh
def mesh_devices(cfg) -> list:
    """The devices of the run: `parallel.devices` local devices of every process, process-major."""
    want = requested_devices(cfg)
    local = jax.local_devices()
    n = len(local) if want is None else want
    if n > len(local):
        hint = (
            " (on CPU, start Python with XLA_FLAGS=--xla_force_host_platform_device_count=N)"
            if local[0].platform == "cpu"
            else ""
        )
        raise ConfigError(
            f"parallel.devices={n}, but process {jax.process_index()} has only {len(local)} local "
            f"{local[0].platform} device(s){hint}; use parallel.devices=all or a smaller number"
        )
    by_process: dict[int, list] = {}
    for d in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(d.process_index, []).append(d)
    counts = {p: len(ds) for p, ds in by_process.items()}
    if min(counts.values()) < n:
        raise ConfigError(f"parallel.devices={n}: some process has fewer local devices ({counts})")
    return [d for p in sorted(by_process) for d in by_process[p][:n]]


def make_mesh(cfg) -> Mesh | None:
    """A 1-D `Mesh` over `mesh_devices(cfg)` with axis `"data"`, or None for a single device in total."""
    devices = mesh_devices(cfg)
    if len(devices) == 1:
        return None
    return Mesh(np.asarray(devices, dtype=object), (DATA_AXIS,))


def seeds_sharded(num_seeds: int, mesh: Mesh | None) -> bool:
    """Shard the seed axis (instead of the env axis) when K is a multiple of the device count."""
    return mesh is not None and num_seeds % mesh.size == 0


def sharding(mesh: Mesh, *spec) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(*spec))


def describe(mesh: Mesh | None, num_seeds: int) -> str:
    if mesh is None:
        return "1 device"
    what = "seeds" if seeds_sharded(num_seeds, mesh) else "envs"
    procs = len({d.process_index for d in mesh.devices.flat})
    where = f" in {procs} processes" if procs > 1 else ""
    return f"{mesh.size} {mesh.devices.flat[0].platform} devices{where}, {what} sharded"


# --------------------------------------------------------------------------------------- host <-> global
def _is_sharding(x) -> bool:
    return isinstance(x, jax.sharding.Sharding)


def put_global(tree, shardings):
    """Host values (the same on every process) -> global `jax.Array`s with `shardings` (a sharding, or a
    pytree prefix of `tree` whose leaves are shardings). Each process fills only its addressable shards."""

    def put(x, s):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise TypeError("put_global expects raw key data, not typed PRNG keys")
        host = np.asarray(jax.device_get(x))
        return jax.make_array_from_callback(host.shape, s, lambda idx: host[idx])

    if _is_sharding(shardings):
        return jax.tree.map(lambda x: put(x, shardings), tree)
    return jax.tree.map(lambda s, sub: jax.tree.map(lambda x: put(x, s), sub), shardings, tree, is_leaf=_is_sharding)


_GATHER: dict = {}


def to_host(tree, mesh: Mesh | None = None):
    """The whole value of every leaf as NumPy. Leaves split across processes are gathered with one
    replicating jit over `mesh`: a collective, so every process must call this at the same point."""
    leaves, treedef = jax.tree.flatten(tree)
    remote = [
        i
        for i, x in enumerate(leaves)
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated
    ]
    if remote:
        if mesh is None:
            raise ValueError("to_host: leaves span several processes; pass the mesh")
        if mesh not in _GATHER:
            _GATHER[mesh] = jax.jit(lambda xs: xs, out_shardings=sharding(mesh))
        gathered = _GATHER[mesh]([leaves[i] for i in remote])
        for i, x in zip(remote, gathered, strict=True):
            leaves[i] = x
    out = []
    for x in leaves:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            x = x.addressable_data(0)  # fully replicated: this process's own copy
        out.append(np.asarray(jax.device_get(x)))
    return jax.tree.unflatten(treedef, out)


def first_value(x):
    """A scalar from this process's first shard of `x` (e.g. the iteration counter, equal on all seeds)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(jax.device_get(x)).reshape(-1)[0]
