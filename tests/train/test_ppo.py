"""The jitted PPO trainer at a tiny size: resume equivalence, annealing, divergence guard, evaluation CLI.

One module-scoped setup compiles the iteration once; every run below reuses it.
"""

import json
import os

import jax
import numpy as np
import pytest

from tests.support.train_synth import sine_frame
from train.checkpoint import latest_checkpoint, load_checkpoint, restore_state, save_checkpoint
from train.config import load_config, to_yaml
from train.data import build_setup
from train.loggers import read_metrics
from train.ppo import TrainingDiverged, config_from_argv, make_train, train

ITERS, EPOCHS, MINIBATCHES = 4, 2, 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ppo")
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
    cfg = load_config(args + [f"logger.run_dir={root / 'full'}"])
    setup = build_setup(cfg)
    fns = make_train(cfg, setup.train.env)
    full = train(cfg, setup=setup, fns=fns)
    return dict(root=root, args=args, setup=setup, fns=fns, full=full, data=data)


def _run(tiny, *extra):
    cfg = load_config(tiny["args"] + list(extra))
    return train(cfg, setup=tiny["setup"], fns=tiny["fns"])


def test_full_run_outputs(tiny):
    full = tiny["full"]
    assert full.iteration == ITERS
    run_dir = full.run_dir
    records = [r for r in read_metrics(run_dir) if "train/loss" in r]
    assert len(records) == ITERS
    for key in (
        "train/reward",
        "train/episode_length",
        "train/action_std",
        "train/batch_reward_mean",
        "train/batch_reward_std",
        "train/loss_objective",
        "train/loss_critic",
        "train/loss_entropy",
        "train/lr",
        "train/clip_epsilon",
        "train/approx_kl",
        "train/clip_fraction",
        "train/explained_variance",
        "time/SPS-total",
    ):
        assert key in records[-1], key
    assert "time/SPS-collecting" in records[0]
    evals = [r for r in read_metrics(run_dir) if "eval/reward" in r]
    assert [r["step"] for r in evals] == [64, 128, 256]  # first iteration, every 128 frames, the end
    assert {"eval/train_reward", "eval/final_pv", "eval/bh_log_return", "eval/sharpe", "eval/max_drawdown"} <= set(
        evals[0]
    )
    assert os.path.isfile(os.path.join(run_dir, "plots", "history_000000000256.png"))
    assert os.path.isfile(os.path.join(run_dir, "plots", "train_history_000000000256.png"))
    assert latest_checkpoint(run_dir).endswith("ckpt_00000004.msgpack")
    # every episode that ended is counted (Q5): 8 lanes x 8 steps with 7-step episodes
    assert records[-1]["train/episode_length"] == 7.0


def test_lr_and_clip_anneal_linearly(tiny):
    records = [r for r in read_metrics(tiny["full"].run_dir) if "train/lr" in r]
    total = ITERS * EPOCHS * MINIBATCHES
    last_update = np.arange(1, ITERS + 1) * EPOCHS * MINIBATCHES - 1  # the logged value is the last update's
    lr = np.array([r["train/lr"] for r in records])
    clip = np.array([r["train/clip_epsilon"] for r in records])
    np.testing.assert_allclose(lr, 2.5e-4 * (1 - last_update / total), rtol=1e-5)
    np.testing.assert_allclose(clip, 0.1 * (1 - last_update / total), rtol=1e-5)
    assert np.all(np.diff(lr) < 0) and np.all(np.diff(clip) < 0)


