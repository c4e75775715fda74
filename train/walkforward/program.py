"""The one-program walk-forward trainer: windows x sweep points x seeds in one jitted iteration.

Windows of equal shapes (the same env config, observation shape and market array shapes: rolling windows of
one length) form one group. A group's agents lie on one axis `A = windows x points x seeds` (seed fastest):
`make_train(cfg, env, mesh, per_agent=True)` runs them in one program (one after another on one CPU device,
vmapped on an accelerator, sharded over the devices when `A` is a multiple of the device count:
`train/parallel.py`), each agent with its window's `EnvParams` (leaves stacked `[A, ...]`)
and its point's hyper-parameters (`train.hyper`). Agent (window w, point g, seed k) starts from
`split(PRNGKey(seed + w), num_seeds)[k]`, the key `train.loop.train` gives seed k of window w's own run, so one
window and point trained here reproduce `python -m train.ppo` on that window (up to float reduction order).
Windows of other shapes (anchored, expanding spans) form their own groups: one program each.

The host loop calls the compiled iteration `num_iterations(cfg)` times (one host sync per iteration: the metrics,
for the NaN guard and each window's `metrics.jsonl`), then returns the same `Agents` as a per-window trainer.
"""

from __future__ import annotations

import copy
import os
import sys
import time

import jax
import numpy as np
from tqdm.auto import tqdm

from train import parallel
from train.config import num_iterations, to_dict, to_yaml
from train.errors import TrainingDiverged
from train.loggers import RunLogger
from train.loop import compile_ahead, reduce_seeds
from train.ppo import make_train
from train.rundir import write_run_files
from train.walkforward.agents import Agents
from train.walkforward.bundles import WindowData
from train.walkforward.sweep import hp_arrays, label


def shape_signature(window: WindowData) -> tuple:
    """What a window's program depends on: env config, observation and action shapes, params structure and shapes."""
    env, params = window.setup.train.env, window.setup.train.params
    leaves, treedef = jax.tree.flatten(params)
    return (env.config, env.observation_shape, env.num_actions, str(treedef)) + tuple(
        (np.shape(x), str(np.asarray(x).dtype)) for x in leaves
    )


def group_windows(windows: list[WindowData]) -> list[list[int]]:
    """Positions of `windows` grouped by `shape_signature`, in order of first appearance."""
    groups: dict = {}
    for i, w in enumerate(windows):
        groups.setdefault(shape_signature(w), []).append(i)
    return list(groups.values())


def agent_inputs(windows: list[WindowData], points: list[dict], num_seeds: int):
    """`(env_params [A, ...], hp {name: [A]}, seed_keys [A, 2])` of the agent axis (window, point, seed)."""
    per_window = len(points) * num_seeds
    params = [w.setup.train.params for w in windows for _ in range(per_window)]
    env_params = jax.tree.map(lambda *x: np.stack([np.asarray(a) for a in x]), *params)
    hp = {k: np.tile(v, len(windows)) for k, v in hp_arrays(points, [num_seeds] * len(points)).items()}
    keys = [np.asarray(jax.random.split(jax.random.PRNGKey(int(w.cfg.seed)), num_seeds)) for w in windows]
    seed_keys = np.concatenate([np.tile(k, (len(points), 1)) for k in keys])
    return env_params, hp, seed_keys


def _where(flat: int, points: list[dict], num_seeds: int, windows: list[WindowData]) -> str:
    w, rest = divmod(flat, len(points) * num_seeds)
    g, k = divmod(rest, num_seeds)
    return f"window {windows[w].span.index}, {label(points[g])}, seed {k}"


