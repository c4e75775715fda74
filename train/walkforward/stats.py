"""Agent-minus-baseline statistics over test windows and seeds (NumPy, seeded).

`d[w, s]` = agent metric of seed s on test window w minus the baseline's (the same seed's episode for the paired
baselines, which share the agent's slippage draws; the window mean over the random policy's episodes for
`random`). Reported:

* `mean` and `iqm` of all `d[w, s]` (IQM as in rliable: the mean of the middle 50%, `scipy.stats.trim_mean(x,
  0.25)`);
* `ci95`: the 2.5th and 97.5th percentiles of the mean over a HIERARCHICAL bootstrap: each replicate draws W
  windows with replacement, then S seeds with replacement within each drawn window. Windows are resampled, not
  held fixed (no stratification by window), so the interval carries market variation as well as seed
  variation; `iqm_ci95` the same for the IQM;
* `p_positive`: the share of bootstrap replicates whose mean difference is > 0 (for buy-and-hold this is
  `p_beats_buy_and_hold`: the bootstrap probability that the agent's mean log return over windows like these
  beats buy-and-hold's); `share_pairs_positive`: the share of (window, seed) pairs with `d > 0`;
* `per_window`: the seed mean of `d` per window (`per_window_min` / `_max`: the seeds' range), and its sign
  count (`wins`, `losses`, `ties`).

With few windows the percentile bootstrap cannot see much of the market's variation: the interval is wide and,
below `FEW_WINDOWS`, still too narrow more often than 5% of the time; `notes` says so rather than narrowing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.stats import trim_mean

FEW_WINDOWS = 5
CHUNK_VALUES = 2_000_000  # resampled values per vectorised chunk of replicates (bounds the memory)
# A wiped account has log return -inf; it enters the statistics at ln(1e-6) so that means stay finite.
LOG_RETURN_FLOOR = float(np.log(1e-6))


def iqm(x, axis=-1):
    """Interquartile mean (rliable): the mean of the middle 50% of the values along `axis`."""
    return trim_mean(x, 0.25, axis=axis)


def hierarchical_resample(values: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`[num_samples, W, S]` replicates of `values [W, S]`: windows with replacement, then seeds with replacement
    within each drawn window."""
    W, S = values.shape
    windows = rng.integers(0, W, (num_samples, W))
    seeds = rng.integers(0, S, (num_samples, W, S))
    return values[windows[:, :, None], seeds]


def bootstrap_statistics(values: np.ndarray, num_samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`(means [num_samples], iqms [num_samples])` of the hierarchical bootstrap replicates of `values [W, S]`."""
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_VALUES // values.size)
    means, iqms = [], []
    for start in range(0, num_samples, chunk):
        flat = hierarchical_resample(values, min(chunk, num_samples - start), rng).reshape(-1, values.size)
        means.append(flat.mean(axis=1))
        iqms.append(iqm(flat, axis=1))
    return np.concatenate(means), np.concatenate(iqms)


@dataclass(frozen=True)
class Comparison:
    mean: float
    iqm: float
    ci95: tuple[float, float]
    iqm_ci95: tuple[float, float]
    p_positive: float
    share_pairs_positive: float
    per_window: tuple[float, ...]
    per_window_min: tuple[float, ...]  # the seeds' range of d per window
    per_window_max: tuple[float, ...]
    wins: int
    losses: int
    ties: int
    num_windows: int
    num_seeds: int

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("ci95", "iqm_ci95", "per_window", "per_window_min", "per_window_max"):
            out[key] = list(out[key])
        return out


def differences(agent, baseline) -> np.ndarray:
    """`d [W, S]`: agent `[W, S]` minus a paired baseline `[W, S]`, or minus a per-window baseline `[W]`."""
    agent, baseline = np.asarray(agent, np.float64), np.asarray(baseline, np.float64)
    if agent.ndim != 2:
        raise ValueError(f"agent values must be [windows, seeds], got shape {agent.shape}")
    if baseline.shape not in (agent.shape, agent.shape[:1]):
        raise ValueError(f"baseline shape {baseline.shape} matches neither {agent.shape} nor {agent.shape[:1]}")
    d = agent - (baseline[:, None] if baseline.ndim == 1 else baseline)
    if not np.all(np.isfinite(d)):
        raise ValueError("agent minus baseline has non-finite values; floor log returns with floor_log_returns")
    return d


def compare(agent, baseline, num_samples: int = 10_000, seed: int = 0) -> Comparison:
    """The module doc's statistics of agent minus baseline."""
    d = differences(agent, baseline)
    means, iqms = bootstrap_statistics(d, num_samples, seed)
    per_window = d.mean(axis=1)
    interval = lambda x: (float(np.percentile(x, 2.5)), float(np.percentile(x, 97.5)))
    return Comparison(
        mean=float(d.mean()),
        iqm=float(iqm(d.reshape(-1))),
        ci95=interval(means),
        iqm_ci95=interval(iqms),
        p_positive=float(np.mean(means > 0)),
        share_pairs_positive=float(np.mean(d > 0)),
        per_window=tuple(float(x) for x in per_window),
        per_window_min=tuple(float(x) for x in d.min(axis=1)),
        per_window_max=tuple(float(x) for x in d.max(axis=1)),
        wins=int(np.sum(per_window > 0)),
        losses=int(np.sum(per_window < 0)),
        ties=int(np.sum(per_window == 0)),
        num_windows=int(d.shape[0]),
        num_seeds=int(d.shape[1]),
    )


def floor_log_returns(values) -> np.ndarray:
    """Log returns with -inf (a wiped account) and anything below it raised to `LOG_RETURN_FLOOR`."""
    return np.maximum(np.asarray(values, np.float64), LOG_RETURN_FLOOR)


def notes(num_windows: int, num_seeds: int, overlapping: bool) -> list[str]:
    """The caveats the report prints next to the intervals."""
    out = []
    if num_windows < FEW_WINDOWS:
        out.append(
            f"Only {num_windows} test window(s): the interval resamples so few market regimes that it is wide and "
            "still under-covers (a percentile bootstrap over fewer than 5 windows is too narrow more often than "
            "5% of the time). Read it as indicative; add windows (walkforward.num_windows, a longer data span) "
            "rather than seeds to narrow it."
        )
    if num_seeds < 2:
        out.append("One seed per window: the interval carries no seed variation.")
    if overlapping:
        out.append(
            "Test spans overlap (walkforward.step_days < test_days): neighbouring windows share bars and are not "
            "independent, so the interval is too narrow."
        )
    return out
