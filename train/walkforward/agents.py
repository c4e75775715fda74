"""Train the agents of every window, and evaluate their deterministic policies on a span.

`train_agents(windows, cfg)` is the one place that trains: today it runs the existing trainer (`train.loop.train`)
window after window, `num_seeds` seeds vmapped in each, reusing one `make_train` and its compiled programs for
every window of the same shapes (`fns=`). A trainer that runs windows x seeds in one program replaces this
function alone: it must return the same `Agents` (per window, params and batch stats with a leading seed axis).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import jax

from train import parallel
from train.evaluate import EpisodeRunner, make_episode_runner
from train.loop import train
from train.ppo import make_train
from train.walkforward.bundles import EvalSpan, WindowData
from train.walkforward.episodes import bar_minutes, episode_numbers


@dataclass
class Agents:
    network: Any  # the flax module shared by every window's policy
    policies: list  # per window: (params, batch_stats), leaves [num_seeds, ...] (host arrays)
    seconds: list = field(default_factory=list)  # per window: wall time of its training, compile included
    run_dirs: list = field(default_factory=list)  # per window: the trainer's run directory


def _static_signature(window: WindowData) -> tuple:
    env = window.setup.train.env
    return env.config, env.observation_shape, env.num_actions


def train_agents(windows: list[WindowData], cfg) -> Agents:
    """Train `num_seeds` agents on each window's fit span (its setup); see module doc. `cfg`: the trainer config
    shared by every window (each window's own copy only adds its run directory)."""
    fns, signature, agents = None, None, None
    for w in windows:
        if fns is None or _static_signature(w) != signature:
            fns = make_train(cfg, w.setup.train.env, parallel.make_mesh(cfg))
            signature = _static_signature(w)
        t0 = time.perf_counter()
        print(f"window {w.span.index}: training on {w.span.fit[0]} .. {w.span.fit[1]}", file=sys.stderr)
        result = train(w.cfg, setup=w.setup, fns=fns)
        state = result.runner.train
        policy = fns.to_host((state.params, state.batch_stats))
        if agents is None:
            agents = Agents(network=fns.network, policies=[])
        agents.policies.append(policy)
        agents.seconds.append(time.perf_counter() - t0)
        agents.run_dirs.append(result.run_dir)
    return agents


class PolicyEpisodes:
    """The deterministic policy's episode (`train.evaluate`), compiled once per episode length and env config and
    run on any span of that shape (the span's market is in its env params)."""

    def __init__(self, network):
        self.network = network
        self.runners: dict = {}

    def runner(self, span: EvalSpan) -> EpisodeRunner:
        bundle = span.bundle
        sig = (bundle.env.config, bundle.env.observation_shape, bundle.num_steps)
        if sig not in self.runners:
            self.runners[sig] = make_episode_runner(bundle, self.network)
        return EpisodeRunner(bundle, self.runners[sig].fn)

    def __call__(self, span: EvalSpan, policy, key):
        """`({metric: [per seed]}, equity [seeds, bars])` of the policy on `span`; seed k uses `split(key, K)[k]`."""
        params, batch_stats = jax.tree.map(jax.numpy.asarray, policy)
        leverage = float(span.bundle.env.config.leverage)
        rows = self.runner(span)(params, batch_stats, key)
        return episode_numbers(rows, leverage, bar_minutes(span.bundle))