class GroupTrainer:
    """One shape group's program: built, compiled, iterated; see module doc."""

    def __init__(self, windows: list[WindowData], cfg, points: list[dict], mesh=None):
        self.windows, self.points, self.num_seeds = windows, points, int(cfg.num_seeds)
        self.num_agents = len(windows) * len(points) * self.num_seeds
        acfg = copy.deepcopy(cfg)
        acfg.num_seeds = self.num_agents  # the agent axis is the program's seed axis
        self.cfg = cfg
        self.fns = make_train(acfg, windows[0].setup.train.env, mesh, per_agent=True)
        env_params, hp, keys = agent_inputs(windows, points, self.num_seeds)
        self.inputs, self.keys = self.fns.place_inputs((env_params, hp), keys)

    def init(self):
        runner = self.fns.init(self.inputs, self.keys)
        self.iteration = compile_ahead(self.fns.iteration, self.inputs, runner, cache=self.fns.compiled)
        return runner

    def step(self, runner):
        """One iteration: `(runner, metrics {name: [A]})`; TrainingDiverged names the first non-finite agent."""
        runner, metrics = self.iteration(self.inputs, runner)
        metrics = self.fns.to_host(metrics)
        finite = np.asarray(metrics.pop("train/finite")).reshape(-1)
        metrics.pop("train/finite_data", None)
        if not finite.all():
            bad = _where(int(np.argmin(finite)), self.points, self.num_seeds, self.windows)
            raise TrainingDiverged(
                f"non-finite loss, gradient or parameters ({bad}; {int((~finite).sum())} agent(s) in all): lower "
                f"optim.lr (now {self.cfg.optim.lr:g}) or drop the sweep point, or keep optim.anneal_lr=true"
            )
        return runner, metrics

    def policies(self, runner) -> list[list]:
        """Per window, per point: `(params, batch_stats)` with leaves `[num_seeds, ...]` (host arrays)."""
        params, batch_stats = self.fns.to_host((runner.train.params, runner.train.batch_stats))
        K, G = self.num_seeds, len(self.points)
        take = lambda i: jax.tree.map(lambda a: a[i * K : (i + 1) * K], (params, batch_stats))
        return [[take(w * G + g) for g in range(G)] for w in range(len(self.windows))]


def _loggers(windows: list[WindowData]) -> list[RunLogger]:
    """Each window's run directory: config.yaml, features.json and its training curves (metrics.jsonl: the mean
    over the window's agents). Only metrics.jsonl: the windows train at the same time, and a backend such as wandb
    holds one run per process at a time; the walk-forward's own records go to the backends (`report.py`)."""
    out = []
    for w in windows:
        run_dir = str(w.cfg.logger.run_dir)
        os.makedirs(run_dir, exist_ok=True)
        write_run_files(run_dir, to_yaml(w.cfg), w.setup.features)
        cfg = copy.deepcopy(w.cfg)
        cfg.logger.backend = "none"
        out.append(RunLogger(cfg, run_dir, to_dict(w.cfg)))
    return out


def train_group(windows: list[WindowData], cfg, points: list[dict], mesh=None) -> tuple[list, float, object]:
    """Train one shape group; returns (per window, per point policies; wall seconds, compile included; network)."""
    t0 = time.perf_counter()
    trainer = GroupTrainer(windows, cfg, points, mesh)
    runner = trainer.init()
    n_it, frames = num_iterations(cfg), trainer.fns.frames_per_iteration
    per_window = len(points) * trainer.num_seeds
    spans = ", ".join(str(w.span.index) for w in windows)
    desc = f"windows [{spans}] x {len(points)} point(s) x {trainer.num_seeds} seed(s)"
    print(f"walk-forward: training {desc} in one program", file=sys.stderr)
    bar = tqdm(total=n_it * frames, unit="frames", unit_scale=True, dynamic_ncols=True, desc="ppo " + desc,
               file=sys.stderr, disable=not cfg.logger.progress)  # fmt: skip
    loggers = _loggers(windows)
    try:
        for it in range(n_it):
            runner, metrics = trainer.step(runner)
            for i, logger in enumerate(loggers):
                part = {k: np.asarray(v).reshape(-1)[i * per_window : (i + 1) * per_window] for k, v in metrics.items()}
                logger.log(reduce_seeds(part), step=(it + 1) * frames, iteration=it + 1)
            bar.update(frames)
    finally:
        bar.close()
        for logger in loggers:
            logger.close()
    return trainer.policies(runner), time.perf_counter() - t0, trainer.fns.network


def train_agents(windows: list[WindowData], cfg, points: list[dict] | None = None) -> Agents:
    """`num_seeds` agents per window and sweep point (`points`, `[{}]`: the config alone), every shape group in one
    program. `Agents.policies`: point 0's; `Agents.grid_policies[w][g]`: every point's. A group's wall time is
    split evenly over its windows (`Agents.seconds`)."""
    points = points or [{}]
    mesh = parallel.make_mesh(cfg)
    n = len(windows)
    grid_policies, seconds = [None] * n, [0.0] * n
    network = None
    for group in group_windows(windows):
        ws = [windows[i] for i in group]
        policies, wall, network = train_group(ws, cfg, points, mesh)
        for i, pol in zip(group, policies, strict=True):
            grid_policies[i], seconds[i] = pol, wall / len(group)
    return Agents(
        network=network,
        policies=[p[0] for p in grid_policies],
        seconds=seconds,
        run_dirs=[str(w.cfg.logger.run_dir) for w in windows],
        grid=list(points),
        grid_policies=grid_policies,
    )
