"""The one-program walk-forward trainer (windows x sweep points x seeds in one jitted iteration) against the
trainer run window by window (`train.loop.train`), and the sweep's selection on the validation tail.

Tiny shapes: 4 lanes x 8 steps, 3 iterations, a 1-layer 16-unit network, 2 windows of a noisy sine. Three
training programs are compiled in all, shared through the module fixture: the one-program trainer for 1 agent
and for 2 windows x 2 sweep points (4 agents), and the reference trainer (one seed, one window of these shapes).
Seeds, windows and sweep points are one flat agent axis of the same vmap; `agent_inputs` is checked for the seed
keys of a several-seed layout."""

import copy
import dataclasses
import json

import jax
import numpy as np
import pytest

from tests.support.train_synth import sine_frame
from train.config import ConfigError
from train.loop import train
from train.ppo import make_train
from train.walkforward import run
from train.walkforward.config import load_settings
from train.walkforward.program import agent_inputs, group_windows, train_agents
from train.walkforward.stats import floor_log_returns
from train.walkforward.sweep import grid, select

ARGS = [
    "env.window_sizes=[8]", "env.num_envs=4", "collector.frames_per_batch=32", "collector.total_frames=96",
    "loss.mini_batch_size=16", "loss.ppo_epochs=2", "model.hidden_size=16", "model.num_layers=1", "num_seeds=1",
    "walkforward.train_days=6", "walkforward.test_days=2", "walkforward.val_days=1", "walkforward.num_windows=2",
    "walkforward.random_seeds=2", "walkforward.bootstrap_samples=200", "walkforward.momentum_bars=6",
    "checkpoint.enabled=false", "logger.progress=false", "walkforward.plots=false",
    # a smaller program to compile (what the agent axis changes is the same): eval-mode collection, no dropout,
    # one value forward, advantages once per iteration
    "model.collect_train_mode=false", "model.dropout=0", "loss.gae_passes=1", "loss.recompute_advantage=false",
]  # fmt: skip
SWEEP = ["sweep.optim.lr=[2.5e-4,3e-3]"]  # 2.5e-4: the config's lr
TOL = dict(rtol=1e-3, atol=5e-5)  # float reduction order (batched over 4 agents vs one), after 3 iterations


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("wf_program")
    frame = sine_frame(24 * 12)
    settings = load_settings(ARGS + [f"logger.run_dir={root / 'run'}"])
    _, windows = run.prepare_windows(settings, str(root / "run"), frame)
    return dict(root=root, frame=frame, settings=settings, windows=windows, cache={})


def _moved(windows, root, name, **cfg):
    """The windows with their own run directories under `root/name` (and trainer keys changed)."""
    out = []
    for w in windows:
        c = copy.deepcopy(w.cfg)
        c.logger.run_dir = str(root / name / f"w{w.span.index:02d}")
        for k, v in cfg.items():
            setattr(c, k, v)
        out.append(dataclasses.replace(w, cfg=c))
    return out


def _reference(w, root, name, fns):
    """`train.loop.train` on the window's fit span (its own run directory)."""
    cfg = copy.deepcopy(w.cfg)
    cfg.logger.run_dir = str(root / name)
    state = train(cfg, setup=w.setup, fns=fns).runner.train
    return jax.device_get((state.params, state.batch_stats))


def _close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **TOL)


def _reference_fns(base):
    """The trainer's program for one seed on a window of these shapes (compiled once, by its first `train`)."""
    if "ref" not in base["cache"]:
        w = base["windows"][0]
        base["cache"]["ref"] = make_train(w.cfg, w.setup.train.env)
    return base["cache"]["ref"]


def test_one_window_one_seed_reproduces_the_trainer(base):
    (w,) = _moved(base["windows"][:1], base["root"], "single")
    agents = train_agents([w], w.cfg)
    ref = _reference(w, base["root"], "single_ref", _reference_fns(base))
    assert jax.tree.leaves(agents.policies[0])[0].shape[0] == 1
    _close(agents.policies[0], ref)


def _sweep_agents(base):
    """2 windows x 2 sweep points (the config's lr and a higher one) x 1 seed, in one program (4 agents)."""
    if "sweep" not in base["cache"]:
        settings = load_settings(ARGS + SWEEP)
        windows = _moved(base["windows"], base["root"], "sweep")
        base["cache"]["sweep"] = train_agents(windows, settings.train, settings.grid)
    return base["cache"]["sweep"]


