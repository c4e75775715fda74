"""The outputs of a walk-forward run: `walkforward.json`, `walkforward.md`, the plots and the logger records.

`walkforward.json`: `{"windows": [{"train": [start, end], "test": [start, end], "agent": {metric: [per seed]},
"baselines": {name: {metric: [per episode]}}, ...}], "aggregate": {"agent_minus_<baseline>": {"mean", "iqm",
"ci95", ...}, "p_beats_buy_and_hold", "notes", ...}, "config": {...}, "definitions": {...}}`; spans are
half-open `[start, end)` ISO timestamps, metrics are `log_return, sharpe, max_drawdown, trades` per episode.
Each window also holds `fit` and `val` (spans), `test_bars` (first and last execution bar of the test episode,
and its bar count), `val_agent` (the agent's numbers on the val tail, when `walkforward.val_days > 0`),
`train_seconds` and the trainer's `run_dir`. With a sweep (`sweep.*`), each window holds `sweep` (`selected`: the
index of the point whose agents are the window's `agent`, chosen on the val tail; `points`: every point's `val`
and `test` numbers) and the aggregate holds `sweep` (per point: mean val and test metric, windows that selected it).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from train.loggers import RunLogger
from train.walkforward import plots
from train.walkforward.baselines import BASELINES
from train.walkforward.episodes import METRIC_KEYS
from train.walkforward.stats import LOG_RETURN_FLOOR

DEFINITIONS = {
    "spans": "half-open [start, end); the agent trains on 'fit' (the train span without its 'val' tail)",
    "agent": "the deterministic policy (argmax, BatchNorm eval mode) of each seed, one episode over the test span",
    "paired baselines": "buy_and_hold, buy_and_hold_1x, flat and momentum run once per agent seed with that seed's "
    "evaluation key (same slippage draws); agent minus baseline pairs per seed",
    "random": "uniform random actions, walkforward.random_seeds episodes per window; compared with their window mean",
    "ci95": "2.5th-97.5th percentiles of the mean difference over a hierarchical bootstrap: windows resampled "
    "with replacement, then seeds within each resampled window (not stratified by window)",
    "iqm": "interquartile mean (rliable): mean of the middle 50% of the (window, seed) differences",
    "p_beats_buy_and_hold": "share of bootstrap replicates whose mean agent-minus-buy_and_hold difference is > 0",
    "share_pairs_positive": "share of (window, seed) pairs where the agent's value beats the baseline's",
    "log_return floor": f"log returns below {LOG_RETURN_FLOOR:.4g} (a wiped account) enter the statistics at it",
}


def _finite(value):
    """JSON-safe: non-finite floats -> None, NumPy -> Python, recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return _finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _span(span) -> list[str] | None:
    return None if span is None else [span[0].isoformat(), span[1].isoformat()]


def window_record(r) -> dict:
    s = r.span
    record = {
        "index": s.index,
        "train": _span(s.train),
        "test": _span(s.test),
        "fit": _span(s.fit),
        "val": _span(s.val),
        "test_bars": [r.times[0].isoformat(), r.times[-1].isoformat(), len(r.times)],
        "agent": r.agent,
        "baselines": r.baselines,
        "train_seconds": r.train_seconds,
        "run_dir": r.run_dir,
    }
    if r.val_agent is not None:
        record["val_agent"] = r.val_agent
    if r.grid is not None:
        record["sweep"] = {"selected": r.selected, "points": r.grid}
    return record


def build_document(settings, results, stats: dict, wall_seconds: float) -> dict:
    return _finite(
        {
            "windows": [window_record(r) for r in results],
            "aggregate": stats,
            "config": settings.to_dict(),
            "definitions": DEFINITIONS,
            "wall_seconds": wall_seconds,
        }
    )


# --------------------------------------------------------------------------------------- markdown
def _num(x, digits: int = 4, signed: bool = True) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return (f"{x:+.{digits}g}" if signed else f"{x:.{digits}g}") if x else "0"


def _mean_std(values, signed: bool = True) -> str:
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    if len(v) == 1:
        return _num(float(v[0]), signed=signed)
    return f"{_num(float(np.nanmean(v)), signed=signed)} ± {float(np.nanstd(v)):.3g}"


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_summary(doc: dict) -> str:
    """The aggregate table (agent minus each baseline) with the notes."""
    agg = doc["aggregate"]
    metric, w, k = agg["metric"], agg["num_windows"], agg["num_seeds"]
    lines = [
        f"### Agent minus baseline, test-span {metric} ({w} windows x {k} seeds, {agg['bootstrap_samples']} "
        "hierarchical-bootstrap replicates)",
        "",
        _row(["baseline", "mean", "IQM", "95% CI (mean)", "95% CI (IQM)", "windows won", "P(mean > 0)"]),
        _row(["---"] + ["---:"] * 6),
    ]
    for name in BASELINES:
        c = agg[f"agent_minus_{name}"]
        lines.append(
            _row(
                [
                    name,
                    _num(c["mean"]),
                    _num(c["iqm"]),
                    f"[{_num(c['ci95'][0])}, {_num(c['ci95'][1])}]",
                    f"[{_num(c['iqm_ci95'][0])}, {_num(c['iqm_ci95'][1])}]",
                    f"{c['wins']} of {c['num_windows']}",
                    f"{c['p_positive']:.3f}",
                ]
            )
        )
    lines += ["", f"P(agent beats buy-and-hold) = {agg['p_beats_buy_and_hold']:.3f} (bootstrap share of mean > 0)."]
    lines += [f"\n> {note}" for note in agg["notes"]]
    return "\n".join(lines)


