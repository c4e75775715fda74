"""Subprocess side of tests/train/test_parallel.py (device counts are fixed when JAX starts, so each check
runs in a fresh interpreter with `XLA_FLAGS=--xla_force_host_platform_device_count=N`).

    python -m tests.support.parallel_worker devices OUT.json            # 1 vs 1-device mesh vs 4 devices, envs sharded
    python -m tests.support.parallel_worker seeds OUT.json RUN_ROOT     # num_seeds=4 over 4 devices via train(), resume
    python -m tests.support.parallel_worker process OUT.json ARGS...    # one process of a jax.distributed run
    python -m tests.support.parallel_worker walkforward OUT.json ROOT   # walk-forward agents: 1 device vs sharded

Each mode writes its measurements as JSON; the test asserts on them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys

# A tiny trainer: 8 lanes x 8 steps = 64 frames per iteration, 2 epochs x 4 minibatches of 16.
TINY = [
    "env.test_split_start=2024-01-21 20:00",
    "env.window_sizes=[8]",
    "env.num_envs=8",
    "collector.frames_per_batch=64",
    "loss.mini_batch_size=16",
    "loss.ppo_epochs=2",
    "model.hidden_size=16",
    "model.num_layers=2",
    "logger.backend=none",
    "logger.progress=false",
]
ITERS = 3


def _max_abs(a, b) -> float:
    import jax
    import numpy as np

    errs = [
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)), initial=0.0))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    ]
    return max(errs, default=0.0)


def _max_rel(a, b) -> float:
    import jax
    import numpy as np

    errs = []
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        errs.append(float(np.max(np.abs(x - y) / np.maximum(np.abs(x), 1e-12), initial=0.0)))
    return max(errs, default=0.0)


def _ints_equal(a, b) -> bool:
    import jax
    import numpy as np

    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
        if not np.issubdtype(np.asarray(x).dtype, np.floating)
    )


def _run_fns(cfg, setup, mesh, iters=ITERS):
    """`iters` jitted iterations on `mesh` (None: the single-device program); host copies of the end state."""
    import jax

    from train.ppo import make_train

    fns = make_train(cfg, setup.train.env, mesh)
    keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), int(cfg.num_seeds))
    env_params, keys = fns.place_inputs(setup.train.params, keys)
    runner = fns.init(env_params, keys)
    metrics = []
    for _ in range(iters):
        runner, m = fns.iteration(env_params, runner)
        metrics.append(fns.to_host(m))
    return fns, fns.to_host(runner), metrics


def _network_outputs(fns, state, obs):
    """Seed 0's logits and values on `obs [N, obs_dim]`, in training mode (batch statistics) and eval mode."""
    import jax

    from train.networks import apply_eval, apply_train

    params = jax.tree.map(lambda x: x[0], state.train.params)
    stats = jax.tree.map(lambda x: x[0], state.train.batch_stats)
    logits_t, value_t, _ = apply_train(fns.network, params, stats, obs, jax.random.PRNGKey(7))
    logits_e, value_e = apply_eval(fns.network, params, stats, obs)
    return {"train": (logits_t, value_t), "eval": (logits_e, value_e)}


def _metrics_max_rel(base_metrics, other_metrics) -> float:
    """Largest relative difference of the per-iteration, per-seed metrics (finite ones)."""
    import numpy as np

    keys = sorted(k for k in base_metrics[0] if k != "train/finite")
    worst = 0.0
    for a, b in zip(base_metrics, other_metrics, strict=True):
        x = np.asarray([a[k] for k in keys], np.float64)
        y = np.asarray([b[k] for k in keys], np.float64)
        f = np.isfinite(x)
        worst = max(worst, float(np.max(np.abs(x[f] - y[f]) / np.maximum(np.abs(x[f]), 1e-6), initial=0.0)))
    return worst


def _per_iteration(cfg, setup, fns1, fns4, iters=ITERS) -> list[dict]:
    """From the 1-device run's state after each iteration, one more iteration on 1 and on 4 devices: the
    difference one iteration makes (float32 reduction order only), before any compounding."""
    import jax

    keys = jax.random.split(jax.random.PRNGKey(int(cfg.seed)), int(cfg.num_seeds))
    env1, keys1 = fns1.place_inputs(setup.train.params, keys)
    env4, _ = fns4.place_inputs(setup.train.params, keys)
    runner = fns1.init(env1, keys1)
    out = []
    for _ in range(iters):
        one, m1 = fns1.iteration(env1, runner)
        four, m4 = fns4.iteration(env4, fns4.place_runner(jax.device_get(runner)))
        a, b = fns1.to_host(one), fns4.to_host(four)
        out.append(
            {
                "params_max_abs": _max_abs(a.train.params, b.train.params),
                "metrics_max_rel": _metrics_max_rel([fns1.to_host(m1)], [fns4.to_host(m4)]),
            }
        )
        runner = one
    return out


