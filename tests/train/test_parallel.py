"""Scale-out (issue 6): data-parallel PPO over a device mesh, seeds over devices, two processes.

Device counts are fixed when JAX starts, so the multi-device checks run `tests.support.parallel_worker` in
fresh interpreters with `XLA_FLAGS=--xla_force_host_platform_device_count=4` (fake CPU devices) and assert on
the JSON it writes. The two-process check runs two `jax.distributed` processes on localhost with gloo.

Equivalence tolerance (float32 reduction order). Sharding does not change the maths of the program, only how
its batch sums are associated: per-device partial sums, then an all-reduce, for the loss, the gradients and
the BatchNorm moments (~1 ulp per sum). Measured on a 2-core x86 CPU (jax 0.10.2), the worker's tiny config,
4 devices vs 1: envs sharded, 3 iterations (24 Adam updates): params 8.3e-6, BatchNorm statistics 2.3e-5,
network outputs 1.5e-7 (training mode) and 3.6e-6 (eval mode), metrics 1.5e-6 relative; seeds sharded
(num_seeds=4), 2 iterations: params 2.2e-5, BatchNorm statistics 6.6e-5, outputs 1.5e-7 / 4.1e-6. The
rollouts (env states, observations, hence every sampled action) are bit-identical in both. The largest
parameter differences sit in directions whose exact gradient is zero: the Dense biases in front of BatchNorm
(BatchNorm subtracts them) and the weights of constant input features. There the gradient is pure round-off,
which Adam rescales into steps of up to lr = 2.5e-4 each, without changing the network's function; the
BatchNorm running means follow those biases. Hence the bounds below: 1e-4 (0.4 lr) on parameters and
BatchNorm statistics, 1e-5 on training-mode outputs, 5e-5 on eval-mode outputs, 1e-4 relative on the logged
metrics.

"The same as one device" is a per-iteration statement (train/SCALING.md): one iteration from the same state on 4
devices and on 1 differs by reduction order only (measured: params 1.8e-5, 2.7e-6, 4.7e-7 for iterations 1-3,
metrics 2.1e-6 relative); over a run the differences compound (a probe saw 0.44 relative on a metric after 8
iterations on 2 devices), so long runs are compared statistically, not value by value.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from tests.support.paths import REPO_ROOT
from tests.support.train_synth import sine_frame
from train import parallel
from train.checkpoint import save_checkpoint
from train.config import ConfigError, load_config, to_yaml, valid_keys
from train.loggers import read_metrics
from train.ppo import config_from_argv

ROOT = str(REPO_ROOT)
WORKER_MODULE = "tests.support.parallel_worker"  # run with cwd=ROOT, where the `tests` package is importable

PARAMS_ATOL = 1e-4  # float32 reduction order, amplified by Adam in zero-gradient directions (see module doc)
BATCH_STATS_ATOL = 1e-4
OUTPUTS_TRAIN_ATOL = 1e-5
OUTPUTS_EVAL_ATOL = 5e-5
METRICS_RTOL = 1e-4


def _env(devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "XLA_", "SLURM_", "OMPI_"))}
    env.update(
        XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
        JAX_PLATFORMS="cpu",
        WANDB_SILENT="true",
    )
    return env


def _worker(mode: str, out, *args, devices: int = 4, timeout: int = 300) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", WORKER_MODULE, mode, str(out), *map(str, args)],
        cwd=ROOT,
        env=_env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.load(open(out))
    result["wall_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=1))  # the measured errors, visible with pytest -s
    return result


def _assert_equivalent(d: dict, metrics: bool = True) -> None:
    assert d["params_max_abs"] <= PARAMS_ATOL, d
    assert d["batch_stats_max_abs"] <= BATCH_STATS_ATOL, d
    assert d["outputs_train_max_abs"] <= OUTPUTS_TRAIN_ATOL, d
    assert d["outputs_eval_max_abs"] <= OUTPUTS_EVAL_ATOL, d
    # the same actions were sampled: env states and observations agree (bit-identical here)
    assert d["env_state_ints_equal"] and d["env_state_float_max_rel"] <= 1e-6 and d["obs_max_abs"] <= 1e-6, d
    assert d["update_steps_equal"], d
    if metrics:
        assert d["metrics_max_rel"] <= METRICS_RTOL, d


# --------------------------------------------------------------------------------------- in-process
def test_parallel_config_keys_and_errors():
    keys = valid_keys()
    for k in ("devices", "distributed", "coordinator_address", "num_processes", "process_id", "cpu_collectives"):
        assert f"parallel.{k}" in keys
    cfg = load_config([])
    assert cfg.parallel.devices == "all" and cfg.parallel.distributed is False
    assert load_config(["parallel.devices=2"]).parallel.devices == 2
    with pytest.raises(ConfigError, match="parallel.devices must be 'all' or a positive number"):
        load_config(["parallel.devices=0"])
    with pytest.raises(ConfigError, match="parallel.devices"):
        load_config(["parallel.devices=many"])
    with pytest.raises(ConfigError, match="parallel.cpu_collectives"):
        load_config(["parallel.cpu_collectives=nccl"])
    with pytest.raises(ConfigError, match="parallel.process_id=2 must be < parallel.num_processes=2"):
        load_config(["parallel.num_processes=2", "parallel.process_id=2"])
    assert parallel.initialize(cfg) is False  # parallel.distributed=false: nothing to do


@pytest.mark.skipif(jax.device_count() != 1, reason="this process has several devices")
def test_one_device_means_no_mesh():
    assert parallel.make_mesh(load_config([])) is None  # the single-device program, unchanged
    assert parallel.make_mesh(load_config(["parallel.devices=1"])) is None
    with pytest.raises(ConfigError, match="xla_force_host_platform_device_count"):
        parallel.make_mesh(load_config(["parallel.devices=2"]))


def test_resume_drops_launch_specific_keys(tmp_path):
    saved = load_config(
        ["parallel.distributed=true", "parallel.num_processes=2", "parallel.process_id=1", "parallel.devices=2"]
    )
    save_checkpoint(str(tmp_path), {"x": np.zeros(1)}, iteration=1, config_yaml=to_yaml(saved))
    cfg = config_from_argv([f"checkpoint.resume={tmp_path}"])
    assert cfg.parallel.distributed is False and cfg.parallel.process_id is None and cfg.parallel.num_processes is None
    assert cfg.parallel.devices == 2  # kept: not launch-specific


# --------------------------------------------------------------------------------------- fake devices
@pytest.mark.slow
def test_four_devices_match_one_device(tmp_path):
    r = _worker("devices", tmp_path / "devices.json")
    assert r["num_devices"] == 4 and not r["seeds_sharded"]
    # a 1-device mesh runs the same program as no mesh: bit-identical state and metrics
    assert r["one_device_mesh_max_abs"] == 0.0 and r["one_device_mesh_metrics_equal"]
    _assert_equivalent(r["four"])  # 4 devices, envs sharded, same global batch, after 3 iterations
    # "the same as one device" is per iteration: one iteration from the same state differs by float32 reduction
    # order only; over a run these differences compound (train/SCALING.md, "What equal means")
    per_iteration = r["four_per_iteration"]
    assert len(per_iteration) == 3
    for d in per_iteration:
        assert d["params_max_abs"] <= PARAMS_ATOL and d["metrics_max_rel"] <= METRICS_RTOL, per_iteration
    assert "env.num_envs=6 does not split over 4 devices" in r["uneven_error"]


@pytest.mark.slow
def test_seeds_sharded_over_devices_train_and_resume(tmp_path):
    r = _worker("seeds", tmp_path / "seeds.json", tmp_path)
    assert r["num_devices"] == 4 and r["seeds_sharded"] and not r["seeds_sharded_k2"]
    assert r["param_sharding"] == "P('data',)" and r["obs_sharding"] == "P('data',)"  # [K, ...] split over seeds
    assert r["iterations"] == [2, 1, 2] and r["checkpoint"] == "ckpt_00000002"
    assert r["eval_keys"] == ["eval/reward", "eval/reward_seed_std"]
    assert r["resume_max_abs"] == 0.0  # 1 iteration + resume 1 == 2 iterations, on the same mesh
    _assert_equivalent(r["vs_single_device"], metrics=False)
    base_loss, sharded_loss = r["train_loss"]
    assert sharded_loss == pytest.approx(base_loss, rel=METRICS_RTOL)


# --------------------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_hold_identical_parameters(tmp_path):
    data = tmp_path / "sine.csv"
    sine_frame(600).to_csv(data)
    run_dir = tmp_path / "run"
    port = _free_port()
    args = [
        f"env.data_path={data}",
        "env.test_split_start=2024-01-21T20:00",
        "env.window_sizes=[8]",
        "env.num_envs=8",
        "collector.frames_per_batch=64",
        "collector.total_frames=192",
        "loss.mini_batch_size=16",
        "loss.ppo_epochs=2",
        "model.hidden_size=16",
        "model.num_layers=1",
        "eval.train_max_steps=40",
        "eval.plots=false",
        "logger.backend=none",
        "logger.progress=false",
        "logger.timing_interval=0",
        f"logger.run_dir={run_dir}",
        "parallel.distributed=true",
        f"parallel.coordinator_address=127.0.0.1:{port}",
        "parallel.num_processes=2",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "process", str(tmp_path / f"process_{i}.json"),
             *args, f"parallel.process_id={i}"],  # fmt: skip
            cwd=ROOT,
            env=_env(1),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=300)
            outputs.append((p.returncode, out, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (rc, out, err) in enumerate(outputs):
        print(f"--- process {i} (exit {rc})\n{out}")
        assert rc == 0, err[-4000:]
    a, b = (json.load(open(tmp_path / f"process_{i}.json")) for i in range(2))
    assert (a["process_index"], b["process_index"]) == (0, 1)
    assert a["process_count"] == b["process_count"] == 2 and a["global_devices"] == 2 and a["local_devices"] == 1
    assert a["iteration"] == b["iteration"] == 3
    assert a["params_sha256"] == b["params_sha256"]  # each process's own copy of the replicated parameters
    assert a["train_loss"] == b["train_loss"]
    # only process 0 logs, evaluates, prints and writes checkpoints
    records = read_metrics(str(run_dir))
    assert records[0]["parallel/processes"] == 2 and records[0]["parallel/devices"] == 2
    train_records = [r for r in records if "train/loss" in r]
    assert [r["iteration"] for r in train_records] == [1, 2, 3]
    assert "eval/reward" in train_records[-1]
    assert os.path.isdir(run_dir / "checkpoints" / "ckpt_00000003")
    assert "PPO summary" in outputs[0][1] and "PPO summary" not in outputs[1][1]


@pytest.mark.slow
def test_walkforward_agents_sharded_over_devices_match_one_device(tmp_path):
    """Walk-forward's one program (2 windows x 2 seeds = 4 agents) with the agents split over 2 devices: every
    agent's parameters are those of the single-device program, within float reduction order."""
    d = _worker("walkforward", tmp_path / "wf.json", tmp_path, devices=2)
    assert d["devices"] == 2 and d["mesh"] == 2 and d["finite"]
    assert len(d["max_abs_per_window"]) == 2 and max(d["max_abs_per_window"]) < PARAMS_ATOL, d