def test_windows_and_sweep_points_in_one_program_match_separate_runs(base):
    windows = base["windows"]
    assert group_windows(windows) == [[0, 1]]  # rolling windows of one length: one program
    points = load_settings(ARGS + SWEEP).grid
    assert points == [{"optim.lr": 2.5e-4}, {"optim.lr": 3e-3}]
    _, hp, keys = agent_inputs(windows, points, 2)  # with 2 seeds: agent axis (window, point, seed), 8 agents
    np.testing.assert_allclose(hp["lr"], [2.5e-4, 2.5e-4, 3e-3, 3e-3] * 2)
    np.testing.assert_array_equal(keys[:2], keys[2:4])  # every point of a window: the window's seed keys
    np.testing.assert_array_equal(keys[:2], np.asarray(jax.random.split(jax.random.PRNGKey(0), 2)))  # train's
    np.testing.assert_array_equal(keys[4:6], np.asarray(jax.random.split(jax.random.PRNGKey(1), 2)))  # seed + 1
    agents = _sweep_agents(base)
    fns = _reference_fns(base)  # one seed, reused for both windows
    for i, w in enumerate(windows):
        # the config's point (its lr traced per agent) == that window trained alone by train.loop.train
        _close(agents.grid_policies[i][0], _reference(w, base["root"], f"sep{i}", fns))
        assert agents.policies[i] is agents.grid_policies[i][0]
        fast, slow = (jax.tree.leaves(agents.grid_policies[i][g][0])[0] for g in (1, 0))
        assert np.abs(fast - slow).max() > 1e-3  # the higher lr moved these agents elsewhere
    a0, a1 = (jax.tree.leaves(p[0])[0] for p in agents.policies)
    assert np.abs(a0 - a1).max() > 1e-3  # own market, own seed keys: the windows' agents differ


def test_sweep_selects_on_the_val_tail_and_reports_the_grid(base, monkeypatch):
    agents = _sweep_agents(base)
    monkeypatch.setattr(run, "train_agents", lambda windows, cfg, points: agents)
    settings = load_settings(ARGS + SWEEP + [f"logger.run_dir={base['root'] / 'report'}"])
    run_dir, doc = run.run_walkforward(settings, base["frame"])
    on_disk = json.loads(open(f"{run_dir}/walkforward.json").read())
    sweep = on_disk["aggregate"]["sweep"]
    assert [p["point"] for p in sweep["points"]] == [{"optim.lr": 2.5e-4}, {"optim.lr": 3e-3}]
    for i, win in enumerate(on_disk["windows"]):
        points = win["sweep"]["points"]
        val = [np.mean(floor_log_returns(np.asarray(p["val"]["log_return"]))) for p in points]
        chosen = int(np.argmax(val))  # by the val tail's numbers alone
        assert win["sweep"]["selected"] == sweep["selected"][i] == chosen
        assert win["agent"] == points[chosen]["test"] and win["val_agent"] == points[chosen]["val"]
        for p in points:
            assert len(p["val"]["log_return"]) == len(p["test"]["log_return"]) == 1  # one per seed
    assert sum(p["windows_selected"] for p in sweep["points"]) == 2
    means = [np.mean([np.mean(w["sweep"]["points"][g]["test"]["log_return"]) for w in on_disk["windows"]])
             for g in range(2)]  # fmt: skip
    np.testing.assert_allclose([p["test_mean"] for p in sweep["points"]], means, rtol=1e-6)
    assert on_disk["config"]["sweep"] == {"optim.lr": [2.5e-4, 3e-3]}
    md = open(f"{run_dir}/walkforward.md").read()
    assert "### Sweep grid" in md and "| optim.lr=0.003 |" in md


def test_anchored_windows_of_other_shapes_get_their_own_programs(base, tmp_path):
    anchored = ["walkforward.anchored=true", "walkforward.num_windows=3", "walkforward.step_days=1"]
    settings = load_settings(ARGS + anchored)
    _, windows = run.prepare_windows(settings, str(tmp_path), base["frame"])
    assert group_windows(windows) == [[0], [1], [2]]  # expanding train spans: 5, 6, 7 days of bars
    assert group_windows(base["windows"] + windows[:1]) == [[0, 1, 2]]  # rolling, same length: one


def test_select_never_picks_nan():
    assert select(np.array([[0.1, 0.3], [np.nan, -1.0], [np.nan, np.nan]])).tolist() == [1, 1, 0]
    assert grid({"optim.lr": [1, 2], "loss.gamma": [0.5, 0.9]})[1] == {"optim.lr": 1, "loss.gamma": 0.9}
    assert grid({}) == [{}]


@pytest.mark.parametrize(
    "args, message",
    [
        (["sweep.optim.lrr=[1e-4]", "walkforward.val_days=1"], "Did you mean sweep.optim.lr?"),
        (["sweep.loss.ppo_epochs=[1,2]", "walkforward.val_days=1"], "Sweepable keys: sweep.optim.lr"),
        (["sweep.optim.lr=[1e-4,3e-4]"], "set walkforward.val_days > 0"),
        (["sweep.optim.lr=[a,b]", "walkforward.val_days=1"], "give a list of numbers"),
        (["sweep.optim.lr=[1e-4,1e-4]", "walkforward.val_days=1"], "the values repeat"),
        (["sweep.loss.gamma=[0.9,1.5]", "walkforward.val_days=1"], "loss.gamma must be in [0, 1], got 1.5"),
    ],
)
def test_sweep_key_errors(args, message):
    with pytest.raises(ConfigError, match=message.replace("?", r"\?").replace("[", r"\[")):
        load_settings(args)


def test_sweep_in_a_yaml_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("walkforward:\n  val_days: 2\nsweep:\n  loss:\n    entropy_coeff: [0, 0.01]\n  optim.lr: [1e-4]\n")
    settings = load_settings([str(path)])
    assert settings.sweep == {"loss.entropy_coeff": [0.0, 0.01], "optim.lr": [1e-4]}
    assert len(settings.grid) == 2
