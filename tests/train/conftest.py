"""The trainer tests' one compiled tiny program, shared by every module of a session that trains.

`tiny_trainer`: 8 lanes x 8 steps = 64 frames per iteration, 4 iterations, 2 epochs x 3 minibatches, a 2-layer
16-unit network, on a noisy sine (`tests.support.train_synth.sine_frame`). Modules build their runs from
`args` (plus their own `logger.run_dir`) and pass `setup=` and `fns=` to `train`, so the iteration, collection
and evaluation programs compile once per session (`TrainFns.compiled`).
"""

from types import SimpleNamespace

import pytest

from tests.support.train_synth import sine_frame
from train.config import load_config
from train.data import build_setup
from train.ppo import make_train

ITERS, EPOCHS, MINIBATCHES = 4, 2, 3


@pytest.fixture(scope="session")
def tiny_trainer(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    data = root / "sine.csv"
    sine_frame(600).to_csv(data)
    args = [
        f"env.data_path={data}",
        "env.test_split_start=2024-01-21 20:00",
        "env.window_sizes=[8]",
        "env.num_envs=8",
        "collector.frames_per_batch=64",
        f"collector.total_frames={64 * ITERS}",
        f"loss.mini_batch_size={64 // MINIBATCHES}",
        f"loss.ppo_epochs={EPOCHS}",
        "model.hidden_size=16",
        "model.num_layers=2",
        "logger.backend=none",
        "logger.progress=false",
        "eval.test_interval=128",
        "eval.train_max_steps=50",
        "logger.timing_interval=2",
        "checkpoint.keep=10",
    ]
    setup = build_setup(load_config(args))
    fns = make_train(load_config(args), setup.train.env)
    return SimpleNamespace(root=root, data=data, args=args, setup=setup, fns=fns)
