"""Walk-forward windows: spans (pure), each window's envs without look-ahead, and the `walkforward` config keys."""

import numpy as np
import pandas as pd
import pytest

from tests.support.train_synth import sine_frame
from train.config import ConfigError
from train.data import build_eval_bundle
from train.walkforward.bundles import eval_span, market_from, prepare_window
from train.walkforward.config import load_settings
from train.walkforward.windows import overlapping_test_spans, slice_span, window_spans

T0 = pd.Timestamp("2024-01-01")
DAY = pd.Timedelta(days=1)
EXTENT = (T0, T0 + 40 * DAY)


def test_rolling_windows_tile_the_data_and_never_test_on_their_train_span():
    spans = window_spans(EXTENT, train_days=10, test_days=5, num_windows=4)
    assert [s.train for s in spans] == [(T0 + i * 5 * DAY, T0 + (10 + i * 5) * DAY) for i in range(4)]
    for s in spans:
        assert s.test == (s.train[1], s.train[1] + 5 * DAY)  # starts where its train span ends: no overlap
        assert s.test[0] >= s.train[1] and s.fit == s.train and s.val is None
    assert [a.test[1] for a in spans[:-1]] == [b.test[0] for b in spans[1:]]  # test spans tile
    assert not overlapping_test_spans(spans)
    # null num_windows: as many as fit (10 + 5 + 5k <= 40 -> k <= 5)
    assert len(window_spans(EXTENT, train_days=10, test_days=5)) == 6


def test_validation_tail_lies_inside_the_train_span():
    spans = window_spans(EXTENT, train_days=10, test_days=5, val_days=2, num_windows=3)
    for s in spans:
        assert s.train[0] <= s.val[0] < s.val[1] == s.train[1]
        assert s.val[1] - s.val[0] == 2 * DAY
        assert s.fit == (s.train[0], s.val[0])  # the agent trains on the rest


def test_anchored_windows_expand():
    spans = window_spans(EXTENT, train_days=10, test_days=5, step_days=7, num_windows=3, anchored=True)
    assert all(s.train[0] == T0 for s in spans)
    assert [s.train[1] - s.train[0] for s in spans] == [10 * DAY, 17 * DAY, 24 * DAY]
    assert all(s.test == (s.train[1], s.train[1] + 5 * DAY) for s in spans)


def test_overlapping_tests_start_end_and_errors():
    spans = window_spans(EXTENT, train_days=10, test_days=5, step_days=2, num_windows=3)
    assert overlapping_test_spans(spans)
    start = window_spans(EXTENT, train_days=10, test_days=5, num_windows=1, start="2024-01-03", end="2024-01-20")
    assert start[0].train[0] == T0 + 2 * DAY
    with pytest.raises(ConfigError, match="2 fit"):
        window_spans(EXTENT, train_days=20, test_days=10, num_windows=3)
    with pytest.raises(ConfigError, match="inside the data"):
        window_spans(EXTENT, train_days=5, test_days=5, start="2023-12-01")


# --------------------------------------------------------------------------------------- envs per window
@pytest.fixture(scope="module")
def settings():
    return load_settings(["env.window_sizes=[8]", "walkforward.momentum_bars=6"])


@pytest.fixture(scope="module")
def frame():
    return sine_frame(24 * 40, noise=0.002)


def _window(settings, frame, tmp_path, val_days=0):
    span = window_spans(EXTENT, train_days=10, test_days=5, val_days=val_days, num_windows=2)[1]
    return span, prepare_window(settings.train, frame, span, str(tmp_path), momentum_bars=6)


