"""The trained agents of every window (`Agents`), and their deterministic policies' episodes on a span.

`train.walkforward.program.train_agents` trains them: windows x sweep points x seeds in one program per shape
group (a window alone reproduces `train.loop.train` on its fit span, seed keys included).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax

from train.evaluate import EpisodeRunner, make_episode_runner
from train.walkforward.bundles import EvalSpan
from train.walkforward.episodes import bar_minutes, episode_numbers


@dataclass
class Agents:
    network: Any  # the flax module shared by every window's policy
    policies: list  # per window: (params, batch_stats), leaves [num_seeds, ...] (host arrays); sweep point 0's
    seconds: list = field(default_factory=list)  # per window: wall time of its training, compile included
    run_dirs: list = field(default_factory=list)  # per window: the trainer's run directory
    grid: list = field(default_factory=lambda: [{}])  # the sweep points, {config key: value} ([{}]: no sweep)
    grid_policies: list | None = None  # per window, per point: (params, batch_stats) as `policies`; None: policies

    def window_points(self, i: int) -> list:
        """Window i's policies, one per sweep point."""
        return [self.policies[i]] if self.grid_policies is None else self.grid_policies[i]


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
