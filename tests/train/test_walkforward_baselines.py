"""Walk-forward baselines through the env, and the statistics on a market with a known edge.

One compiled table-episode program serves every test span here (equal lengths); a second one, the leverage-1
env's, checks that the 1x buy-and-hold on leverage-1 params is that env's episode.
"""

import jax
import numpy as np
import pandas as pd
import pytest

import trading_jax
from train.data import EnvBundle
from train.walkforward.baselines import Levels, action_tables, momentum_signal, run_baselines
from train.walkforward.bundles import eval_span
from train.walkforward.config import load_settings
from train.walkforward.episodes import TableEpisodes, bar_minutes, episode_numbers
from train.walkforward.stats import compare
from train.walkforward.windows import window_spans

K, R = 2, 3  # paired keys (agent seeds), random episodes


def regime_frame(n_bars: int, seed: int, drift: float = 0.002, noise: float = 0.002) -> pd.DataFrame:
    """Hourly bars whose log close trends up or down (±drift per bar) in regimes of 48-120 bars, plus noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(48, 121, n_bars // 48 + 1)
    signs = np.where(rng.random(len(lengths)) < 0.5, -1.0, 1.0)
    steps = np.repeat(signs * drift, lengths)[:n_bars] + noise * rng.standard_normal(n_bars)
    close = 100.0 * np.exp(np.cumsum(steps))
    open_ = np.concatenate([[100.0], close[:-1]])
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * 1.0005,
            "low": np.minimum(open_, close) / 1.0005,
            "close": close,
            "volume": np.ones(n_bars),
        },
        index=pd.date_range("2024-01-01", periods=n_bars, freq="1h", name="timestamp"),
    )


def test_momentum_signal_uses_only_past_closes():
    closes = np.array([5.0, 4.0, 1.0, 2.0, 3.0, 2.0, 2.0])
    # the span starts at index 2; N = 2: sign(close_t - close_{t-2})
    assert momentum_signal(closes, 2, 5, 2).tolist() == [-1, -1, 1, 0, -1]
    assert momentum_signal(closes, 0, 4, 2).tolist() == [0, 0, -1, -1]  # no close N bars back: flat
    changed = closes.copy()
    changed[5:] = 100.0  # later closes never change an earlier signal
    assert momentum_signal(changed, 2, 3, 2).tolist() == momentum_signal(closes, 2, 3, 2).tolist()


def test_levels():
    assert Levels.of(trading_jax.EnvConfig(leverage=3)) == Levels(long=2, flat=1, short=0, one_x=None)
    cfg = trading_jax.EnvConfig(leverage=4, action_levels=(-1.0, 0.0, 0.25, 1.0))
    assert Levels.of(cfg) == Levels(long=3, flat=1, short=0, one_x=2)
    assert Levels.of(trading_jax.EnvConfig(leverage=1)).short == 1  # spot: no shorts, momentum goes flat


@pytest.fixture(scope="module")
def setting():
    cfg = load_settings(["env.window_sizes=[8]", "env.features=none"]).train
    frame = regime_frame(24 * 50, seed=3)
    spans = window_spans((frame.index[0], frame.index[-1] + pd.Timedelta(hours=1)), train_days=5, test_days=5)
    tests = [eval_span(cfg, frame, s.test, None, "test", extra_bars=24) for s in spans]
    return cfg, tests, TableEpisodes()


def _baselines(tests, episodes, seed=0):
    out = []
    for i, span in enumerate(tests):
        key = jax.random.PRNGKey(100 * seed + i)
        keys, random_keys = jax.random.split(key, K), jax.random.split(jax.random.fold_in(key, 1), R)
        out.append(run_baselines(span, keys, random_keys, 24, episodes, np.random.default_rng(i)))
    return out


def test_baselines_through_the_env(setting):
    cfg, tests, episodes = setting
    span = tests[0]
    metrics, equity = _baselines(tests[:1], episodes)[0]
    assert metrics["flat"]["log_return"] == [0.0] * K and metrics["flat"]["trades"] == [0] * K
    assert np.all(equity["flat"] == 1.0)
    assert metrics["buy_and_hold"]["trades"] == [1] * K and len(metrics["random"]["log_return"]) == R
    assert equity["buy_and_hold"].shape == (K, span.bundle.market.num_bars)
    # 3x leverage moves about three times as much as 1x (fees and slippage aside)
    bh, one_x = np.mean(metrics["buy_and_hold"]["log_return"]), np.mean(metrics["buy_and_hold_1x"]["log_return"])
    price = span.bundle.market.exec_bars["close"].to_numpy()
    assert one_x == pytest.approx(np.log(price[-1] / price[0]), abs=0.03)
    assert np.expm1(bh) == pytest.approx(3 * np.expm1(one_x), abs=0.08)
    # the momentum table is the signal mapped to long / short / flat
    table = action_tables(Levels.of(span.bundle.env.config), span, 24)["momentum"]
    signal = momentum_signal(span.closes, span.prefix, len(table), 24)
    assert np.array_equal(table, np.select([signal > 0, signal < 0], [2, 0], 1))


@pytest.mark.filterwarnings("ignore:Negative action_levels")  # the spot env's own warning: shorts act as flat
def test_one_x_on_leverage_one_params_is_the_spot_envs_episode(setting):
    _, tests, episodes = setting
    bundle = tests[0].bundle
    table = np.full((K, bundle.market.num_bars), 2, np.int32)
    keys = jax.random.split(jax.random.PRNGKey(1), K)
    ours = episodes(bundle, table, keys, np.ones(K))
    env, params = trading_jax.make(bundle.market, bundle.env.config.replace(leverage=1.0))
    spot = TableEpisodes()(EnvBundle(env, params, bundle.market, bundle.num_steps), table, keys, np.ones(K))
    for key in ("portfolio_value", "position_size", "reward", "action_kind"):
        np.testing.assert_array_equal(ours[key], spot[key])
    assert episode_numbers(ours, 1.0, bar_minutes(bundle))[0]["trades"] == [1] * K


def test_known_edge_momentum_beats_buy_and_hold(setting):
    """Regime trends: the momentum rule (standing in for an agent) has an edge over buy-and-hold; the interval
    over test windows and keys must see it. A one-sided edge of this size is not an accident of one window."""
    _, tests, episodes = setting
    results = _baselines(tests, episodes)
    mom = np.array([m["momentum"]["log_return"] for m, _ in results])
    bh = np.array([m["buy_and_hold"]["log_return"] for m, _ in results])
    c = compare(mom, bh, num_samples=4000, seed=0)
    assert len(tests) == 9 and c.ci95[0] > 0, c
    assert c.wins >= 6
