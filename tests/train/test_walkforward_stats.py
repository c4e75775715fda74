"""Walk-forward statistics on synthetic numbers (pure NumPy): the hierarchical bootstrap, IQM, sign counts."""

import numpy as np
import pytest

from train.walkforward.stats import (
    LOG_RETURN_FLOOR,
    bootstrap_statistics,
    compare,
    differences,
    floor_log_returns,
    hierarchical_resample,
    iqm,
    notes,
)


def _market(rng, windows=20, seeds=5, edge=0.0, window_sd=0.05, seed_sd=0.02):
    """Agent minus baseline per (window, seed): a constant edge, a shared shock per window (the market), seed noise."""
    return edge + window_sd * rng.standard_normal((windows, 1)) + seed_sd * rng.standard_normal((windows, seeds))


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.array([-100.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 100.0])
    assert iqm(x) == pytest.approx(3.5)  # mean of 2..5
    assert iqm(np.array([[1.0, 2.0, 3.0, 40.0], [0.0, 0.0, 1.0, 1.0]]), axis=1) == pytest.approx([2.5, 0.5])


def test_resampling_draws_windows_then_seeds_within_them():
    values = np.arange(12.0).reshape(4, 3)  # value // 3 is the window, value % 3 the seed
    sample = hierarchical_resample(values, 500, np.random.default_rng(0))
    assert sample.shape == (500, 4, 3)
    window_of = sample // 3
    # every resampled window's seeds come from one original window
    assert np.all(window_of == window_of[:, :, :1])
    # windows are drawn with replacement: some replicates repeat a window (not stratified by window)
    assert np.mean([len(set(r[:, 0])) < 4 for r in window_of]) > 0.5
    # seeds are drawn with replacement within a window
    assert np.mean([len(set(s)) < 3 for s in sample.reshape(-1, 3)]) > 0.5


def test_constant_positive_edge_gives_a_positive_interval():
    rng = np.random.default_rng(1)
    d = _market(rng, windows=8, seeds=4, edge=0.05, window_sd=0.02, seed_sd=0.01)
    c = compare(d, np.zeros(8), num_samples=4000, seed=0)
    assert c.ci95[0] > 0 and c.iqm_ci95[0] > 0
    assert c.wins == 8 and c.losses == 0 and c.p_positive == 1.0
    assert c.mean == pytest.approx(d.mean())
    assert c.per_window == pytest.approx(tuple(d.mean(axis=1)))
    assert c.per_window_min == pytest.approx(tuple(d.min(axis=1)))


def test_pure_noise_interval_contains_zero_in_nine_of_ten_markets():
    hits = []
    for seed in range(10):
        d = _market(np.random.default_rng(100 + seed))
        lo, hi = compare(d, np.zeros(d.shape), num_samples=2000, seed=seed).ci95
        hits.append(lo <= 0.0 <= hi)
    assert sum(hits) >= 9, hits


def test_market_variation_widens_the_interval():
    """Resampling windows carries the shared per-window shock: with the same seed noise, a market shock of
    0.05 per window must widen the interval well beyond the seed-only one (a stratified bootstrap would not)."""
    rng = np.random.default_rng(7)
    seed_noise = 0.02 * rng.standard_normal((20, 5))
    shock = 0.05 * rng.standard_normal((20, 1))
    calm = compare(seed_noise, np.zeros(20), num_samples=2000).ci95
    shocked = compare(seed_noise + shock, np.zeros(20), num_samples=2000).ci95
    assert (shocked[1] - shocked[0]) > 2.5 * (calm[1] - calm[0])
    # the width matches the standard error of a mean over 20 windows of (shock + seed mean)
    se = np.sqrt((0.05**2 + 0.02**2 / 5) / 20)
    assert shocked[1] - shocked[0] == pytest.approx(2 * 1.96 * se, rel=0.35)


def test_paired_and_per_window_baselines():
    agent = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert differences(agent, np.array([[1.0, 1.0], [1.0, 1.0]])).tolist() == [[0.0, 1.0], [2.0, 4.0]]
    assert differences(agent, np.array([1.0, 2.0])).tolist() == [[0.0, 1.0], [1.0, 3.0]]
    with pytest.raises(ValueError, match="shape"):
        differences(agent, np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        differences(np.array([[-np.inf]]), np.zeros(1))


def test_bootstrap_is_seeded_and_chunked_consistently(monkeypatch):
    d = _market(np.random.default_rng(3), windows=6, seeds=3)
    a = bootstrap_statistics(d, 300, seed=5)
    b = bootstrap_statistics(d, 300, seed=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], bootstrap_statistics(d, 300, seed=6)[0])
    import train.walkforward.stats as stats

    monkeypatch.setattr(stats, "CHUNK_VALUES", 18 * 7)  # 7 replicates per chunk
    chunked = bootstrap_statistics(d, 300, seed=5)
    assert chunked[0].shape == (300,)
    assert abs(np.percentile(chunked[0], 50) - np.percentile(a[0], 50)) < 0.02


def test_sign_counts_and_probability():
    d = np.array([[0.1, 0.2], [-0.3, -0.1], [0.0, 0.0]])
    c = compare(d, np.zeros(3), num_samples=1000)
    assert (c.wins, c.losses, c.ties) == (1, 1, 1)
    assert c.share_pairs_positive == pytest.approx(2 / 6)
    assert 0.0 < c.p_positive < 1.0


def test_floor_and_notes():
    assert floor_log_returns([-np.inf, -1.0]).tolist() == [LOG_RETURN_FLOOR, -1.0]
    assert any("Only 3 test window(s)" in n for n in notes(3, 4, overlapping=False))
    assert notes(8, 4, overlapping=False) == []
    assert any("overlap" in n for n in notes(8, 4, overlapping=True))