def _compare(fns, base, other) -> dict:
    """Distances between two end states of the same run (host copies)."""
    import numpy as np

    obs = base.obs[0]
    out_b, out_o = _network_outputs(fns, base, obs), _network_outputs(fns, other, obs)
    return {
        "params_max_abs": _max_abs(base.train.params, other.train.params),
        "batch_stats_max_abs": _max_abs(base.train.batch_stats, other.train.batch_stats),
        "opt_state_max_abs": _max_abs(base.train.opt_state, other.train.opt_state),
        "outputs_train_max_abs": _max_abs(out_b["train"], out_o["train"]),
        "outputs_eval_max_abs": _max_abs(out_b["eval"], out_o["eval"]),
        "env_state_float_max_rel": _max_rel(base.env_state, other.env_state),
        "env_state_ints_equal": _ints_equal(base.env_state, other.env_state),
        "obs_max_abs": _max_abs(base.obs, other.obs),
        "update_steps_equal": bool(np.array_equal(base.train.update_step, other.train.update_step)),
    }


def mode_devices(out_path: str) -> None:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from tests.support.train_synth import sine_frame
    from train.config import ConfigError, load_config
    from train.data import build_setup
    from train.ppo import make_train

    frame = sine_frame(600)
    cfg = load_config(TINY + [f"collector.total_frames={64 * ITERS}"])
    setup = build_setup(cfg, frame)
    devices = jax.devices()
    fns, base, base_m = _run_fns(cfg, setup, None)
    _, one, one_m = _run_fns(cfg, setup, Mesh(np.asarray(devices[:1]), ("data",)))
    fns4, four, four_m = _run_fns(cfg, setup, Mesh(np.asarray(devices[:4]), ("data",)))
    try:
        make_train(load_config(TINY + ["env.num_envs=6", "collector.frames_per_batch=48"]), setup.train.env, fns4.mesh)
        error = ""
    except ConfigError as err:
        error = str(err)
    result = {
        "num_devices": len(devices),
        "seeds_sharded": fns4.seeds_sharded,
        "one_device_mesh_max_abs": _max_abs(base, one),
        "one_device_mesh_metrics_equal": all(
            np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True)
            for a, b in zip(base_m, one_m, strict=True)
            for k in a
        ),
        "four": dict(_compare(fns, base, four), metrics_max_rel=_metrics_max_rel(base_m, four_m)),
        "four_per_iteration": _per_iteration(cfg, setup, fns, fns4),
        "uneven_error": error,
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1)


def mode_seeds(out_path: str, root: str) -> None:
    import jax
    import numpy as np

    from tests.support.train_synth import sine_frame
    from train.config import load_config
    from train.data import build_setup
    from train.parallel import make_mesh
    from train.ppo import config_from_argv, make_train, train

    data = os.path.join(root, "sine.csv")
    sine_frame(600).to_csv(data)
    args = TINY + [
        f"env.data_path={data}",
        "num_seeds=4",
        f"collector.total_frames={64 * 2}",
        "model.num_layers=1",
        "eval.train_max_steps=30",
        "eval.plots=false",
        "logger.timing_interval=1",
    ]
    cfg = load_config(args + ["parallel.devices=4", f"logger.run_dir={root}/full"])
    setup = build_setup(cfg)
    fns4 = make_train(cfg, setup.train.env, make_mesh(cfg))  # the mesh of parallel.devices=4
    full = train(cfg, setup=setup, fns=fns4)
    fns_base, base, base_m = _run_fns(cfg, setup, None, iters=2)
    # the resume check runs without evaluation and collect timing, and reuses the compiled iteration
    half_args = ["parallel.devices=4", "collector.stop_at_iteration=1", f"logger.run_dir={root}/half"]
    half = train(
        load_config(args + half_args + ["eval.enabled=false", "logger.timing_interval=0"]), setup=setup, fns=fns4
    )
    resumed = train(config_from_argv([f"checkpoint.resume={root}/half"]), setup=setup, fns=fns4)
    two = load_config(args + ["num_seeds=2"])
    fns2 = make_train(two, setup.train.env, fns4.mesh)
    full_host = fns4.to_host(full.runner)
    result = {
        "num_devices": len(jax.devices()),
        "seeds_sharded": fns4.seeds_sharded,
        "seeds_sharded_k2": fns2.seeds_sharded,
        "param_sharding": str(full.runner.train.params["TorchDense_0"]["kernel"].sharding.spec),
        "obs_sharding": str(full.runner.obs.sharding.spec),
        "iterations": [full.iteration, half.iteration, resumed.iteration],
        "eval_keys": sorted(k for k in full.evaluation if k.startswith("eval/reward")),
        "checkpoint": os.path.basename(full.checkpoint or ""),
        "resume_max_abs": _max_abs(full_host, fns4.to_host(resumed.runner)),
        "vs_single_device": _compare(fns_base, base, full_host),
        "train_loss": [float(np.mean(base_m[-1]["train/loss"])), full.metrics["train/loss"]],
    }
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=1)


