"""Checkpoints of the whole training state on orbax-checkpoint's `CheckpointManager`, with an integrity check.

A checkpoint holds every leaf of the runner state (network params, BatchNorm statistics, optimiser state,
update counter, env states, last observations, episode accumulators, RNG key, iteration), a policy block
(`{"params", "batch_stats"}` by name, for `train.evaluate`) and a JSON manifest: the iteration, the config
(YAML text), a meta block, the state's tree structure, each leaf's path, shape and dtype, and the SHA-256 of
the state, of the policy and of the manifest itself. Restoring into a template state of the same structure
continues the run exactly: N iterations give the same parameters as N/2, save, restore, N/2 more.

Layout: `<run_dir>/checkpoints/ckpt_<iteration:08d>/` (orbax step folders: `manifest/`, `state/`,
`policy/`). orbax writes each into a temporary folder and renames it when complete (atomic), keeps the
newest `checkpoint.keep` (`max_to_keep`), writes in a background thread (`CheckpointWriter`, async) and
removes the temporary folders of an interrupted write when the next writer opens the directory.

Integrity: `load_checkpoint` recomputes the hashes; a truncated or altered file (an orbax read error or a
hash that differs) marks the checkpoint damaged. Given a run directory it falls back to the newest intact
checkpoint with a `RunWarning` naming each damaged one; with none left it raises `CheckpointError`.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import sys
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

from train.errors import RunWarning
from train.rundir import CKPT_DIR

FORMAT = 2
PREFIX = "ckpt"
ITEMS = ("manifest", "state", "policy")
logging.getLogger("absl").setLevel(logging.ERROR)  # orbax's progress notes and read-only notices


class CheckpointError(ValueError):
    """No usable checkpoint where one was expected; the message names the path and what is wrong."""


class NoCheckpointError(CheckpointError):
    """Not a single (complete) checkpoint where one was expected."""


# --------------------------------------------------------------------------------------- arrays and hashes
def _leaf_to_numpy(x) -> np.ndarray:
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.asarray(jax.device_get(x))


def _leaf_name(i: int) -> str:
    return f"leaf_{i:06d}"


def tree_sha256(tree) -> str:
    """SHA-256 over every leaf's path, dtype, shape and bytes (the tree's own order)."""
    h = hashlib.sha256()
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.ascontiguousarray(x)
        h.update(f"{jax.tree_util.keystr(path)}|{x.dtype.str}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def _manifest_sha256(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _manifest(state: dict, policy, template, iteration: int, config_yaml: str, meta: dict | None) -> dict:
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(template)[0]]
    manifest = {
        "format": FORMAT,
        "iteration": int(iteration),
        "config": config_yaml,
        "meta": meta or {},
        "treedef": str(jax.tree.structure(template)),
        "leaves": [[p, list(x.shape), x.dtype.str] for p, x in zip(paths, state.values(), strict=True)],
        "state_sha256": tree_sha256(state),
        "policy_sha256": None if policy is None else tree_sha256(policy),
    }
    manifest["manifest_sha256"] = _manifest_sha256(manifest)
    return manifest


# --------------------------------------------------------------------------------------- writing
def _options(keep: int = 0, read_only: bool = False, use_async: bool = False) -> ocp.CheckpointManagerOptions:
    return ocp.CheckpointManagerOptions(
        max_to_keep=keep or None,
        read_only=read_only,
        create=False,  # the writer creates the folder (orbax cannot with `active_processes`)
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=use_async,
        step_prefix=PREFIX,
        step_format_fixed_length=8,
        # only the process that calls it writes (process 0 of a multi-process run, after gathering the state)
        multiprocessing_options=ocp.options.MultiprocessingOptions(
            primary_host=jax.process_index(), active_processes={jax.process_index()}
        ),
    )


def step_path(run_dir: str, iteration: int) -> str:
    return os.path.join(run_dir, CKPT_DIR, f"{PREFIX}_{int(iteration):08d}")


class CheckpointWriter:
    """The checkpoints of one run directory: `save` (async by default: the write overlaps the next
    iterations; a later `save`, `wait` or `close` waits for it), `discard_after` (on resume), `close`."""

    def __init__(self, run_dir: str, keep: int = 3, use_async: bool = True):
        self.run_dir = run_dir
        self.folder = os.path.join(run_dir, CKPT_DIR)
        os.makedirs(self.folder, exist_ok=True)
        self._mngr = ocp.CheckpointManager(self.folder, options=_options(keep, use_async=use_async), item_names=ITEMS)

    def discard_after(self, iteration: int) -> list[str]:
        """Delete the checkpoints past `iteration` (damaged ones a resume skipped); returns their paths."""
        gone = [s for s in self._mngr.all_steps() if s > int(iteration)]
        for s in gone:
            self._mngr.delete(s)
        return [step_path(self.run_dir, s) for s in gone]

    def save(self, state, *, iteration: int, config_yaml: str, meta: dict | None = None, policy=None) -> str:
        """Write `state` (any pytree) as checkpoint `iteration`. Returns its path (complete after `wait`)."""
        leaves = [_leaf_to_numpy(x) for x in jax.tree.leaves(state)]
        flat = {_leaf_name(i): x for i, x in enumerate(leaves)}
        policy = None if policy is None else jax.tree.map(_leaf_to_numpy, policy)
        manifest = _manifest(flat, policy, state, iteration, config_yaml, meta)
        items = {"manifest": ocp.args.JsonSave(manifest), "state": ocp.args.StandardSave(flat)}
        if policy is not None:
            items["policy"] = ocp.args.StandardSave(policy)
        self._mngr.save(int(iteration), args=ocp.args.Composite(**items), force=True)
        return step_path(self.run_dir, iteration)

    def wait(self) -> None:
        self._mngr.wait_until_finished()

    def close(self) -> None:
        self._mngr.close()  # waits for a pending write


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
    """Write one checkpoint synchronously (`CheckpointWriter` for a run's series). Returns its path."""
    writer = CheckpointWriter(run_dir, keep, use_async=False)
    try:
        return writer.save(state, iteration=iteration, config_yaml=config_yaml, meta=meta, policy=policy)
    finally:
        writer.close()


# --------------------------------------------------------------------------------------- reading
def checkpoint_paths(path: str) -> list[str]:
    """The checkpoints a path names, newest first: a run directory's (or its `checkpoints/` folder's) step
    folders, or the one step folder given. CheckpointError when there is none."""
    path = os.path.abspath(str(path))
    if os.path.isdir(path) and os.path.basename(os.path.dirname(path)) == CKPT_DIR:
        return [path]
    folder = path if os.path.basename(path) == CKPT_DIR else os.path.join(path, CKPT_DIR)
    steps = []
    if os.path.isdir(folder):
        with _quiet_read():
            steps = ocp.CheckpointManager(folder, options=_options(read_only=True), item_names=ITEMS).all_steps()
    if not steps:
        legacy = glob.glob(os.path.join(glob.escape(folder), f"{PREFIX}_*.msgpack"))
        note = "; its ckpt_*.msgpack files are of the earlier format, which this version cannot read" * bool(legacy)
        raise NoCheckpointError(f"{path}: no checkpoint found (expected {folder}/{PREFIX}_<iteration>/){note}")
    return [os.path.join(folder, f"{PREFIX}_{s:08d}") for s in sorted(steps, reverse=True)]


def latest_checkpoint(path: str) -> str:
    """The newest checkpoint folder of a run directory (not verified: `load_checkpoint` does that)."""
    return checkpoint_paths(path)[0]


def _read(step_dir: str) -> dict:
    """One checkpoint, verified; any failure raises (the caller names the checkpoint)."""
    ckptr = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    have = {name for name in ITEMS if os.path.isdir(os.path.join(step_dir, name))}
    manifest = ckptr.restore(step_dir, args=ocp.args.Composite(manifest=ocp.args.JsonRestore()))["manifest"]
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"unknown checkpoint format {manifest.get('format') if isinstance(manifest, dict) else '?'}")
    if manifest.get("manifest_sha256") != _manifest_sha256(manifest):
        raise ValueError("the manifest's SHA-256 does not match its contents")
    args = {"state": ocp.args.StandardRestore()}
    if manifest["policy_sha256"] is not None:
        if "policy" not in have:
            raise ValueError("the policy block is missing")
        args["policy"] = ocp.args.StandardRestore()
    out = ckptr.restore(step_dir, args=ocp.args.Composite(**args))
    state, policy = dict(out["state"]), out.get("policy") if "policy" in args else None
    if len(state) != len(manifest["leaves"]) or tree_sha256(state) != manifest["state_sha256"]:
        raise ValueError("the state's SHA-256 does not match the manifest")
    if policy is not None and tree_sha256(policy) != manifest["policy_sha256"]:
        raise ValueError("the policy's SHA-256 does not match the manifest")
    return {
        "iteration": int(manifest["iteration"]),
        "config": manifest["config"],
        "meta": manifest["meta"],
        "treedef": manifest["treedef"],
        "leaf_paths": [p for p, _, _ in manifest["leaves"]],
        "leaves": [state[_leaf_name(i)] for i in range(len(state))],
        "policy": policy,
        "path": step_dir,
    }