def test_features_and_training_ignore_every_bar_after_the_train_span(settings, frame, tmp_path):
    span, base = _window(settings, frame, tmp_path, val_days=2)
    later = frame.index >= span.fit[1]
    changed = frame.copy()
    changed.loc[later, ["open", "high", "low", "close"]] *= 1.5  # a different future
    changed.loc[later, "volume"] *= 7.0
    _, moved = _window(settings, changed, tmp_path, val_days=2)
    assert base.setup.features == moved.setup.features  # the frozen z-score statistics
    assert base.setup.features[0].fit_end is None and base.setup.features[0].num_bars == 8 * 24
    for a, b in zip(base.setup.train.params.market.features, moved.setup.train.params.market.features, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # every training observation window
    np.testing.assert_array_equal(np.asarray(base.setup.train.params.market.ohlc), moved.setup.train.params.market.ohlc)
    assert base.setup.train.market.exec_times[-1] < span.fit[1]
    # the change does reach the val and test episodes (so the comparison above could fail)
    assert not np.array_equal(np.asarray(base.test.bundle.params.market.ohlc), moved.test.bundle.params.market.ohlc)
    assert not np.array_equal(np.asarray(base.val.bundle.params.market.ohlc), moved.val.bundle.params.market.ohlc)


def test_test_episode_covers_exactly_the_test_span(settings, frame, tmp_path):
    span, w = _window(settings, frame, tmp_path)
    times = w.test.bundle.market.exec_times
    assert times[0] == span.test[0] and times[-1] == span.test[1] - pd.Timedelta(hours=1)
    assert w.test.bundle.num_steps == len(times) - 1 == 5 * 24 - 1
    assert not w.test.bundle.env.config.random_start and w.test.bundle.env.config.max_traj_length is None
    # closes before the span are there for the momentum rule, and end where the span starts
    assert w.test.prefix >= 6 and w.test.closes[w.test.prefix] == pytest.approx(frame.loc[span.test[0], "close"], 1e-6)


def test_cut_market_observes_exactly_what_the_uncut_one_does(frame):
    cfg = load_settings(["env.window_sizes=[8]", "env.features=none"]).train
    span = (T0 + 20 * DAY, T0 + 25 * DAY)
    whole = build_eval_bundle(cfg, slice_span(frame, (T0 + 18 * DAY, span[1])), None)
    first = int(np.searchsorted(whole.market.exec_times, span[0]))
    cut = market_from(whole.market, first)
    for i in (0, 5, cut.num_bars - 1):
        for key, window in cut.windows_at(i).items():
            np.testing.assert_array_equal(window, whole.market.windows_at(first + i)[key])
    short = eval_span(cfg, frame, span, None, "test")
    assert short.bundle.market.exec_times[0] == span[0]


# --------------------------------------------------------------------------------------- config
def test_walkforward_keys_parse_and_check(tmp_path):
    s = load_settings(["walkforward.train_days=21", "walkforward.anchored=true", "num_seeds=3"])
    assert s.wf.train_days == 21.0 and s.wf.anchored and s.train.num_seeds == 3
    assert s.train.eval.enabled is False  # walk-forward defaults on top of the trainer's
    yaml = tmp_path / "wf.yaml"
    yaml.write_text("walkforward:\n  test_days: 3\noptim:\n  lr: 0.001\n")
    s = load_settings([str(yaml), "walkforward.num_windows=2"])
    assert (s.wf.test_days, s.wf.num_windows, s.train.optim.lr) == (3.0, 2, 0.001)
    assert s.to_dict()["walkforward"]["test_days"] == 3.0
    with pytest.raises(ConfigError, match="Did you mean walkforward.train_days"):
        load_settings(["walkforward.train_day=3"])
    with pytest.raises(ConfigError, match="set walkforward.val_days > 0"):
        load_settings(["sweep.optim.lr=[1e-4,3e-4]"])
    with pytest.raises(ConfigError, match="zscore_train"):
        load_settings(["env.features=zscore_split"])
    with pytest.raises(ConfigError, match="val_days"):
        load_settings(["walkforward.val_days=30"])
    with pytest.raises(ConfigError, match="flat level 0"):
        load_settings(["env.action_levels=[-1,1]"])