def mode_process(out_path: str, argv: list[str]) -> None:
    """One process of `python -m train.ppo parallel.distributed=true ...`, plus a checksum of its own copy of
    the final parameters (replicated: every process holds all of them)."""
    import jax
    import numpy as np

    from train import parallel
    from train.ppo import config_from_argv, print_summary, train

    cfg = config_from_argv(argv)
    parallel.initialize(cfg)
    result = train(cfg)
    local = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(result.runner.train.params)]
    digest = hashlib.sha256(b"".join(x.tobytes() for x in local)).hexdigest()
    record = {
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "global_devices": jax.device_count(),
        "local_devices": jax.local_device_count(),
        "iteration": result.iteration,
        "params_sha256": digest,
        "params_sum": float(sum(np.sum(x, dtype=np.float64) for x in local)),
        "train_loss": result.metrics.get("train/loss"),
    }
    with open(out_path, "w") as fh:
        json.dump(record, fh)
    print(
        f"process {record['process_index']}/{record['process_count']}: iteration {record['iteration']}, "
        f"params sha256 {digest[:16]}, sum {record['params_sum']:.9f}, train/loss {record['train_loss']:.6g}"
    )
    if parallel.is_main_process():
        print_summary(cfg, result)


def mode_walkforward(out: str, root: str) -> None:
    """Walk-forward agents (2 windows x 2 seeds = 4) in one program, on one device and sharded over the
    process's devices (agents split over them): per agent, the largest parameter difference."""
    import copy
    import dataclasses

    import numpy as np

    from tests.support.train_synth import sine_frame
    from train import parallel
    from train.walkforward.config import load_settings
    from train.walkforward.program import train_group
    from train.walkforward.run import prepare_windows

    args = [a for a in TINY if not a.startswith("env.test_split_start")] + [
        "num_seeds=2", "collector.total_frames=128", "walkforward.train_days=6", "walkforward.test_days=2",
        "walkforward.num_windows=2", "walkforward.plots=false", "checkpoint.enabled=false",
    ]  # fmt: skip
    settings = load_settings(args + ["parallel.devices=all", f"logger.run_dir={root}/wf"])
    _, windows = prepare_windows(settings, f"{root}/wf", sine_frame(24 * 12))
    results = {}
    for name, mesh in (("one", None), ("sharded", parallel.make_mesh(settings.train))):
        moved = []
        for w in windows:
            c = copy.deepcopy(w.cfg)
            c.logger.run_dir = f"{root}/{name}/w{w.span.index:02d}"
            moved.append(dataclasses.replace(w, cfg=c))
        results[name] = train_group(moved, settings.train, [{}], mesh)[0]
    diffs = [
        _max_abs(results["one"][w][0], results["sharded"][w][0]) for w in range(len(windows))
    ]  # [window][point] -> (params, batch_stats) with a leading seed axis
    import jax

    payload = {
        "devices": jax.device_count(),
        "mesh": parallel.make_mesh(settings.train).size,
        "max_abs_per_window": diffs,
        "finite": bool(all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(results["sharded"]))),
    }
    with open(out, "w") as fh:
        json.dump(payload, fh)


if __name__ == "__main__":
    mode, out = sys.argv[1], sys.argv[2]
    if mode == "devices":
        mode_devices(out)
    elif mode == "seeds":
        mode_seeds(out, sys.argv[3])
    elif mode == "process":
        mode_process(out, sys.argv[3:])
    elif mode == "walkforward":
        mode_walkforward(out, sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")
