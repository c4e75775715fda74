"""Orchestration of a walk-forward run and its command line (`python -m train.walkforward`).

1. The windows' spans (`windows.py`) over the data, and each window's envs (`bundles.py`): features fitted on
   the window's fit span only.
2. `program.train_agents`: `num_seeds` agents per window and sweep point, windows x points x seeds in one program.
3. Per window: the deterministic policy of every seed (and sweep point) on the test span and on the val tail, if
   any; with a sweep, the point with the best mean val metric is the window's agent (`sweep.select`); and the
   baselines through the same env (`baselines.py`).
4. Statistics (`stats.py`), then `walkforward.json`, `walkforward.md`, plots and the logger records (`report.py`).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import jax
import numpy as np
import pandas as pd

from train import compile_cache, parallel
from train.config import ConfigError, describe_keys
from train.data import load_frame
from train.evaluate import eval_key
from train.hyper import SWEEP_KEYS
from train.loop import TrainingDiverged, resolve_run_dir
from train.walkforward import report
from train.walkforward.agents import Agents, PolicyEpisodes
from train.walkforward.baselines import BASELINES, PAIRED, run_baselines
from train.walkforward.bundles import WindowData, prepare_window
from train.walkforward.config import TRAIN_DEFAULTS, Settings, describe_walkforward_keys, load_settings
from train.walkforward.episodes import TableEpisodes
from train.walkforward.program import train_agents
from train.walkforward.stats import compare, floor_log_returns, notes
from train.walkforward.sweep import label, select
from train.walkforward.windows import WindowSpan, overlapping_test_spans, spans_from_config

RANDOM_STREAM = 1  # fold_in tag of the random baseline's keys (the agent's keys are the window's eval key)


@dataclass
class WindowResult:
    span: WindowSpan
    times: pd.DatetimeIndex  # execution bars of the test episode
    agent: dict  # metric -> [per seed]
    baselines: dict  # baseline -> metric -> [per episode]
    equity: dict  # "agent" and each baseline -> [episodes, bars] PV / PV_0
    val_agent: dict | None  # metric -> [per seed] on the val tail, or None
    train_seconds: float
    run_dir: str
    grid: list | None = None  # with a sweep, per point: {"point", "label", "val", "test"} ({metric: [per seed]})
    selected: int = 0  # the sweep point whose agents are this window's (best mean val metric)


def _mean(values: dict, metric: str) -> float:
    v = np.asarray(values[metric], np.float64)
    v = floor_log_returns(v) if metric == "log_return" else v
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


def evaluate_points(w: WindowData, pols: list, grid: list, policies: PolicyEpisodes, key, metric: str):
    """Every sweep point's agents (`pols[g]`, point `grid[g]`) on the window's test span and val tail;
    `(selected point, tests [(metrics, equity)], vals [metrics] or None, the grid's records or None)`."""
    tests = [policies(w.test, p, key) for p in pols]
    vals = None if w.val is None else [policies(w.val, p, key)[0] for p in pols]
    if len(pols) == 1:
        return 0, tests, vals, None
    selected = int(select(np.asarray([[_mean(v, metric) for v in vals]]))[0])
    records = [
        {"point": point, "label": label(point), "val": vals[g], "test": tests[g][0]} for g, point in enumerate(grid)
    ]
    return selected, tests, vals, records


def evaluate_windows(windows: list[WindowData], agents: Agents, settings: Settings) -> list[WindowResult]:
    """The agents and the baselines on every window's test span (agents also on the val tail)."""
    cfg, wf = settings.train, settings.wf
    seed, num_seeds = int(cfg.seed), int(cfg.num_seeds)
    policies, tables = PolicyEpisodes(agents.network), TableEpisodes()
    out = []
    for i, (w, seconds, run_dir) in enumerate(zip(windows, agents.seconds, agents.run_dirs, strict=True)):
        key = eval_key(seed, w.span.index)
        points = agents.window_points(i)
        sel, tests, vals, grid = evaluate_points(w, points, agents.grid, policies, key, str(wf.metric))
        agent, agent_equity = tests[sel]
        keys = jax.random.split(key, num_seeds)
        random_keys = jax.random.split(jax.random.fold_in(key, RANDOM_STREAM), int(wf.random_seeds))
        rng = np.random.default_rng([seed, w.span.index])
        base, base_equity = run_baselines(w.test, keys, random_keys, int(wf.momentum_bars), tables, rng)
        val = None if vals is None else vals[sel]
        equity = {"agent": agent_equity, **base_equity}
        out.append(WindowResult(w.span, w.test.times, agent, base, equity, val, seconds, run_dir, grid, sel))
    return out


def _values(results: list[WindowResult], metric: str, name: str) -> np.ndarray:
    rows = [r.agent[metric] if name == "agent" else r.baselines[name][metric] for r in results]
    values = np.asarray(rows, np.float64)
    return floor_log_returns(values) if metric == "log_return" else values


