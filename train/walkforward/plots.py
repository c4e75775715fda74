"""The walk-forward figures (matplotlib `Figure`, no pyplot): per-window equity curves and a forest plot."""

from __future__ import annotations

import math
import os

import numpy as np

MAX_EQUITY_PANELS = 16  # windows drawn in the equity figure (the first ones); the JSON has them all
BASELINE_STYLE = {
    "buy_and_hold": ("tab:orange", "-"),
    "buy_and_hold_1x": ("tab:orange", ":"),
    "flat": ("grey", "--"),
    "random": ("tab:purple", "-"),
    "momentum": ("tab:green", "-"),
}


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=90)
    os.replace(tmp, path)
    return path


def equity_curves(results, path: str) -> str:
    """One panel per test window: the agent's median PV / PV_0 over seeds with the seeds' range shaded, and each
    baseline's median over its episodes."""
    from matplotlib.figure import Figure

    shown = results[:MAX_EQUITY_PANELS]
    cols = min(len(shown), 4)
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).reshape(-1)
    for ax, r in zip(axes, shown, strict=False):
        t = r.times
        agent = r.equity["agent"]
        ax.fill_between(t, agent.min(axis=0), agent.max(axis=0), color="tab:blue", alpha=0.25, lw=0)
        ax.plot(t, np.median(agent, axis=0), color="tab:blue", lw=1.6, label=f"agent (median, {len(agent)} seeds)")
        for name, (color, style) in BASELINE_STYLE.items():
            ax.plot(t, np.median(r.equity[name], axis=0), color=color, ls=style, lw=1.0, label=name)
        start, end = r.span.test
        ax.set_title(f"window {r.span.index}: test {start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", rotation=30)
    for ax in axes[len(shown) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("PV / PV0")
    axes[0].legend(fontsize=6, loc="best")
    more = f" (first {len(shown)} of {len(results)})" if len(results) > len(shown) else ""
    fig.suptitle(f"Test-span equity per window{more}", fontsize=10)
    return _save(fig, path)


def forest(results, stats: dict, path: str, baselines=("buy_and_hold", "momentum", "random")) -> str:
    """Per baseline, agent minus baseline per window (seed mean, seed range as a bar) and the aggregate mean
    with its 95% hierarchical-bootstrap interval at the bottom."""
    from matplotlib.figure import Figure

    metric = stats["metric"]
    n = len(results)
    fig = Figure(figsize=(4.0 * len(baselines), 1.2 + 0.32 * (n + 2)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(baselines), sharey=True)).reshape(-1)
    y = np.arange(n)[::-1] + 2
    for ax, name in zip(axes, baselines, strict=True):
        comp = stats[f"agent_minus_{name}"]
        mid = np.asarray(comp["per_window"])
        ax.hlines(y, comp["per_window_min"], comp["per_window_max"], color="tab:blue", lw=1.0)
        ax.plot(mid, y, "o", color="tab:blue", ms=4)
        ci = comp["ci95"]
        ax.hlines(0.0, ci[0], ci[1], color="black", lw=2.5)
        ax.plot([comp["mean"]], [0.0], "D", color="black", ms=7)
        ax.axvline(0.0, color="grey", ls="--", lw=0.8)
        ax.set_title(f"agent - {name}\nmean {comp['mean']:+.3g}, 95% CI [{ci[0]:+.3g}, {ci[1]:+.3g}]", fontsize=9)
        ax.set_xlabel(f"{metric} difference", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks([0.0, *y], ["aggregate", *[f"window {r.span.index}" for r in results]])
    note = " (few windows: wide interval)" if n < 5 else ""
    fig.suptitle(f"Agent minus baseline per test window{note}", fontsize=10)
    return _save(fig, path)
