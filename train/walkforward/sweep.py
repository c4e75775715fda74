"""Hyper-parameter sweeps of a walk-forward run: `sweep.<key>=[v1,v2,...]` keys, their grid and the selection.

    python -m train.walkforward walkforward.val_days=3 sweep.optim.lr=[1e-4,3e-4,1e-3] sweep.loss.entropy_coeff=[0,0.01]

The grid is the cartesian product of the swept values (points in key order, the last key fastest). Every point
of every window is trained in the same program as the seeds (`train.hyper`: traced per-agent hyper-parameters),
each point with the window's seed keys. Selection uses each window's validation tail only (never its test span):
per window, the point with the best mean `walkforward.metric` over seeds on the val tail.
"""

from __future__ import annotations

import difflib
import itertools
import math

import numpy as np

from train.config import ConfigError
from train.hyper import SWEEP_KEYS

PREFIX = "sweep."


def _numbers(key: str, value) -> list[float]:
    """A list of finite numbers from a YAML value or a command-line text like `[1e-4,3e-4]` (or one number)."""
    if isinstance(value, str):
        text = value.strip()
        text = text[1:-1] if text.startswith("[") and text.endswith("]") else text
        value = [v for v in (p.strip() for p in text.split(",")) if v]
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        out = []
    if not out or not all(math.isfinite(v) for v in out) or isinstance(value, bool):
        raise ConfigError(f"{PREFIX}{key}={value!r}: give a list of numbers, e.g. {PREFIX}{key}=[1e-4,3e-4]")
    if len(set(out)) != len(out):
        raise ConfigError(f"{PREFIX}{key}={out}: the values repeat")
    return out


def check_key(key: str) -> str:
    """`key` (without `sweep.`) if it can be swept, else a ConfigError naming the valid keys."""
    if key not in SWEEP_KEYS:
        close = difflib.get_close_matches(key, list(SWEEP_KEYS), n=1, cutoff=0.5)
        hint = f" Did you mean {PREFIX}{close[0]}?" if close else ""
        valid = ", ".join(PREFIX + k for k in SWEEP_KEYS)
        raise ConfigError(f"{PREFIX}{key}: not a sweepable key.{hint} Sweepable keys: {valid}")
    return key


def parse_item(item: str) -> tuple[str, list[float]]:
    """`sweep.<key>=<values>` from the command line -> `(key, values)`."""
    name, _, value = item.partition("=")
    key = check_key(name.lstrip("+").removeprefix(PREFIX))
    return key, _numbers(key, value)


def flatten(group, prefix: str = "") -> dict[str, object]:
    """A YAML `sweep:` group, nested (`optim: {lr: [...]}`) or dotted (`optim.lr: [...]`), as `{key: value}`."""
    if not isinstance(group, dict):
        raise ConfigError("the sweep group of a config file must be a mapping, e.g. sweep: {optim.lr: [1e-4, 3e-4]}")
    out = {}
    for k, v in group.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[check_key(key)] = v
    return {k: _numbers(k, v) for k, v in out.items()}


def grid(sweep: dict[str, list[float]]) -> list[dict[str, float]]:
    """The cartesian product of the swept values, `[{config key: value}]`; `[{}]` (one point) without a sweep."""
    keys = list(sweep)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweep[k] for k in keys))]


def hp_arrays(points: list[dict[str, float]], repeats: list[int]) -> dict[str, np.ndarray]:
    """A per-agent program's `hp` dict: `{name: float32 [A]}`, point `g` repeated `repeats[g]` times in order."""
    if not points or not points[0]:
        return {}
    return {
        SWEEP_KEYS[k]: np.repeat(np.asarray([p[k] for p in points], np.float32), repeats) for k in points[0]
    }


def label(point: dict[str, float]) -> str:
    """`optim.lr=0.0003 loss.entropy_coeff=0` (or `config` without a sweep)."""
    return " ".join(f"{k}={v:g}" for k, v in point.items()) or "config"


def select(val_means: np.ndarray) -> np.ndarray:
    """Per window, the index of the point with the best mean val metric. `val_means [W, G]`; NaN never wins
    (a window whose points are all NaN selects point 0)."""
    v = np.where(np.isfinite(val_means), val_means, -np.inf)
    return np.argmax(v, axis=1)