def aggregate(results: list[WindowResult], settings: Settings, overlapping: bool) -> dict:
    """`agent_minus_<baseline>` statistics of `walkforward.metric`, `p_beats_buy_and_hold` and the notes."""
    wf = settings.wf
    metric, n, seed = str(wf.metric), int(wf.bootstrap_samples), int(settings.train.seed)
    agent = _values(results, metric, "agent")
    out = {"metric": metric, "num_windows": agent.shape[0], "num_seeds": agent.shape[1], "bootstrap_samples": n}
    for name in BASELINES:
        base = _values(results, metric, name)
        base = base if name in PAIRED else base.mean(axis=1)
        out[f"agent_minus_{name}"] = compare(agent, base, n, seed).to_dict()
    out["p_beats_buy_and_hold"] = out["agent_minus_buy_and_hold"]["p_positive"]
    out["notes"] = notes(agent.shape[0], agent.shape[1], overlapping)
    if results and results[0].grid is not None:
        out["sweep"] = sweep_summary(results, metric)
    return out


def sweep_summary(results: list[WindowResult], metric: str) -> dict:
    """The whole grid: per point its mean val and test metric over windows (seed means first) and how many windows
    selected it; the selection per window. The headline statistics above use the selected points."""
    points = []
    for g, rec in enumerate(results[0].grid):
        val = [_mean(r.grid[g]["val"], metric) for r in results]
        test = [_mean(r.grid[g]["test"], metric) for r in results]
        chosen = sum(r.selected == g for r in results)
        points.append({"point": rec["point"], "label": rec["label"], "val_mean": float(np.nanmean(val)),
                       "test_mean": float(np.nanmean(test)), "val_per_window": val, "test_per_window": test,
                       "windows_selected": chosen})  # fmt: skip
    return {"metric": metric, "selected": [r.selected for r in results], "points": points}


def prepare_windows(settings: Settings, run_dir: str, frame: pd.DataFrame | None = None):
    """`(spans, windows)` of the run: spans from the data, then each window's envs."""
    data = load_frame(settings.train, frame)
    spans = spans_from_config(data.index, settings.wf)
    windows = [
        prepare_window(
            settings.train, data, s, os.path.join(run_dir, "windows", f"w{s.index:02d}"), int(settings.wf.momentum_bars)
        )
        for s in spans
    ]
    return spans, windows


def run_walkforward(settings: Settings, frame: pd.DataFrame | None = None) -> tuple[str, dict]:
    """Run the walk-forward analysis; returns `(run_dir, the walkforward.json document)`."""
    t0 = time.perf_counter()
    run_dir = resolve_run_dir(settings.train)
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        raise ConfigError(f"logger.run_dir={run_dir} is not empty; give a new logger.run_dir for this walk-forward run")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.yaml"), "w") as fh:
        fh.write(settings.to_yaml())
    spans, windows = prepare_windows(settings, run_dir, frame)
    agents = train_agents(windows, settings.train, settings.grid)
    results = evaluate_windows(windows, agents, settings)
    stats = aggregate(results, settings, overlapping_test_spans(spans))
    doc = report.write_all(run_dir, settings, results, stats, wall_seconds=time.perf_counter() - t0)
    return run_dir, doc


USAGE = """usage: python -m train.walkforward [CONFIG.yaml ...] [group.key=value ...]

Walk-forward evaluation: for each window, train num_seeds PPO agents on the train span (features fitted on it
only), evaluate the deterministic policies on the following test span, and compare them with buy-and-hold
(at the config's leverage and at 1x), flat, random and momentum baselines run through the same env. Writes
walkforward.json, walkforward.md and plots into the run directory.
  python -m train.walkforward walkforward.num_windows=6 walkforward.train_days=21 num_seeds=8
Hyper-parameter sweeps, every point trained in the same program as the seeds, selected per window on its
validation tail (never its test span):
  python -m train.walkforward walkforward.val_days=3 sweep.optim.lr=[1e-4,3e-4,1e-3] sweep.loss.entropy_coeff=[0,0.01]
Sweepable keys: {sweep_keys}

Walk-forward keys (type, default):
{wf_keys}

Trainer keys, as python -m train.ppo (walk-forward defaults: {defaults}):
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        sweep_keys, defaults = " ".join("sweep." + k for k in SWEEP_KEYS), " ".join(TRAIN_DEFAULTS)
        usage = USAGE.format(wf_keys=describe_walkforward_keys(), defaults=defaults, sweep_keys=sweep_keys)
        print(usage + describe_keys())
        return 0
    t0 = time.perf_counter()
    try:
        settings = load_settings(argv)
        parallel.initialize(settings.train)
        compile_cache.enable(settings.train.compilation_cache)  # as python -m train.ppo: re-runs skip compiles
        run_dir, doc = run_walkforward(settings)
    except ConfigError as err:
        first, *rest = str(err).splitlines() or [""]
        more = " (python -m train.walkforward --help lists the keys)" if rest else ""
        print(f"error: {first}{more}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(report.markdown_summary(doc))
    print(f"run_dir: {run_dir}\nwall time: {time.perf_counter() - t0:.1f}s")
    return 0