def _is_damaged_read_leftover(record: logging.LogRecord) -> bool:
    text = record.getMessage()
    return text.startswith("Task exception was never retrieved") and "tensorstore_spec" in text


def _ignore_damaged_read_leftovers() -> None:
    """After a failed read, tensorstore's late callbacks hit orbax's closed event loop (Python reports each
    through `sys.unraisablehook`) and asyncio logs the read tasks nobody awaited any more, each with a
    traceback, some after the read returned. Drop exactly those, for the rest of the process; any other
    unraisable exception goes to the hook in place before, any other asyncio record is logged."""
    hook = sys.unraisablehook
    if getattr(hook, "ignores_closed_loop", False):
        return

    def unraisable(u):
        if not (isinstance(u.exc_value, RuntimeError) and "Event loop is closed" in str(u.exc_value)):
            hook(u)

    unraisable.ignores_closed_loop = True
    sys.unraisablehook = unraisable
    logging.getLogger("asyncio").addFilter(lambda record: not _is_damaged_read_leftover(record))


@contextlib.contextmanager
def _quiet_read():
    """Reading a checkpoint that may be damaged: the damage is reported once, by `load_checkpoint`, not also
    by orbax's log (a parse error) and tensorstore's callbacks."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    _ignore_damaged_read_leftovers()
    try:
        yield
    finally:
        absl.setLevel(level)


def _reason(err: Exception) -> str:
    text = " ".join(str(err).split())
    return (text[:160] + "...") if len(text) > 160 else (text or type(err).__name__)


def load_checkpoint(path: str) -> dict:
    """The newest intact checkpoint at `path` (a run directory, its `checkpoints/` folder, or one checkpoint):
    `{"iteration", "config" (YAML text), "meta", "treedef", "leaf_paths", "leaves", "policy", "path",
    "skipped" (damaged newer checkpoints)}`. A damaged checkpoint is skipped with a `RunWarning`."""
    candidates = checkpoint_paths(path)
    damaged = []
    for i, step_dir in enumerate(candidates):
        try:
            with _quiet_read():
                ckpt = _read(step_dir)
        except Exception as err:  # noqa: BLE001 - whatever orbax or the hash check says: this one is damaged
            damaged.append(f"{step_dir} ({_reason(err)})")
            nxt = f"falling back to {os.path.basename(candidates[i + 1])}" if i + 1 < len(candidates) else "none left"
            warnings.warn(f"checkpoint {step_dir} is damaged ({_reason(err)}); {nxt}", RunWarning, stacklevel=2)
            continue
        ckpt["skipped"] = [c for c in candidates[:i]]
        return ckpt
    raise CheckpointError(f"no intact checkpoint at {path}: " + "; ".join(damaged))


def check_state(template, ckpt: dict) -> None:
    """ValueError unless the checkpoint's state has the structure, shapes and dtypes of `template` (a pytree
    of arrays or `jax.ShapeDtypeStruct`s), naming the first leaf that differs."""
    t_flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    where = ckpt.get("path", "checkpoint")
    hint = (
        "shapes depend on env.num_envs, num_seeds, model.*, collector.frames_per_batch, env.window_sizes, "
        "env.time_frames and the features: resume with the run's own values"
    )
    if len(ckpt["leaves"]) != len(t_flat) or str(treedef) != ckpt["treedef"]:
        raise ValueError(
            f"{where}: its state has {len(ckpt['leaves'])} arrays of another structure than this config's "
            f"{len(t_flat)}; {hint}"
        )
    for i, ((path, t), x) in enumerate(zip(t_flat, ckpt["leaves"], strict=True)):
        is_key = jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key)
        # shapes and dtypes only: `t` may be a global array spanning several processes
        t_shape = jax.random.key_data(t).shape if is_key and isinstance(t, jax.Array) else tuple(t.shape)
        t_dtype = np.dtype(jax.random.key_data(t).dtype if is_key and isinstance(t, jax.Array) else t.dtype)
        if tuple(x.shape) != tuple(t_shape) or x.dtype != t_dtype:
            name = ckpt.get("leaf_paths", [None] * (i + 1))[i] or jax.tree_util.keystr(path)
            raise ValueError(
                f"{where}: state{name} has shape {tuple(x.shape)} {x.dtype}, this config gives {tuple(t_shape)} "
                f"{t_dtype}; {hint}"
            )


def restore_state(template, ckpt: dict):
    """Put the checkpoint's leaves into a pytree shaped like `template` (checks structure, shapes, dtypes)."""
    check_state(template, ckpt)
    t_leaves, treedef = jax.tree.flatten(template)
    out = []
    for t, x in zip(t_leaves, ckpt["leaves"], strict=True):
        is_key = isinstance(t, jax.Array) and jax.dtypes.issubdtype(t.dtype, jax.dtypes.prng_key)
        out.append(jax.random.wrap_key_data(x) if is_key else jax.numpy.asarray(x))
    return jax.tree.unflatten(treedef, out)
