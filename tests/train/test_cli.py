"""`python -m train.ppo` end to end in a subprocess, with a tiny budget, two seeds and offline wandb."""

import os
import subprocess
import sys

import pytest

from tests.support import tb_events
from tests.support.paths import REPO_ROOT
from tests.support.train_synth import sine_frame
from train.loggers import read_metrics

ROOT = str(REPO_ROOT)


@pytest.mark.slow
def test_cli_smoke_run(tmp_path):
    data = tmp_path / "sine.csv"
    sine_frame(500).to_csv(data)
    run_dir = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "train.ppo",
        f"env.data_path={data}",
        "env.test_split_start=2024-01-18",
        "env.window_sizes=[8]",
        "env.train_envs=8",  # TorchTrade's name of env.num_envs
        "collector.frames_per_batch=64",
        "collector.total_frames=192",
        "loss.mini_batch_size=32",
        "model.hidden_size=16",
        "model.num_layers=1",
        "num_seeds=2",
        "eval.train_max_steps=40",
        "logger.mode=offline",
        "logger.backend=[wandb,tensorboard,csv]",
        f"logger.run_dir={run_dir}",
    ]
    cache = tmp_path / "jax-cache"
    env = dict(os.environ, WANDB_SILENT="true", WANDB_DISABLE_GIT="true", TRADING_JAX_COMPILATION_CACHE=str(cache))
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "note: env.train_envs is TorchTrade's name for env.num_envs; using env.num_envs=8" in proc.stderr
    # the header, before anything compiles: where the run writes, on what data, how big, where it logs
    lines = proc.stdout.splitlines()
    assert lines[0] == "trading_jax PPO"
    header = "\n".join(lines[1:8])
    assert f"run dir   {run_dir}" in header and f"data      {data} (train < 2024-01-18 <= test)" in header
    assert "envs      8 x 8 steps = 64 frames per iteration, 3 iterations, 192 frames, 2 seeds" in header
    assert f"tensorboard {run_dir / 'tensorboard'}" in header and f"csv {run_dir / 'metrics.csv'}" in header
    assert f"cache     {cache} (compiled programs)" in header
    assert "compiling the training and evaluation programs: done in" in proc.stdout
    assert any(cache.iterdir()), "the compiled programs were not written to the persistent cache"
    assert "PPO summary" in proc.stdout and "±" in proc.stdout
    records = read_metrics(str(run_dir))
    last = [r for r in records if "train/loss" in r][-1]
    assert last["iteration"] == 3 and "train/reward_seed_std" in last and "eval/reward_seed_std" in last
    assert os.path.isdir(run_dir / "checkpoints" / "ckpt_00000003")
    assert any(name.endswith(".png") for name in os.listdir(run_dir / "plots"))
    assert os.path.isdir(run_dir / "wandb")
    assert [s for s, _ in tb_events.scalars(str(run_dir / "tensorboard"))["train/loss"]] == [64, 128, 192]
    assert "train/loss" in (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert (run_dir / "config.yaml").read_text().count("num_seeds: 2") == 1


def test_cli_bad_key_exits_2_with_the_valid_keys():
    proc = subprocess.run(
        [sys.executable, "-m", "train.ppo", "optim.learning_rate=1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "unknown config key 'optim.learning_rate'" in proc.stderr and "optim.lr" in proc.stderr