def _sweep_line(agg: dict) -> str:
    sweep = agg.get("sweep")
    if not sweep:
        return ""
    return (f" A sweep of {len(sweep['points'])} points, selected per window on its val tail: the agent below is "
            "each window's selected point (the grid is at the end).")


def markdown(doc: dict, has_plots: bool) -> str:
    agg, metric = doc["aggregate"], doc["aggregate"]["metric"]
    wf, cfg = doc["config"]["walkforward"], doc["config"]
    head = [
        "# Walk-forward evaluation",
        "",
        f"{agg['num_windows']} windows ({'anchored' if wf['anchored'] else 'rolling'}: train {wf['train_days']:g} "
        f"days, test {wf['test_days']:g} days, val {wf['val_days']:g} days), {agg['num_seeds']} seeds, "
        f"{cfg['collector']['total_frames']:,} frames per seed and window; fee {cfg['env']['transaction_fee']}, "
        f"slippage {cfg['env']['slippage']}, leverage {cfg['env']['leverage']}. Wall time "
        f"{doc['wall_seconds']:.0f} s." + _sweep_line(agg),
        "",
        markdown_summary(doc),
        "",
        f"### Per test window: {metric} (mean ± std over seeds / episodes)",
        "",
        _row(["window", "train", "test", "agent", *BASELINES, "agent - buy_and_hold"]),
        _row(["---"] * 3 + ["---:"] * (len(BASELINES) + 2)),
    ]
    day = lambda s: s[:10]
    for i, win in enumerate(doc["windows"]):
        cells = [win["index"], f"{day(win['train'][0])} .. {day(win['train'][1])}", f"{day(win['test'][0])} .. "
                 f"{day(win['test'][1])}", _mean_std(win["agent"][metric])]
        cells += [_mean_std(win["baselines"][b][metric]) for b in BASELINES]
        cells.append(_num(agg["agent_minus_buy_and_hold"]["per_window"][i]))
        head.append(_row(cells))
    head += ["", "### Per test window: the agent", "", _row(["window", "log_return", "sharpe", "max_drawdown",
             "trades"]), _row(["---"] + ["---:"] * 4)]
    for win in doc["windows"]:
        a = win["agent"]
        cells = [_mean_std(a[m], signed=m in ("log_return", "sharpe")) for m in METRIC_KEYS]
        head.append(_row([win["index"], *cells]))
    head += sweep_markdown(doc)
    if has_plots:
        head += ["", "![forest plot](plots/forest.png)", "", "![equity curves](plots/equity_curves.png)"]
    return "\n".join(head) + "\n"


def sweep_markdown(doc: dict) -> list[str]:
    """The grid table (every point's mean val and test metric) and the selection, or nothing without a sweep."""
    sweep = doc["aggregate"].get("sweep")
    if not sweep:
        return []
    m = sweep["metric"]
    lines = [
        "",
        f"### Sweep grid: mean {m} over windows (seed means); selection on the val tail only",
        "",
        _row(["point", f"val {m}", f"test {m}", "windows selected"]),
        _row(["---", "---:", "---:", "---:"]),
    ]
    for p in sweep["points"]:
        lines.append(_row([p["label"], _num(p["val_mean"]), _num(p["test_mean"]), p["windows_selected"]]))
    pairs = zip(doc["windows"], sweep["selected"], strict=True)
    chosen = ", ".join(f"{w['index']}: {sweep['points'][s]['label']}" for w, s in pairs)
    lines += ["", f"Selected per window: {chosen}. The tables above use each window's selected point."]
    return lines


# --------------------------------------------------------------------------------------- writing
def log_results(settings, run_dir: str, doc: dict, images: dict) -> None:
    """The per-window and aggregate numbers to `metrics.jsonl` and the `logger.backend`s (step = window index;
    the aggregate at step = number of windows)."""
    metric = doc["aggregate"]["metric"]
    with RunLogger(settings.train, run_dir, settings.to_dict()) as logger:
        for win in doc["windows"]:
            record = {f"walkforward/agent_{metric}": float(np.mean(win["agent"][metric]))}
            for name in BASELINES:
                record[f"walkforward/{name}_{metric}"] = float(np.mean(win["baselines"][name][metric]))
            logger.log(record, step=win["index"])
        agg, step = doc["aggregate"], len(doc["windows"])
        record = {"walkforward/p_beats_buy_and_hold": agg["p_beats_buy_and_hold"]}
        for g, p in enumerate(agg.get("sweep", {}).get("points", [])):
            record[f"walkforward/sweep/{g}/val_{metric}"] = p["val_mean"]
            record[f"walkforward/sweep/{g}/test_{metric}"] = p["test_mean"]
        for name in BASELINES:
            c = agg[f"agent_minus_{name}"]
            values = {"mean": c["mean"], "iqm": c["iqm"], "ci95_lo": c["ci95"][0], "ci95_hi": c["ci95"][1]}
            record.update({f"walkforward/agent_minus_{name}/{key}": value for key, value in values.items()})
        logger.log(record, step=step)
        for key, path in images.items():
            logger.log_image(f"walkforward/{key}", path, step)


def write_all(run_dir: str, settings, results, stats: dict, wall_seconds: float) -> dict:
    """Write walkforward.json, walkforward.md and the plots; log the numbers; return the JSON document."""
    doc = build_document(settings, results, stats, wall_seconds)
    with open(os.path.join(run_dir, "walkforward.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
    images = {}
    if settings.wf.plots:
        images["forest"] = plots.forest(results, stats, os.path.join(run_dir, "plots", "forest.png"))
        images["equity_curves"] = plots.equity_curves(results, os.path.join(run_dir, "plots", "equity_curves.png"))
    with open(os.path.join(run_dir, "walkforward.md"), "w") as fh:
        fh.write(markdown(doc, bool(images)))
    log_results(settings, run_dir, doc, images)
    return doc
