"""The jitted PPO trainer at a tiny size: resume equivalence, annealing, divergence guard, evaluation CLI.

One module-scoped setup compiles the iteration once; every run below reuses it.
"""

import json
import os

import jax
import numpy as np
import pytest

from train.checkpoint import latest_checkpoint, load_checkpoint, restore_state, save_checkpoint
from train.config import load_config, to_yaml
from train.data import build_setup
from train.loggers import read_metrics
from train.ppo import TrainingDiverged, clip_by_global_norm_torch, config_from_argv, train

ITERS, EPOCHS, MINIBATCHES = 4, 2, 3


@pytest.fixture(scope="module")
def tiny(tiny_trainer):
    """The session's compiled tiny trainer (tests/train/conftest.py) and its full run."""
    t = tiny_trainer
    cfg = load_config(t.args + [f"logger.run_dir={t.root / 'full'}"])
    full = train(cfg, setup=t.setup, fns=t.fns)
    return dict(root=t.root, args=t.args, setup=t.setup, fns=t.fns, full=full, data=t.data)


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
        "train/kl_approx",
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
    assert latest_checkpoint(run_dir).endswith("ckpt_00000004")
    # every episode that ended is counted (Q5): 8 lanes x 8 steps with 7-step episodes
    assert records[-1]["train/episode_length"] == 7.0


def test_gradient_clipping_divides_by_norm_plus_torch_eps():
    """torch's clip_grad_norm_ scales by min(1, max_norm / (norm + 1e-6)); optax's divides by the norm."""
    grads = {"a": np.asarray([3e-6, 0.0], np.float32), "b": np.asarray([4e-6], np.float32)}  # norm 5e-6
    clipped, _ = clip_by_global_norm_torch(1e-6).update(grads, ())
    np.testing.assert_allclose(np.asarray(clipped["b"]), 4e-6 * 1e-6 / 6e-6, rtol=1e-5)  # optax: 4e-6 / 5
    big = {"a": np.asarray([3.0, 4.0], np.float32)}  # norm 5
    halved, _ = clip_by_global_norm_torch(0.5).update(big, ())
    np.testing.assert_allclose(np.asarray(halved["a"]), [0.3, 0.4], rtol=1e-6)
    unclipped, _ = clip_by_global_norm_torch(10.0).update(big, ())
    np.testing.assert_array_equal(np.asarray(unclipped["a"]), [3.0, 4.0])


@pytest.mark.parametrize("key,default", [("loss.trunk_passes", 1), ("loss.gae_passes", 2)])
def test_batchnorm_pass_keys(key, default):
    name = key.split(".")[1]
    assert load_config([]).loss[name] == default  # GAE as the reference; one trunk pass (its cost, README)
    assert load_config([f"{key}={3 - default}"]).loss[name] == 3 - default
    with pytest.raises(ValueError, match=f"{key} must be 1 or 2, got 3"):
        load_config([f"{key}=3"])


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
    assert latest_checkpoint(str(half_dir)).endswith(f"ckpt_{ITERS // 2:08d}")
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
    with pytest.raises(TrainingDiverged, match="non-finite.*lower optim.lr.*last good checkpoint is kept"):
        _run(tiny, f"checkpoint.resume={bad_dir}", f"collector.total_frames={64 * (ITERS + 2)}")
    assert latest_checkpoint(str(bad_dir)) == path
    assert sorted(os.listdir(bad_dir / "checkpoints")) == ["ckpt_00000004"]
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


def test_evaluate_runs_trained_from_python_with_custom_features(tiny, tmp_path):
    """A run trained with `build_setup(features=fn)` records `fn` in custom.json: `train.evaluate` imports a
    function by its name; one it cannot import (a lambda) gets a message saying how to evaluate from Python,
    and `evaluate_run(features=)` does so, with the trainer's own final evaluation."""
    from tests.support.train_synth import scaled_ohlcv
    from train.data import custom_record
    from train.evaluate import evaluate_run, run_features

    cfg = load_config(tiny["args"] + [f"logger.run_dir={tmp_path / 'lambda'}"])
    setup = build_setup(cfg, features=lambda bars: scaled_ohlcv(bars))
    assert setup.obs_dim == tiny["setup"].obs_dim  # so the session's compiled programs serve
    run = train(cfg, setup=setup, fns=tiny["fns"])
    final = [r for r in read_metrics(run.run_dir) if "eval/reward" in r][-1]["eval/reward"]
    assert json.load(open(os.path.join(run.run_dir, "custom.json")))["features"] == [None]
    with pytest.raises(ValueError, match=r"cannot be imported by name.*evaluate_run\(RUN_DIR, features=FEATURES\)"):
        evaluate_run(run.run_dir)
    assert evaluate_run(run.run_dir, features=scaled_ohlcv)["test"][0]["reward"] == pytest.approx(final, rel=1e-5)

    # a top-level function is recorded by name and imported back
    record = custom_record(scaled_ohlcv, None)
    assert record["features"] == ["tests.support.train_synth:scaled_ohlcv"]
    named = tmp_path / "named"
    named.mkdir()
    (named / "custom.json").write_text(json.dumps(record))
    assert run_features(str(named)) is scaled_ohlcv
    (named / "custom.json").write_text(json.dumps(dict(record, features=["gone.module:scaled_ohlcv"])))
    with pytest.raises(ValueError, match=r"gone.module:scaled_ohlcv, which do not import here.*PYTHONPATH"):
        run_features(str(named))


def test_seeds_in_one_program_equal_single_seed_runs(tiny):
    """`num_seeds=2` in one program (one seed after another on CPU, `train.ppo._seeds_in_turn`) gives each seed
    the run that `num_seeds=1` gives with that seed's key."""
    from train.ppo import make_train

    setup = tiny["setup"]
    two = make_train(load_config(tiny["args"] + ["num_seeds=2"]), setup.train.env)
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    runner2 = two.init(setup.train.params, keys)
    runners1 = [tiny["fns"].init(setup.train.params, keys[k : k + 1]) for k in range(2)]
    for _ in range(2):
        runner2, metrics2 = two.iteration(setup.train.params, runner2)
        stepped = [tiny["fns"].iteration(setup.train.params, r) for r in runners1]
        runners1 = [r for r, _ in stepped]
    for k in range(2):
        for a, b in zip(jax.tree.leaves(runner2.train.params), jax.tree.leaves(runners1[k].train.params), strict=True):
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[0]), rtol=1e-5, atol=1e-6)
        assert float(metrics2["train/loss"][k]) == pytest.approx(float(stepped[k][1]["train/loss"][0]), rel=1e-5)