def test_resume_continues_exactly(tiny):
    half_dir = tiny["root"] / "half"
    half = _run(tiny, f"logger.run_dir={half_dir}", f"collector.stop_at_iteration={ITERS // 2}")
    assert half.iteration == ITERS // 2
    assert latest_checkpoint(str(half_dir)).endswith(f"ckpt_{ITERS // 2:08d}.msgpack")
    cfg = config_from_argv([f"checkpoint.resume={half_dir}"])  # the saved config, stop cleared
    assert cfg.collector.stop_at_iteration is None and cfg.collector.total_frames == 64 * ITERS
    resumed = train(cfg, setup=tiny["setup"], fns=tiny["fns"])
    assert resumed.run_dir == str(half_dir) and resumed.iteration == ITERS
    a, b = jax.tree.leaves(tiny["full"].runner), jax.tree.leaves(resumed.runner)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    full_recs = [r for r in read_metrics(tiny["full"].run_dir) if "train/loss" in r]
    half_recs = [r for r in read_metrics(str(half_dir)) if "train/loss" in r]
    assert [r["train/loss"] for r in full_recs] == [r["train/loss"] for r in half_recs]


def test_nan_stops_and_keeps_last_good_checkpoint(tiny):
    good = load_checkpoint(tiny["full"].run_dir)
    state = restore_state(tiny["full"].runner, good)
    poisoned = state._replace(train=state.train._replace(params=jax.tree.map(lambda x: x * np.nan, state.train.params)))
    bad_dir = tiny["root"] / "bad"
    cfg = load_config(tiny["args"] + [f"collector.total_frames={64 * (ITERS + 2)}"])
    path = save_checkpoint(str(bad_dir), poisoned, iteration=ITERS, config_yaml=to_yaml(cfg))
    with pytest.raises(TrainingDiverged, match="non-finite.*last good checkpoint is kept"):
        _run(tiny, f"checkpoint.resume={bad_dir}", f"collector.total_frames={64 * (ITERS + 2)}")
    assert latest_checkpoint(str(bad_dir)) == path
    assert sorted(os.listdir(bad_dir / "checkpoints")) == ["ckpt_00000004.msgpack", "latest"]
    assert any(r.get("diverged") for r in read_metrics(str(bad_dir)))


def test_evaluate_cli(tiny, capsys):
    from train.evaluate import main

    run_dir = tiny["full"].run_dir
    assert main([run_dir]) == 0
    out = json.load(open(os.path.join(run_dir, "eval", "eval.json")))
    assert set(out["results"]) == {"test", "train"} and out["iteration"] == ITERS
    assert os.path.isfile(os.path.join(run_dir, "eval", "history_test_seed0.png"))
    # the evaluation on the test split equals the trainer's final eval/reward
    final = [r for r in read_metrics(run_dir) if "eval/reward" in r][-1]
    assert out["results"]["test"][0]["steps"] == final["eval/steps"]
    assert out["results"]["test"][0]["reward"] == pytest.approx(final["eval/reward"], rel=1e-5, abs=1e-6)
    assert out["results"]["train"][0]["final_pv"] == pytest.approx(final["eval/train_final_pv"], rel=1e-5)
    assert main([run_dir, f"data={tiny['data']}", f"out={tiny['root'] / 'ev'}"]) == 0
    out = json.load(open(tiny["root"] / "ev" / "eval.json"))
    assert list(out["results"]) == ["data"]
    assert "Deterministic evaluation" in capsys.readouterr().out


def test_build_setup_takes_a_feature_function_and_a_training_reward(tiny):
    """`build_setup(features=, reward_fn=)`: the feature function replaces `env.features` in every env; the
    reward trains, while the evaluation envs keep the log return (so eval/reward stays comparable)."""
    from trading_jax.rewards import drawdown_penalty_reward, log_return_reward

    def close_only(bars):
        out = bars.reset_index()
        out["features_close"] = out["close"] / out["close"].iloc[0]
        return out

    cfg = load_config(tiny["args"])
    setup = build_setup(cfg, features=close_only, reward_fn=drawdown_penalty_reward)
    assert setup.train.env.reward_fn is drawdown_penalty_reward
    assert setup.test.env.reward_fn is log_return_reward and setup.train_eval.env.reward_fn is log_return_reward
    assert setup.features is None
    for bundle in (setup.train, setup.test, setup.train_eval):
        assert bundle.market.feature_names == (("features_close",),)
        assert bundle.env.observation_shape == (8 * 1 + 6,)
