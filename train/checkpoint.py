"""Checkpoints of the whole training state, written atomically (flax msgpack serialization).

A checkpoint holds every leaf of the runner state (network params, BatchNorm statistics, optimiser state,
update counter, env states, last observations, episode accumulators, RNG key, iteration), plus the config
(YAML) and a small JSON meta block. Restoring into a template state of the same structure continues the
run exactly: N iterations give the same parameters as N/2, save, restore, N/2 more.

Layout: `<run_dir>/checkpoints/ckpt_<iteration:08d>.msgpack` and `<run_dir>/checkpoints/latest` (a text
file naming the newest one). Every write goes to a temporary file in the same folder, then `os.replace`.
"""

from __future__ import annotations

import json
import os
import tempfile

import jax
import numpy as np
from flax import serialization

FORMAT = 1
CKPT_DIR = "checkpoints"
LATEST = "latest"


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _leaf_to_numpy(x) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def save_checkpoint(
    run_dir: str,
    state,
    *,
    iteration: int,
    config_yaml: str,
    meta: dict | None = None,
    policy: dict | None = None,
    keep: int = 3,
) -> str:
    """Write `state` (any pytree) as checkpoint `iteration`; keep the newest `keep`. Returns its path.

    `policy` (optional): `{"params", "batch_stats"}` nested dicts, stored by name so that
    `train.evaluate` can load the network without rebuilding the training state.
    """
    leaves = jax.tree.leaves(state)
    payload = {
        "format": FORMAT,
        "iteration": int(iteration),
        "config": config_yaml,
        "meta": json.dumps(meta or {}),
        "treedef": str(jax.tree.structure(state)),
        "leaves": {str(i): _leaf_to_numpy(x) for i, x in enumerate(leaves)},
    }
    if policy is not None:
        payload["policy"] = serialization.to_state_dict(jax.tree.map(_leaf_to_numpy, policy))
    folder = os.path.join(run_dir, CKPT_DIR)
    path = os.path.join(folder, f"ckpt_{int(iteration):08d}.msgpack")
    _atomic_write(path, serialization.msgpack_serialize(payload))
    _atomic_write(os.path.join(folder, LATEST), os.path.basename(path).encode())
    old = sorted(f for f in os.listdir(folder) if f.startswith("ckpt_") and f.endswith(".msgpack"))
    for name in old[:-keep] if keep > 0 else []:
        if name != os.path.basename(path):
            os.unlink(os.path.join(folder, name))
    return path


def latest_checkpoint(path: str) -> str:
    """Resolve a run directory, its `checkpoints/` folder, or a checkpoint file to a checkpoint file."""
    if os.path.isfile(path):
        return path
    for folder in (os.path.join(path, CKPT_DIR), path):
        pointer = os.path.join(folder, LATEST)
        if os.path.isfile(pointer):
            with open(pointer) as fh:
                name = fh.read().strip()
            full = os.path.join(folder, name)
            if os.path.isfile(full):
                return full
        if os.path.isdir(folder):
            found = sorted(f for f in os.listdir(folder) if f.startswith("ckpt_") and f.endswith(".msgpack"))
            if found:
                return os.path.join(folder, found[-1])
    raise FileNotFoundError(f"no checkpoint found at {path!r} (expected <run_dir>/{CKPT_DIR}/ckpt_*.msgpack)")


def load_checkpoint(path: str) -> dict:
    """The raw checkpoint: `{"iteration", "config" (YAML str), "meta" (dict), "treedef", "leaves" (list)}`."""
    path = latest_checkpoint(path)
    with open(path, "rb") as fh:
        payload = serialization.msgpack_restore(fh.read())
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path}: unknown checkpoint format {payload.get('format')!r}")
    leaves = payload["leaves"]
    payload["leaves"] = [leaves[str(i)] for i in range(len(leaves))]
    payload["meta"] = json.loads(payload["meta"])
    payload["path"] = path
    return payload


def restore_state(template, ckpt: dict):
    """Put the checkpoint's leaves into a pytree shaped like `template` (checks structure, shapes, dtypes)."""
    t_leaves, treedef = jax.tree.flatten(template)
    leaves = ckpt["leaves"]
    where = ckpt.get("path", "checkpoint")
    if len(leaves) != len(t_leaves) or str(treedef) != ckpt["treedef"]:
        raise ValueError(
            f"{where}: its state structure ({len(leaves)} arrays) does not match this config's "
            f"({len(t_leaves)} arrays). Resume with the run's own config (shapes: env.num_envs, num_seeds, "
            "model.*, collector.frames_per_batch, data windows must not change)."
        )
    out = []
    for i, (t, x) in enumerate(zip(t_leaves, leaves, strict=True)):
        is_key = isinstance(t, jax.Array) and jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key)
        # shapes and dtypes only: `t` may be a global array spanning several processes
        t_shape = jax.random.key_data(t).shape if is_key else np.shape(t)
        t_dtype = jax.random.key_data(t).dtype if is_key else np.dtype(getattr(t, "dtype", None) or np.asarray(t).dtype)
        if tuple(x.shape) != tuple(t_shape) or x.dtype != t_dtype:
            raise ValueError(
                f"{where}: array {i} has shape {x.shape} {x.dtype}, this config expects {t_shape} {t_dtype}. "
                "Resume with the run's own config."
            )
        out.append(jax.random.wrap_key_data(x) if is_key else jax.numpy.asarray(x))
    return jax.tree.unflatten(treedef, out)
