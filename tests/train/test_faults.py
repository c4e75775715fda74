"""Crash safety (issue 11): `kill -9` a training run inside an iteration and inside a checkpoint write, resume
it each time, and it ends with the parameters of an uninterrupted run and each iteration logged once.

Every run is `python -m train.ppo` in a subprocess (`tests.support.fault_worker` adds a pause point where the
test kills it, chosen by a seeded generator). The runs share JAX's persistent compilation cache, so only the
first one compiles; the rest cost the interpreter and JAX start-up (~10 s each on 2 cores).
"""

import os
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.support.paths import REPO_ROOT
from train.checkpoint import CKPT_DIR, load_checkpoint
from train.loggers import read_metrics

ITERS = 8  # checkpoints after iterations 2, 4, 6, 8 (eval.test_interval=128 frames); keep 2
SEED = 11


def _args(tiny_args, run_dir) -> list[str]:
    """The session's tiny trainer (tests/train/conftest.py), 8 iterations of a smaller program, no evaluation."""
    return [
        *tiny_args,
        f"collector.total_frames={64 * ITERS}",
        "loss.mini_batch_size=32",
        "loss.ppo_epochs=1",
        "model.num_layers=1",
        "eval.enabled=false",
        "checkpoint.keep=2",
        "logger.timing_interval=0",
        f"logger.run_dir={run_dir}",
    ]


def _env(cache, pause: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "FAULT_"))}
    env.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        TRADING_JAX_COMPILATION_CACHE=str(cache),
    )
    if pause:
        env["FAULT_PAUSE"] = pause
    return env


def _start(args, env) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.support.fault_worker", *args]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout=600) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    assert "Traceback" not in err, err[-3000:]
    return proc.returncode, err


def _kill_at_pause(proc, timeout=600) -> str:
    """Wait for the worker's `PAUSE ...` line, then `kill -9` it."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sel.select(timeout=1.0):
            line = proc.stdout.readline()
            if line.startswith("PAUSE"):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return line.strip()
            if not line:
                break
    proc.kill()
    raise AssertionError(f"the run never reached its pause point: {proc.communicate()[1][-3000:]}")


def _train_iterations(run_dir) -> list[int]:
    return [r["iteration"] for r in read_metrics(str(run_dir)) if "train/loss" in r]


def _complete(run_dir) -> list[int]:
    return [int(e.split("_")[1]) for e in os.listdir(run_dir / CKPT_DIR) if "tmp" not in e]


def _temporary(run_dir) -> list[str]:
    found = [e for e in os.listdir(run_dir / CKPT_DIR) if "tmp" in e]
    return found + [e for e in os.listdir(run_dir) if e.startswith(".tmp-")]


@pytest.mark.slow
def test_kill_9_anywhere_then_resume_gives_the_uninterrupted_run(tmp_path, tiny_trainer):
    rng = np.random.default_rng(SEED)
    base, cache = tiny_trainer.args, tmp_path / "jax-cache"
    ref_dir, run_dir = tmp_path / "reference", tmp_path / "faulty"
    resume = [f"checkpoint.resume={run_dir}"]

    code, _ = _finish(_start(_args(base, ref_dir), _env(cache)))  # uninterrupted; fills the compilation cache
    assert code == 0

    # 1. inside the program of a random iteration after iteration 4's checkpoint was started, which waits for
    #    the background write of checkpoint 2: so one checkpoint is complete (a kill before that leaves a run
    #    that cannot be resumed, only restarted)
    n1 = int(rng.integers(5, ITERS + 1))
    assert _kill_at_pause(_start(_args(base, run_dir), _env(cache, f"iteration:{n1}"))) == f"PAUSE iteration {n1}"
    assert _train_iterations(run_dir) == list(range(1, n1))  # iteration n1 was never logged
    restored = max(_complete(run_dir))

    # 2. resume; inside the write of a random later checkpoint
    n2 = int(rng.choice([i for i in range(2, ITERS + 1, 2) if i > restored]))
    proc = _start(resume, _env(cache, f"checkpoint:{n2}"))
    assert _kill_at_pause(proc) == f"PAUSE checkpoint {n2}"
    assert any("tmp" in e for e in os.listdir(run_dir / CKPT_DIR))  # the kill landed inside the write
    logged = _train_iterations(run_dir)  # n2's record precedes its write, which runs in the background
    assert logged == list(range(1, logged[-1] + 1)) and logged[-1] >= n2

    # 3. resume to the end
    code, err = _finish(_start(resume, _env(cache)))
    assert code == 0, err[-3000:]

    print(f"killed in iteration {n1} (checkpoint {restored} complete), then in checkpoint {n2}")
    assert _train_iterations(run_dir) == list(range(1, ITERS + 1))  # each iteration exactly once
    assert _temporary(run_dir) == []
    ref, got = load_checkpoint(str(ref_dir)), load_checkpoint(str(run_dir))
    assert got["iteration"] == ref["iteration"] == ITERS
    assert len(got["leaves"]) == len(ref["leaves"])
    for path, a, b in zip(ref["leaf_paths"], ref["leaves"], got["leaves"], strict=True):
        np.testing.assert_array_equal(a, b, err_msg=path)  # bit-equal: params, optimiser, env states, key
    assert sorted(os.listdir(run_dir / CKPT_DIR)) == [f"ckpt_{ITERS - 2:08d}", f"ckpt_{ITERS:08d}"]  # keep=2
