"""Each window's envs: the trainer's setup on the fit span, and deterministic episodes on the test (and val) span.

* Training: `train.data.build_setup` on the rows of the window's fit span alone (`env.test_split_start` off),
  so `env.features=zscore_train` fits its z-score statistics on that span only (`trading_jax.features.fit_zscore`)
  and no later bar can reach the agent's training.
* Evaluation spans: one episode (`random_start=False`, no length limit, fixed cash, docs/semantics.md §2.3) whose first
  step acts on the first execution bar at or after the span's start and whose last bar closes at its end. Its
  observation windows reach back before the start (past bars only, docs/semantics.md §1.6), so the market is built from
  a warm-up prefix and then cut at the span's first bar (`market_from`); the features use the frozen statistics
  of the window's fit span.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

import trading_jax
from trading_jax.timeframes import normalize_timeframes
from train.config import ConfigError
from train.data import EnvBundle, Setup, build_eval_bundle, build_setup
from train.walkforward.windows import Span, WindowSpan, slice_span


@dataclass
class EvalSpan:
    """A deterministic episode over one span, plus the execution closes before it (for the momentum rule)."""

    bundle: EnvBundle  # market from the span's first execution bar; num_steps = bars - 1
    closes: np.ndarray  # [prefix + bars] float64 execution closes: `prefix` bars before the span, then its own
    prefix: int

    @property
    def times(self) -> pd.DatetimeIndex:
        return self.bundle.market.exec_times


@dataclass
class WindowData:
    span: WindowSpan
    cfg: Any  # the window's trainer config (own run_dir, no test split)
    setup: Setup  # build_setup on the fit span
    test: EvalSpan
    val: EvalSpan | None


def market_from(market: trading_jax.Market, first: int) -> trading_jax.Market:
    """The same market from execution bar `first` on. The feature tables are kept whole: each bar's window is
    addressed through its row index, so every observation is bit-identical to the uncut market's."""
    data = market.data.replace(
        ohlc=market.data.ohlc[first:], row_index=tuple(r[first:] for r in market.data.row_index)
    )
    return dataclasses.replace(
        market, data=data, exec_times=market.exec_times[first:], exec_bars=market.exec_bars.iloc[first:]
    )


def warmup(cfg, extra_bars: int = 0) -> pd.Timedelta:
    """A generous look-back before a span's start: twice the longest observation window plus the coarsest bar
    (which covers the coarse-timeframe offsets of docs/semantics.md §1.5), plus `extra_bars` execution bars."""
    e = cfg.env
    tfs, ws, exec_tf = normalize_timeframes(list(e.time_frames), list(e.window_sizes), e.execute_on)
    longest = max(tf.timedelta * w for tf, w in zip(tfs, ws, strict=True))
    coarsest = max(tf.timedelta for tf in (*tfs, exec_tf))
    return 2 * (longest + coarsest) + exec_tf.timedelta * extra_bars


def eval_span(cfg, frame: pd.DataFrame, span: Span, features, what: str, extra_bars: int = 0) -> EvalSpan:
    """The deterministic episode over `span` (see module doc); `features`: the fit span's frozen statistics."""
    piece = slice_span(frame, (span[0] - warmup(cfg, extra_bars), span[1]))
    try:
        whole = build_eval_bundle(cfg, piece, features)
    except ValueError as err:
        raise ConfigError(f"{what} span {span[0]} .. {span[1]}: {err}") from None
    market = whole.market
    first = int(np.searchsorted(market.exec_times, span[0]))
    if first >= market.num_bars - 1:
        raise ConfigError(
            f"{what} span {span[0]} .. {span[1]} holds {market.num_bars - first} execution bar(s); an episode "
            "needs at least 2: lengthen the span (walkforward.test_days / val_days)"
        )
    cut = market_from(market, first)
    env, params = trading_jax.make(cut, whole.env.config)
    closes = market.exec_bars["close"].to_numpy(np.float64)
    return EvalSpan(EnvBundle(env, params, cut, cut.num_bars - 1), closes, first)


def window_config(cfg, run_dir: str, index: int):
    """The trainer config of window `index`: its own run directory, no test split (the window gives it), and
    `seed + index`, so that each window's agents are independent draws (the bootstrap resamples them as such);
    its training is `python -m train.ppo seed=<seed + index>` on the window's fit span."""
    out = copy.deepcopy(cfg)
    out.seed = int(cfg.seed) + index
    out.env.test_split_start = None
    out.logger.run_dir = run_dir
    out.checkpoint.resume = None
    return out


def prepare_window(cfg, frame: pd.DataFrame, span: WindowSpan, run_dir: str, momentum_bars: int) -> WindowData:
    """Build one window's training setup (features fitted on its fit span) and its evaluation spans."""
    wcfg = window_config(cfg, run_dir, span.index)
    fit = slice_span(frame, span.fit)
    try:
        setup = build_setup(wcfg, fit)
    except ValueError as err:
        raise ConfigError(f"window {span.index}, train span {span.fit[0]} .. {span.fit[1]}: {err}") from None
    test = eval_span(wcfg, frame, span.test, setup.features, f"window {span.index}: test", momentum_bars)
    val = None
    if span.val is not None:
        val = eval_span(wcfg, frame, span.val, setup.features, f"window {span.index}: val", momentum_bars)
    return WindowData(span, wcfg, setup, test, val)
